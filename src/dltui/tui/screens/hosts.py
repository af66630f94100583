"""The hosts screen: disks, then limits, current use, breaker state and Retry-After per host;
edit limits."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from dltui.config import Settings, format_size, parse_size
from dltui.disk import DiskUse
from dltui.errors import ConfigError
from dltui.ledger import hosts
from dltui.model import ACTIVE_STATES
from dltui.shown import shown
from dltui.tui import format as fmt
from dltui.tui.background import LedgerRunner
from dltui.tui.model import JobBook, SideTables
from dltui.tui.widgets.summary import LOW_FREE

#: The steps `+` and `-` move the global bandwidth limit through (0 = unlimited, the top).
BANDWIDTH_STEPS = [256 << 10, 512 << 10, 1 << 20, 2 << 20, 5 << 20, 10 << 20, 20 << 20,
                   50 << 20, 100 << 20, 0]


def step_bandwidth(current: int, direction: int) -> int:
    """The next limit up (+1) or down (-1) from ``current`` (0 means unlimited)."""
    if current == 0:
        return 0 if direction > 0 else BANDWIDTH_STEPS[-2]
    finite = BANDWIDTH_STEPS[:-1]
    if direction > 0:
        return next((s for s in finite if s > current), 0)
    return next((s for s in reversed(finite) if s < current), finite[0])


def _limit(value: float | None, default: float, size: bool) -> str:
    shown = default if value is None else value
    text = "none" if not shown else (f"{format_size(int(shown))}/s" if size else f"{shown:g}/s")
    return text + ("" if value is None else " *")


def disks_text(disks: tuple[DiskUse, ...]) -> Text:
    """One line per filesystem: free of total, active jobs writing there, and what dltui
    holds on the home's (parts of unfinished jobs, store objects no file shares)."""
    out = Text()
    for disk in disks:
        if out:
            out.append("\n")
        out.append("Disk ")
        out.append(shown(disk.mount), "bold")
        out.append(": ")
        low = disk.total and disk.free < disk.total * LOW_FREE
        out.append(f"{fmt.size(disk.free)} free", "bold reverse" if low else "bold")
        out.append(f" of {fmt.size(disk.total)}")
        if disk.jobs:
            out.append(f" · {disk.jobs} active job{'s' if disk.jobs != 1 else ''}")
        if disk.home:
            out.append(f" · home: parts {fmt.size(disk.held.parts)}, store only "
                       f"{fmt.size(disk.held.store)}")
    return out


class LimitScreen(ModalScreen[tuple[float | None, int | None] | None]):
    """Edit one host's limits (blank means the default setting)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "Input"

    def __init__(self, host: str, rps: float | None, bandwidth: int | None,
                 global_only: bool = False) -> None:
        super().__init__()
        self.host = host
        self.rps = rps
        self.bandwidth = bandwidth
        self.global_only = global_only

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="limit-dialog"):
            title = "Global bandwidth" if self.global_only else f"Limits for {self.host}"
            yield Static(title, classes="dialog-title")
            if not self.global_only:
                yield Label("Requests per second (blank: default, 0: none)")
                yield Input("" if self.rps is None else f"{self.rps:g}", id="limit-rps",
                            compact=True)
            yield Label("Bandwidth in bytes/s, e.g. 10M (blank: default, 0: none)")
            yield Input("" if self.bandwidth is None else format_size(self.bandwidth),
                        id="limit-bw", compact=True)
            yield Static("", id="limit-error")
            yield Static("Enter saves · Esc cancels", classes="dialog-hint")

    def on_input_submitted(self) -> None:
        try:
            rps: float | None = None
            if not self.global_only:
                text = self.query_one("#limit-rps", Input).value.strip()
                rps = float(text) if text else None
                if rps is not None and rps < 0:
                    raise ValueError
            bw_text = self.query_one("#limit-bw", Input).value.strip()
            bandwidth = parse_size(bw_text, what="bandwidth") if bw_text else None
        except (ValueError, ConfigError):
            self.query_one("#limit-error", Static).update(
                "[b red]✗[/] use a number (requests/s) and a size like 512K or 10M")
            return
        self.dismiss((rps, bandwidth))

    def action_cancel(self) -> None:
        self.dismiss(None)


class HostsScreen(ModalScreen[None]):
    """One row per host with active jobs, limits or a reported status."""

    BINDINGS = [
        Binding("escape,h,q", "close", "Close"),
        Binding("e", "edit", "Edit limits"),
        Binding("g", "edit_global", "Global bandwidth"),
    ]

    def __init__(self, runner: LedgerRunner, side: Callable[[], SideTables], book: JobBook,
                 settings: Settings, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.runner = runner
        self.side = side  # the limits and statuses as the app's last poll read them
        self.book = book
        self.settings = settings
        self.clock = clock
        self._errors: dict[str, str] = {}
        self._causes: dict[str, str] = {}
        self._waiting: dict[str, int] = {}
        self.table: DataTable[str | Text] = DataTable(id="hosts-table", cursor_type="row",
                                               zebra_stripes=True)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="hosts-dialog"):
            yield Static("Hosts", classes="dialog-title")
            yield Static(id="hosts-global")
            yield Static(id="hosts-disks")
            yield self.table
            # The highlighted host's last error gets a line of its own, wrapped: in a column
            # it would be cut to a few letters at 80 columns.
            yield Static(id="hosts-error")
            yield Static("e edit the host's limits · g global bandwidth · * set here, not by "
                         "default · Esc closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.table.add_columns("host", "jobs", "using", "req/s", "bandwidth", "breaker",
                               "retry in")
        self.refresh_rows()
        self.set_interval(1.0, self.refresh_rows)
        self.table.focus()

    def _active_by_host(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for job in self.book.jobs.values():
            if job.state in ACTIVE_STATES:
                host = urlsplit(job.canonical_url).hostname or "?"
                out.setdefault(host, []).append(job.id)
        return out

    def refresh_rows(self) -> None:
        """Redraw from the latest limits and statuses; keep the cursor on its host."""
        table = self.table
        side = self.side()
        stored, status = side.limits, side.statuses
        active = self._active_by_host()
        now = self.clock()
        glob = stored.get(hosts.GLOBAL)
        gbw = glob.bandwidth if glob is not None and glob.bandwidth is not None \
            else self.settings.max_bandwidth
        self.query_one("#hosts-global", Static).update(
            f"Global bandwidth: [b]{'none' if not gbw else format_size(gbw) + '/s'}[/]   "
            f"total now: [b]{fmt.rate(self.book.total_rate)}[/]")
        self.query_one("#hosts-disks", Static).update(disks_text(side.disks))
        names = sorted((set(active) | set(stored) | set(status)) - {hosts.GLOBAL})
        current = None
        if table.row_count and table.cursor_row < table.row_count:
            current = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        table.clear()
        for host in names:
            limit = stored.get(host)
            st = status.get(host)
            using = sum(self.book.rate(j) for j in active.get(host, []))
            breaker = "closed"
            if st and st.breaker == "open" and st.open_until and st.open_until > now:
                # The same count-down the host's waiting jobs show (their not_before).
                breaker = f"open {math.ceil(st.open_until - now)}s"
            elif st and st.breaker != "closed":
                breaker = "trial"  # half-open: one request is trying the host again
            wait = "-"
            if st and st.retry_after_until and st.retry_after_until > now:
                wait = f"{int(st.retry_after_until - now) + 1}s"
            table.add_row(
                # A DataTable reads a str cell as markup: outside text goes in as Text.
                fmt.plain(host if len(host) <= 28 else host[:27] + "…"),
                str(len(active.get(host, []))),
                fmt.rate(using),
                _limit(limit.requests_per_second if limit else None,
                       self.settings.host_requests_per_second, size=False),
                _limit(limit.bandwidth if limit else None, self.settings.host_bandwidth,
                       size=True),
                breaker, wait, key=host,
            )
        self._errors = {h: st.last_error for h, st in status.items() if st.last_error}
        self._causes = {h: st.cause for h, st in status.items()
                        if st.cause and st.breaker != "closed"}
        self._waiting = self._waiting_by_host(now)
        if current in names:
            table.move_cursor(row=names.index(current))
        self._show_error()

    def on_data_table_row_highlighted(self) -> None:
        self._show_error()

    def _waiting_by_host(self, now: float) -> dict[str, int]:
        """Queued jobs held back per host (the ones whose rows count down)."""
        out: dict[str, int] = {}
        for job in self.book.jobs.values():
            if job.not_before is not None and job.waiting(now) is not None:
                host = urlsplit(job.canonical_url).hostname or "?"
                out[host] = out.get(host, 0) + 1
        return out

    def _show_error(self) -> None:
        host = self._selected_host()
        error = self._errors.get(host or "")
        line = Text()
        cause = self._causes.get(host or "")
        if host and cause:
            waiting = self._waiting.get(host, 0)
            line.append("breaker open", "bold")
            line.append(f": {shown(cause)}; {waiting} job{'s' if waiting != 1 else ''} "
                        "waiting, no try spent\n")
        if host and error:
            line.append("last error", "bold")
            line.append(f" of {shown(host)}: {shown(error)}")
        elif host:
            line.append(f"last error of {shown(host)}: none", "italic")
        self.query_one("#hosts-error", Static).update(line)

    def _selected_host(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value

    def action_edit(self) -> None:
        host = self._selected_host()
        if host is None:
            self.notify("no host yet: hosts appear once jobs run", severity="warning")
            return
        limit = self.side().limits.get(host)

        def saved(result: tuple[float | None, int | None] | None) -> None:
            if result is not None:
                rps, bandwidth = result
                self.runner.write(
                    lambda ledger: hosts.set_limit(ledger, host, requests_per_second=rps,
                                                   bandwidth=bandwidth, by="tui"),
                    lambda _: self.app.notify(f"limits for {host} saved; workers apply them "
                                              "within a second"))

        self.app.push_screen(LimitScreen(host, limit.requests_per_second if limit else None,
                                         limit.bandwidth if limit else None), saved)

    def action_edit_global(self) -> None:
        def saved(result: tuple[float | None, int | None] | None) -> None:
            if result is not None:
                bandwidth = result[1]
                self.runner.write(
                    lambda ledger: hosts.set_global_bandwidth(ledger, bandwidth, by="tui"),
                    lambda _: self.app.notify("global bandwidth saved"))

        self.app.push_screen(LimitScreen(hosts.GLOBAL, None, self.side().global_bandwidth,
                                         global_only=True), saved)

    def action_close(self) -> None:
        self.dismiss(None)
