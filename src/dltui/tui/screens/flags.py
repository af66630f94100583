"""The flags screen: one switch per feature flag, flipped live in the ledger (audited)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static, Switch

from dltui.ledger import Ledger, flags
from dltui.tui import format as fmt
from dltui.tui.background import LedgerRunner


class FlagsScreen(ModalScreen[None]):
    """Feature flags; changes reach every worker, in any process, within a second."""

    BINDINGS = [Binding("escape,f,q", "close", "Close")]
    AUTO_FOCUS = "Switch"

    def __init__(self, runner: LedgerRunner, states: tuple[flags.FlagState, ...]) -> None:
        super().__init__()
        self.runner = runner
        #: As the app's last poll read them; empty before its first poll (then read here).
        self.states = {s.name: s for s in states}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="flags-dialog"):
            yield Static("Feature flags", classes="dialog-title")
            with VerticalScroll():
                for name in sorted(flags.FLAGS):
                    default, description = flags.FLAGS[name]
                    state = self.states.get(name)
                    with Horizontal(classes="flag-row"):
                        yield Switch(default if state is None else state.value,
                                     id=f"flag-{name}")
                        with Vertical():
                            yield Static(f"[b]{name}[/]  {description}")
                            yield Static("reading…" if state is None else self._origin(state),
                                         id=f"origin-{name}", classes="flag-origin")
            yield Static("Space or Enter flips the focused switch · Esc closes",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        if not self.states:
            self.runner.read(flags.all_flags, self._read)

    def _read(self, states: list[flags.FlagState]) -> None:
        for state in states:
            switch = self.query_one(f"#flag-{state.name}", Switch)
            with switch.prevent(Switch.Changed):  # the ledger's value, not the operator's
                switch.value = state.value
            self.query_one(f"#origin-{state.name}", Static).update(self._origin(state))

    @staticmethod
    def _origin(state: flags.FlagState) -> Text:
        if state.updated_by is None:
            return Text(f"default ({'on' if state.default else 'off'})")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.updated_at or 0))
        return fmt.plain(f"set by {state.updated_by} at {when}")  # who: from the ledger

    def on_switch_changed(self, event: Switch.Changed) -> None:
        name = (event.switch.id or "").removeprefix("flag-")
        value = event.value
        origin = self.query_one(f"#origin-{name}", Static)
        origin.update("saving…")  # the switch has moved; the ledger follows when it can

        def store(ledger: Ledger) -> flags.FlagState:
            flags.set_flag(ledger, name, value, by="tui")
            return {f.name: f for f in flags.all_flags(ledger)}[name]

        def stored(state: flags.FlagState) -> None:
            if origin.is_mounted:
                origin.update(self._origin(state))
            self.app.notify(f"{name} {'on' if state.value else 'off'}", timeout=2)

        self.runner.write(store, stored)

    def action_close(self) -> None:
        self.dismiss(None)
