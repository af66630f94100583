"""Start, stop or resize the worker pool inside the TUI's process."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class WorkersScreen(ModalScreen[int | None]):
    """Ask for a worker count: 0 stops the pool; Esc keeps it."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#workers-count"

    def __init__(self, current: int) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="workers-dialog"):
            yield Static("In-process workers", classes="dialog-title")
            yield Static(f"Running now: {self.current}. Enter a number (0 stops them; their "
                         "downloads stop at a checkpoint and go back to the queue).")
            yield Input(str(self.current), id="workers-count", type="integer", compact=True)
            yield Static("", id="workers-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text.isdigit() or int(text) > 64:
            self.query_one("#workers-error", Static).update(
                "[b red]✗[/] give a whole number from 0 to 64")
            return
        self.dismiss(int(text))

    def action_cancel(self) -> None:
        self.dismiss(None)
