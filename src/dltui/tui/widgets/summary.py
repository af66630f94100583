"""The header strip: ledger, workers here and elsewhere, total throughput, jobs per state."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from dltui.model import JobState
from dltui.tui import format as fmt
from dltui.tui.format import STATE_STYLE
from dltui.tui.model import JobBook


class Summary(Horizontal):
    """Two lines of facts and a sparkline of total throughput."""

    DEFAULT_CSS = """
    Summary { height: 2; background: $panel; padding: 0 1; }
    Summary > Vertical { width: 1fr; }
    Summary Static { height: 1; }
    Summary Sparkline { width: 24; height: 2; }
    """

    def __init__(self, path: str, own_pid: str, *, insecure: bool = False) -> None:
        super().__init__()
        self.path = path
        self.own_pid = own_pid
        #: TLS certificates are not verified (setting ``insecure``): said before anything else.
        self.insecure = insecure
        # Held directly: a poll can land while the app shuts down and children are unmounted.
        self.line1 = Static(id="summary-line1")
        self.line2 = Static(id="summary-line2")
        self.spark = Sparkline([0.0], id="summary-spark")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield self.line1
            yield self.line2
        yield self.spark

    def update_from(self, book: JobBook, own_workers: int) -> None:
        """Redraw from the book."""
        owners = book.live_owners()
        here = {o for o in owners if o.split(":")[1:2] == [self.own_pid]}
        processes = {":".join(o.split(":")[:3]) for o in owners - here}
        line1 = Text()
        line1.append("dltui ", "bold")
        if self.insecure:
            line1.append(" INSECURE: TLS not verified ", "bold reverse red")
            line1.append(" ")
        line1.append(self.path, "dim")
        line1.append("   workers ")
        line1.append(f"{own_workers} here", "bold")
        others = owners - here
        if others:
            plural = "es" if len(processes) != 1 else ""
            line1.append(f" + {len(others)} in {len(processes)} other process{plural}")
        line1.append("   ↓ ")
        line1.append(fmt.rate(book.total_rate), "bold")
        counts = book.counts()
        line2 = Text()
        for state in JobState:
            n = counts[state]
            if n:
                line2.append(f"{state.value.lower()} ", STATE_STYLE[state])
                line2.append(f"{n}  ", "bold")
        if book.stale:
            line2.append(f"stale {len(book.stale)}", "bold yellow")
            line2.append(" (R heals)  ", "dim")
        if not len(line2):
            line2.append("no jobs yet: press a to add URLs", "dim")
        self.line1.update(line1)
        self.line2.update(line2)
        self.spark.data = list(book.total_history)[-48:]
