"""The flags screen: one switch per feature flag, flipped live in the ledger (audited)."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static, Switch

from dltui.ledger import Ledger, flags


class FlagsScreen(ModalScreen[None]):
    """Feature flags; changes reach every worker, in any process, within a second."""

    BINDINGS = [Binding("escape,f,q", "close", "Close")]
    AUTO_FOCUS = "Switch"

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="flags-dialog"):
            yield Static("Feature flags", classes="dialog-title")
            with VerticalScroll():
                for state in flags.all_flags(self.ledger):
                    with Horizontal(classes="flag-row"):
                        yield Switch(state.value, id=f"flag-{state.name}")
                        with Vertical():
                            yield Label(f"[b]{state.name}[/]  {state.description}")
                            yield Static(self._origin(state), id=f"origin-{state.name}",
                                         classes="flag-origin")
            yield Static("Space or Enter flips the focused switch · Esc closes",
                         classes="dialog-hint")

    @staticmethod
    def _origin(state: flags.FlagState) -> str:
        if state.updated_by is None:
            return f"default ({'on' if state.default else 'off'})"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.updated_at or 0))
        return f"set by {state.updated_by} at {when}"

    def on_switch_changed(self, event: Switch.Changed) -> None:
        name = (event.switch.id or "").removeprefix("flag-")
        flags.set_flag(self.ledger, name, event.value, by="tui")
        state = {f.name: f for f in flags.all_flags(self.ledger)}[name]
        self.query_one(f"#origin-{name}", Static).update(self._origin(state))
        self.notify(f"{name} {'on' if event.value else 'off'}", timeout=2)

    def action_close(self) -> None:
        self.dismiss(None)
