"""The `?` screen: every key."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("a", "add URLs"),
    ("p", "pause / resume the selected jobs"),
    ("r", "retry the selected failed jobs"),
    ("x", "cancel the selected jobs (asks first)"),
    ("D", "remove the selected jobs that are over from the ledger (asks first)"),
    ("space", "select / unselect the job under the cursor"),
    ("ctrl+a", "select every job shown; again: none"),
    ("enter, d", "show / hide the detail pane"),
    ("1 2 3 4 5 6", "tabs: All / Active / Queued / Done / Failed / Cancelled"),
    ("/", "filter by text (Esc clears)"),
    ("s, S", "cycle the sort order / reverse it"),
    ("R", "reconcile: dry run first, then apply"),
    ("f", "feature flags"),
    ("w", "start, stop or resize the in-process workers"),
    ("h", "hosts: limits, use, circuit breakers, Retry-After; e edits, g global"),
    ("F", "fleet: every host on this ledger, its workers, heartbeat, jobs and rate"),
    ("+ / -", "raise / lower the global bandwidth limit"),
    ("↑ ↓ j k", "move the cursor"),
    ("PgUp PgDn", "a page up / down"),
    ("Home End", "first / last job (also g G)"),
    ("ctrl+p", "command palette (themes, …)"),
    ("?", "this help"),
    ("q", "quit (running downloads stop at a checkpoint)"),
]


class HelpScreen(ModalScreen[None]):
    """Keys and what they do."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, text in KEYS:
            table.add_row(key, text)
        with Vertical(classes="dialog", id="help-dialog"):
            yield Static("dltui keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(table)
            yield Static("↑ ↓ scroll · Esc closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
