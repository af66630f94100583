"""Many jobs at once: the small-file lane's and batch leasing's steps, one statement per step.

Each step is still an edge of the state machine and writes the same rows and events that
:func:`dltui.ledger.jobs.transition_in` would write one job at a time.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

from dltui.errors import IllegalTransition, LeaseLost, UnknownJob
from dltui.ledger import events, segments
from dltui.ledger._db import next_revs
from dltui.ledger.clock import now
from dltui.ledger.jobs import _COLUMNS
from dltui.model import FINAL_STATES, TRANSITIONS, Job, JobState


def advance_many_in(
    conn: sqlite3.Connection,
    path: Sequence[JobState],
    rows: Sequence[tuple[int, dict[str, Any]]],
    *,
    owner: str | None = None,
    reason: str | None = None,
    last_data: Sequence[dict[str, Any]] | None = None,
    **data: Any,
) -> None:
    """Move many jobs from ``path[0]`` through every later state of ``path``, in the caller's
    transaction: one UPDATE per job and one ``state`` event per job and step, as
    :func:`transition_in` would write them one by one.

    Every step must be an edge of the state machine. ``rows`` pairs a job id with the columns
    it gets (the same columns for every job); ``last_data``, when given, adds per-job data
    (in the order of ``rows``) to the event of the last step. A job that is not in
    ``path[0]`` (or, with ``owner``, not held by it) raises LeaseLost or IllegalTransition:
    the caller's transaction then rolls back, so either every job moved or none did.
    """
    if len(path) < 2 or not rows:
        return
    for current, target in itertools.pairwise(path):
        if target not in TRANSITIONS[current]:
            raise IllegalTransition(rows[0][0], current, target)
    source, target = path[0], path[-1]
    cols = list(rows[0][1])
    extra: dict[str, Any] = {}
    if target in FINAL_STATES or target is JobState.FAILED:
        extra["finished_at"] = now()
    elif target is JobState.PLANNED:
        extra["finished_at"] = None
    names = [*cols, *extra, "state", "updated_at", "rev"]
    sql = (f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in names)} "
           f"WHERE id = ? AND state = ?" + (" AND lease_owner = ?" if owner is not None else ""))
    revs = next_revs(conn, len(rows))
    at = now()
    params = []
    for n, (job_id, fields) in enumerate(rows):
        if list(fields) != cols:
            raise ValueError(f"job {job_id}: every job must set the same columns {cols}")
        p = [*fields.values(), *extra.values(), target.value, at, revs[n],
             job_id, source.value]
        if owner is not None:
            p.append(owner)
        params.append(p)
    cur = conn.executemany(sql, params)
    if cur.rowcount != len(rows):
        ids = [job_id for job_id, _ in rows]
        placeholders = ",".join("?" * len(ids))
        found = {r["id"]: r for r in conn.execute(
            f"SELECT id, state, lease_owner FROM jobs WHERE id IN ({placeholders})", ids)}
        for job_id in ids:
            row = found.get(job_id)
            if row is None:
                raise UnknownJob(job_id)
            if owner is not None and row["lease_owner"] != owner:
                raise LeaseLost(job_id, owner)
            if row["state"] != target.value:
                raise IllegalTransition(job_id, row["state"], target)
        raise IllegalTransition(ids[0], source, target)  # a job listed twice
    steps = list(itertools.pairwise(path))
    more = last_data or [{}] * len(rows)
    events.append_many(conn, (
        ("state", job_id, {"from": a.value, "to": b.value, "reason": reason, **data,
                           **(own if b is target else {})})
        for (job_id, _), own in zip(rows, more, strict=True) for a, b in steps
    ))
    if target in FINAL_STATES:
        segments.clear_many_in(conn, [job_id for job_id, _ in rows])


def get_many(conn: sqlite3.Connection, ids: Sequence[int]) -> list[Job]:
    """The jobs with these ids, in the order given (missing ids are left out)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE id IN ({','.join('?' * len(ids))})", list(ids)
    ).fetchall()
    by_id = {r["id"]: Job.from_row(r) for r in rows}
    return [by_id[i] for i in ids if i in by_id]
