"""The fleet screen: every host working this ledger, its workers, heartbeat, jobs and rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from dltui.ledger.fleet import Process
from dltui.model import ACTIVE_STATES
from dltui.tui import format as fmt
from dltui.tui.model import JobBook


@dataclass(frozen=True, slots=True)
class HostRow:
    """One host of the fleet, as the fleet screen shows it."""

    host: str
    processes: int  #: processes that beat within the lease TTL
    workers: int
    heartbeat_age: float | None  #: seconds since its latest heartbeat; None: none reported
    jobs: int  #: active jobs its workers hold
    stale: int  #: active jobs whose lease from it is no longer live
    rate: float


def host_rows(processes: tuple[Process, ...], book: JobBook, now: float,
              ttl: float) -> list[HostRow]:
    """One row per host: from the processes' heartbeats and the jobs' lease owners."""
    hosts: dict[str, dict[str, float]] = {}

    def row(name: str) -> dict[str, float]:
        return hosts.setdefault(name, {"processes": 0, "workers": 0, "beat": -1.0, "jobs": 0,
                                       "stale": 0, "rate": 0.0})

    for proc in processes:
        r = row(proc.host)
        r["beat"] = max(r["beat"], proc.heartbeat_at)
        if now - proc.heartbeat_at <= ttl:
            r["processes"] += 1
            r["workers"] += proc.workers
    for job in book.jobs.values():
        if job.state in ACTIVE_STATES and job.lease_owner:
            r = row(job.lease_owner.split(":", 1)[0])
            r["jobs"] += 1
            r["stale"] += job.id in book.stale
            r["rate"] += book.rate(job.id)
    return [HostRow(name, int(r["processes"]), int(r["workers"]),
                    None if r["beat"] < 0 else max(0.0, now - r["beat"]), int(r["jobs"]),
                    int(r["stale"]), r["rate"]) for name, r in sorted(hosts.items())]


class FleetScreen(ModalScreen[None]):
    """Every host of the fleet: what runs where, and which host has gone quiet."""

    BINDINGS = [Binding("escape,F,q", "close", "Close")]

    def __init__(self, processes: Callable[[], tuple[Process, ...]], book: JobBook,
                 ttl: float, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.processes, self.book, self.ttl, self.clock = processes, book, ttl, clock
        self.table: DataTable[str | Text] = DataTable(id="fleet-table", cursor_type="row",
                                               zebra_stripes=True)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="fleet-dialog"):
            yield Static("Fleet", classes="dialog-title")
            yield self.table
            yield Static("A host whose heartbeat is older than the lease TTL is silent: its "
                         "jobs go to the others once their leases run out · Esc closes",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        self.table.add_columns("host", "processes", "workers", "heartbeat", "jobs", "stale",
                               "rate")
        self.refresh_rows()
        self.set_interval(1.0, self.refresh_rows)
        self.table.focus()

    def refresh_rows(self) -> None:
        """Redraw from the last poll."""
        self.table.clear()
        for r in host_rows(self.processes(), self.book, self.clock(), self.ttl):
            beat = "-" if r.heartbeat_age is None else (
                f"{int(r.heartbeat_age)}s ago" if r.heartbeat_age <= self.ttl
                else f"silent {int(r.heartbeat_age)}s")
            # A DataTable reads a str cell as markup: the host name (another host's, from
            # the ledger) goes in as plain Text.
            self.table.add_row(fmt.plain(r.host), str(r.processes), str(r.workers), beat,
                               str(r.jobs), str(r.stale) if r.stale else "-",
                               fmt.rate(r.rate), key=r.host)

    def action_close(self) -> None:
        self.dismiss(None)
