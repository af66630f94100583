"""The fleet's worker processes: each pool says it is alive here, so every host and every TUI
sees every other host's workers, not only the ones holding a lease right now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dltui.ledger.clock import now

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

#: A process silent this long is dropped from the table (it is long gone).
FORGET_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class Process:
    """One worker process of the fleet, as it last reported itself."""

    process: str  #: ``host:pid:start``, the owner id of its leases without the thread
    host: str
    workers: int
    started_at: float
    heartbeat_at: float


def beat(ledger: Ledger, process: str, host: str, workers: int) -> None:
    """Say that ``process`` on ``host`` runs ``workers`` workers, now."""
    with ledger.write() as conn:
        at = now()
        conn.execute(
            "INSERT INTO processes (process, host, workers, started_at, heartbeat_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(process) DO UPDATE SET "
            "workers = excluded.workers, heartbeat_at = excluded.heartbeat_at",
            (process, host, workers, at, at))
        conn.execute("DELETE FROM processes WHERE heartbeat_at < ?", (at - FORGET_AFTER,))


def leave(ledger: Ledger, process: str) -> None:
    """``process`` stops: remove it."""
    with ledger.write() as conn:
        conn.execute("DELETE FROM processes WHERE process = ?", (process,))


def processes(ledger: Ledger) -> list[Process]:
    """Every process that reported in the last hour, by host."""
    rows = ledger.conn.execute(
        "SELECT process, host, workers, started_at, heartbeat_at FROM processes "
        "ORDER BY host, process").fetchall()
    return [Process(*row) for row in rows]
