"""Force-reconcile: show the dry run, apply on confirmation, then show what was done."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from dltui.ledger import Ledger
from dltui.ledger.reconcile import ReconcileReport, reconcile
from dltui.model import LinkMode
from dltui.tui import format as fmt


def summary(report: ReconcileReport) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v)
    return counts or "nothing to do"


class ReconcileScreen(ModalScreen[ReconcileReport | None]):
    """Two steps: the dry run, then (on Apply) the real run."""

    BINDINGS = [Binding("escape", "close", "Close")]
    AUTO_FOCUS = "#reconcile-close"

    def __init__(self, ledger: Ledger, link_mode: LinkMode = "auto") -> None:
        super().__init__()
        self.ledger = ledger
        self.link_mode: LinkMode = link_mode
        self.result: ReconcileReport | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="reconcile-dialog"):
            yield Static("Reconcile", classes="dialog-title")
            yield Static("Checking…", id="reconcile-summary")
            with VerticalScroll():
                yield Static("", id="reconcile-actions")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply", variant="warning", id="reconcile-apply", disabled=True,
                             compact=True)
                yield Button("Close", id="reconcile-close", compact=True)

    def on_mount(self) -> None:
        self._run(dry_run=True)

    @work(thread=True, exclusive=True)
    def _run(self, dry_run: bool) -> None:
        report = reconcile(self.ledger, dry_run=dry_run, by="tui", link_mode=self.link_mode)
        self.app.call_from_thread(self._show, report)

    def _show(self, report: ReconcileReport) -> None:
        lines = [f"{a.kind:<14} {'job ' + str(a.job_id) if a.job_id else '':<9} {a.detail}"
                 for a in report.actions]
        self.query_one("#reconcile-actions", Static).update(fmt.plain_lines("\n".join(lines)))
        apply = self.query_one("#reconcile-apply", Button)
        if report.dry_run:
            self.query_one("#reconcile-summary", Static).update(
                f"Would do: {summary(report)}")
            apply.disabled = report.total == 0
            if report.total:
                apply.focus()
        else:
            self.result = report
            self.query_one("#reconcile-summary", Static).update(f"Done: {summary(report)}")
            apply.disabled = True
            self.query_one("#reconcile-close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "reconcile-apply":
            event.button.disabled = True
            self._run(dry_run=False)
        else:
            self.action_close()

    def action_close(self) -> None:
        self.dismiss(self.result)
