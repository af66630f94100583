"""The append-only event log: every transition, operator action and reconcile run."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dltui.ledger.clock import now
from dltui.urls import redact_text

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

#: Events kept when pruning; older ones are deleted. Pruning runs every PRUNE_EVERY inserts.
DEFAULT_KEEP = 100_000
PRUNE_EVERY = 1_000


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the event log."""

    id: int
    ts: float
    job_id: int | None
    kind: str
    data: dict[str, Any]


def _encode(data: dict[str, Any]) -> str:
    # Events outlive the jobs they describe and are shown anywhere: no credentials in them.
    return redact_text(json.dumps(data, sort_keys=True, default=str))


def append(
    conn: sqlite3.Connection,
    kind: str,
    job_id: int | None = None,
    keep: int = DEFAULT_KEEP,
    **data: Any,
) -> int:
    """Append an event inside the caller's transaction and return its id."""
    event_id = int(conn.execute(
        "INSERT INTO events (ts, job_id, kind, data) VALUES (?, ?, ?, ?) RETURNING id",
        (now(), job_id, kind, _encode(data)),
    ).fetchone()[0])
    if event_id % PRUNE_EVERY == 0:
        conn.execute("DELETE FROM events WHERE id <= ?", (event_id - keep,))
    return event_id


def append_many(conn: sqlite3.Connection, rows: Iterable[tuple[str, int | None, dict[str, Any]]],
                keep: int = DEFAULT_KEEP) -> None:
    """Append ``(kind, job_id, data)`` events inside the caller's transaction, in order."""
    at = now()
    params = [(at, job_id, kind, _encode(data))
              for kind, job_id, data in rows]
    if not params:
        return
    before = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
    conn.executemany("INSERT INTO events (ts, job_id, kind, data) VALUES (?, ?, ?, ?)", params)
    last = before + len(params)
    if last // PRUNE_EVERY != before // PRUNE_EVERY:  # crossed a pruning point, as append does
        conn.execute("DELETE FROM events WHERE id <= ?", (last - keep,))


def record(ledger: Ledger, kind: str, job_id: int | None = None, **data: Any) -> int:
    """Append an event in its own transaction."""
    with ledger.write(shared=True) as conn:  # a row of its own
        return append(conn, kind, job_id, **data)


def _event(row: sqlite3.Row) -> Event:
    return Event(row["id"], row["ts"], row["job_id"], row["kind"], json.loads(row["data"] or "{}"))


def for_job(ledger: Ledger, job_id: int, limit: int = 50) -> list[Event]:
    """The newest ``limit`` events of one job, oldest first."""
    rows = ledger.conn.execute(
        "SELECT * FROM events WHERE job_id = ? ORDER BY id DESC LIMIT ?", (job_id, limit)
    ).fetchall()
    return [_event(r) for r in reversed(rows)]


def recent(ledger: Ledger, limit: int = 100, kind: str | None = None) -> list[Event]:
    """The newest ``limit`` events (optionally of one kind), oldest first."""
    if kind is None:
        rows = ledger.conn.execute(
            "SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
    else:
        rows = ledger.conn.execute(
            "SELECT * FROM events WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit)
        ).fetchall()
    return [_event(r) for r in reversed(rows)]
