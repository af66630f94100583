"""The header strip: ledger, workers here and elsewhere, total throughput, jobs per state."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from dltui.disk import DiskUse
from dltui.model import JobState
from dltui.tui import format as fmt
from dltui.tui.model import JobBook

#: Short state names for the counts line when the full ones do not fit (80 columns and less).
SHORT = {JobState.PLANNED: "plan", JobState.LEASED: "lease", JobState.PRECHECKED: "check",
         JobState.STREAMING: "strm", JobState.FINALIZING: "final", JobState.FINALIZED: "done",
         JobState.FAILED: "fail", JobState.PAUSED: "pause", JobState.CANCELLED: "canc"}
#: Below this width the sparkline gives its room to the counts: the rate is on line one.
SPARK_MIN_WIDTH = 100
#: Free space under this share of a filesystem is shown as a warning.
LOW_FREE = 0.1


class Summary(Horizontal):
    """Two lines of facts and a sparkline of total throughput.

    Line one leads with what an operator must always see, whatever the width: the total rate,
    the global limit, the workers here and elsewhere, the stale jobs and the free space of the
    fullest filesystem dltui works on; the ledger path comes last and is the part that is
    cut. Line two counts the jobs per state.
    """

    DEFAULT_CSS = """
    Summary { height: 2; background: $panel; padding: 0 1; }
    Summary > Vertical { width: 1fr; }
    Summary Static { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
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
        self._shown: tuple[JobBook, int, int, DiskUse | None] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield self.line1
            yield self.line2
        yield self.spark

    def on_resize(self) -> None:
        self.spark.display = self.size.width >= SPARK_MIN_WIDTH
        if self._shown is not None:  # the counts may fit in full now, or no longer
            book, workers, limit, disk = self._shown
            self.update_from(book, workers, limit, disk=disk)

    def update_from(self, book: JobBook, own_workers: int, limit: int = 0, *,
                    disk: DiskUse | None = None) -> None:
        """Redraw from the book; ``limit`` is the global bandwidth limit (0: none); ``disk``
        the filesystem with the least free space among those dltui works on."""
        self._shown = (book, own_workers, limit, disk)
        owners = book.live_owners()
        here = {o for o in owners if o.split(":")[1:2] == [self.own_pid]}
        others = owners - here
        processes = {":".join(o.split(":")[:3]) for o in others}
        styles = fmt.state_styles(self.app.theme_variables)
        warn = styles[JobState.PAUSED] + Style(bold=True, reverse=False)
        line1 = Text()
        if self.insecure:
            line1.append(" INSECURE: TLS not verified ", "bold reverse red")
            line1.append(" ")
        line1.append("↓ ")
        line1.append(fmt.rate(book.total_rate), "bold")
        line1.append("  limit ")
        line1.append(f"{fmt.size(limit)}/s" if limit else "none", "bold" if limit else "")
        line1.append("  workers ")
        line1.append(f"{own_workers} here", "bold")
        if others:
            plural = "es" if len(processes) != 1 else ""
            line1.append(f" + {len(others)} in {len(processes)} process{plural}")
        if book.stale:
            line1.append("  ")
            line1.append(f"stale {len(book.stale)}", warn)
            line1.append(" (R heals)")
        if disk is not None:
            line1.append("  free ")
            low = disk.total and disk.free < disk.total * LOW_FREE
            line1.append(f"{fmt.size(disk.free)}", warn if low else "bold")
            line1.append(f" {disk.mount}")
        line1.append("  ")
        line1.append(self.path, "italic")
        counts = book.counts()
        room = self.size.width - 2 - (24 if self.spark.display else 0)
        line2 = self._counts(counts, styles, short=False)
        if room > 0 and line2.cell_len > room:
            line2 = self._counts(counts, styles, short=True)
        if not len(line2):
            line2.append("no jobs yet: press a to add URLs", "italic")
        self.line1.update(line1)
        self.line2.update(line2)
        self.spark.data = list(book.total_history)[-48:]

    @staticmethod
    def _counts(counts: dict[JobState, int], styles: dict[JobState, Style], *,
                short: bool) -> Text:
        line = Text()
        for state in JobState:
            n = counts[state]
            if n:
                line.append(SHORT[state] if short else state.value.lower(), styles[state])
                line.append(f" {n}" + (" " if short else "  "), "bold")
        line.rstrip()
        return line
