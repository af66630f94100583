"""Per-segment checkpoints of segmented downloads.

A job has segment rows only while a segmented download of it is under way: a single-stream
checkpoint replaces them, and the move to FINALIZED or CANCELLED (``jobs.transition_in``)
clears them, so rows never outlive the part they describe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dltui.model import Segment

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

# "end" is quoted: PostgreSQL reserves the word.
_SELECT = 'SELECT idx, start, "end", done, durable FROM segments WHERE job_id = ? ORDER BY idx'


def for_job(ledger: Ledger, job_id: int) -> list[Segment]:
    """The job's segments in order; empty when it is not a segmented download."""
    return [Segment(*row) for row in ledger.conn.execute(_SELECT, (job_id,))]


def by_job(ledger: Ledger) -> dict[int, list[Segment]]:
    """Every segmented download's segments, by job id (rows exist only while one runs)."""
    out: dict[int, list[Segment]] = {}
    for job_id, *row in ledger.conn.execute(
            'SELECT job_id, idx, start, "end", done, durable FROM segments ORDER BY job_id, idx'):
        out.setdefault(job_id, []).append(Segment(*row))
    return out


def save_in(conn: sqlite3.Connection, job_id: int, segments: Sequence[Segment]) -> None:
    """Replace the job's segments, inside the caller's transaction."""
    conn.execute("DELETE FROM segments WHERE job_id = ?", (job_id,))
    conn.executemany(
        'INSERT INTO segments (job_id, idx, start, "end", done, durable) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(job_id, s.index, s.start, s.end, s.done, s.durable) for s in segments],
    )


def clear_in(conn: sqlite3.Connection, job_id: int) -> None:
    """Forget the job's segments, inside the caller's transaction."""
    conn.execute("DELETE FROM segments WHERE job_id = ?", (job_id,))


def clear_many_in(conn: sqlite3.Connection, job_ids: list[int]) -> None:
    """:func:`clear_in` for many jobs."""
    conn.executemany("DELETE FROM segments WHERE job_id = ?", [(i,) for i in job_ids])
