"""Worker leases: who holds a job, until when, and whether that holder still exists.

An owner id is ``host:pid:process-start:thread``. A lease is live until ``lease_until`` unless its
owner is a process on this host that is gone (or whose pid was reused: the start time differs),
so a restart after a crash or SIGKILL resumes at once instead of waiting out the TTL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from dltui.errors import IllegalTransition, LeaseLost
from dltui.ledger import batched, jobs
from dltui.ledger._db import for_update, is_pg
from dltui.ledger.clock import now
from dltui.ledger.liveness import (
    hostname,
    lease_is_live,
    owner_id,
    owner_is_dead,
    process_start_time,
)
from dltui.model import ACTIVE_STATES, Control, Job, JobState

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

__all__ = ["DEFAULT_TTL", "hand_back_large", "lease_batch", "lease_is_live", "lease_next",
           "owner_id", "owner_is_dead", "process_start_time", "release", "renew"]

DEFAULT_TTL = 60.0
_ACTIVE = tuple(sorted(s.value for s in ACTIVE_STATES))


#: Seconds a job whose part is on another host waits for that host after its lease ended
#: (setting ``affinity_grace``); then any host takes it and starts it over.
DEFAULT_AFFINITY_GRACE = 120.0


def _takeover_candidates(conn: sqlite3.Connection, at: float,
                         grace: float) -> list[sqlite3.Row]:
    """Active jobs whose lease may be over (expired, or held by a process on this host) and
    that this host may run: not pinned elsewhere, and their part here or long enough alone."""
    me = hostname()
    return conn.execute(
        f"SELECT id, lease_owner, lease_until, control FROM jobs "
        f"WHERE state IN ({','.join('?' * len(_ACTIVE))}) "
        f"AND (lease_until IS NULL OR lease_until < ? OR lease_owner LIKE ?) "
        f"AND (host IS NULL OR host = ?) "
        f"AND (part_host IS NULL OR part_host = ? OR bytes_committed = 0 "
        f"OR lease_until IS NULL OR lease_until < ?) ORDER BY id",
        (*_ACTIVE, at, me + ":%", me, me, at - grace),
    ).fetchall()


def lease_next(ledger: Ledger, owner: str, ttl: float = DEFAULT_TTL) -> Job | None:
    """Atomically take the next runnable job for ``owner``, or None when there is none.

    Interrupted work (an active job whose lease expired) comes first, then PLANNED jobs in id
    order. A taken-over job passes through PLANNED, so the transition table holds and the
    takeover is an event of its own.
    """
    taken = lease_batch(ledger, owner, ttl, 1)
    return taken[0] if taken else None


def lease_batch(ledger: Ledger, owner: str, ttl: float = DEFAULT_TTL,
                limit: int = 1, small_max: int | None = None,
                only: Collection[int] | None = None,
                affinity_grace: float = DEFAULT_AFFINITY_GRACE) -> list[Job]:
    """Like :func:`lease_next`, but up to ``limit`` PLANNED jobs in one transaction.

    An interrupted job is taken over alone: it comes first and needs the full pipeline. With
    ``small_max``, a batch holds only jobs not known to be larger (a large one is leased
    alone, when nothing else is there), so one worker never sits on large jobs that others
    could start now. With ``only``, nothing but those jobs is leased (``dltui get``).

    In a fleet, a job pinned to another host is never taken, and a job whose part another
    host holds is left to that host for ``affinity_grace`` seconds after its lease ended.
    """
    # A SQLite ledger is one host's: its parts are in this home whatever the machine is called
    # now (a renamed host, a container with a new hostname each run), so none is elsewhere.
    grace = affinity_grace if ledger.pg else float("-inf")
    # Shared: it writes only the rows it locks. On PostgreSQL leasers on every host run side
    # by side and pass over rows another one holds (SKIP LOCKED) instead of queueing.
    with ledger.write(shared=True) as conn:
        at = now()
        dead: dict[str, bool] = {}
        for row in _takeover_candidates(conn, at, grace):
            if only is not None and row["id"] not in only:
                continue
            if lease_is_live(row["lease_owner"], row["lease_until"], at, dead):
                continue
            if is_pg(conn) and not _still(conn, row):
                continue  # another host took it, or it is being written right now
            job_id = row["id"]
            control = row["control"]
            clear = dict(jobs.CLEAR_LEASE)
            if control == Control.CANCEL.value:
                jobs.transition_in(conn, job_id, JobState.CANCELLED, reason="lease expired",
                                   fields=clear, previous_owner=row["lease_owner"])
                continue
            if control == Control.PAUSE.value:
                jobs.transition_in(conn, job_id, JobState.PAUSED, reason="lease expired",
                                   fields=clear, previous_owner=row["lease_owner"])
                continue
            jobs.transition_in(conn, job_id, JobState.PLANNED, reason="lease expired",
                               fields=clear, previous_owner=row["lease_owner"])
            return [_take(conn, job_id, owner, ttl, at)]
        me = hostname()
        ready = ("state = 'PLANNED' AND control = 'run' "
                 "AND (not_before IS NULL OR not_before <= ?) "
                 "AND (host IS NULL OR host = ?) "
                 "AND (part_host IS NULL OR part_host = ? OR bytes_committed = 0 "
                 "OR updated_at < ?)")
        mine = (me, me, at - grace)
        if only is not None:  # ids are ints from the ledger: safe to inline
            ready += f" AND id IN ({','.join(str(int(i)) for i in only) or 'NULL'})"
        lock = for_update(conn, skip_locked=True)
        rows = []
        if limit > 1 and small_max is not None:
            rows = conn.execute(
                f"SELECT id, attempts FROM jobs WHERE {ready} "
                f"AND (content_length IS NULL OR content_length <= ?) ORDER BY id LIMIT ?{lock}",
                (at, *mine, small_max, limit)).fetchall()
        if len(rows) <= 1:
            rows = conn.execute(
                f"SELECT id, attempts FROM jobs WHERE {ready} ORDER BY id LIMIT ?{lock}",
                (at, *mine, 1 if small_max is not None else max(limit, 1)),
            ).fetchall()
        if len(rows) <= 1:
            return [_take(conn, r["id"], owner, ttl, at) for r in rows]
        batched.advance_many_in(
            conn, [JobState.PLANNED, JobState.LEASED],
            [(r["id"], {"lease_owner": owner, "lease_until": at + ttl, "heartbeat_at": at,
                        "attempts": r["attempts"] + 1}) for r in rows],
            reason="leased", owner_id=owner,
        )
        return batched.get_many(conn, [r["id"] for r in rows])


def _still(conn: sqlite3.Connection, seen: sqlite3.Row) -> bool:
    """Lock a takeover candidate unless another transaction holds it, and confirm that its
    lease is still the one judged over (no heartbeat or takeover committed meanwhile)."""
    row = conn.execute(
        "SELECT lease_owner, lease_until FROM jobs WHERE id = ? FOR UPDATE SKIP LOCKED",
        (seen["id"],)).fetchone()
    return row is not None and (row["lease_owner"], row["lease_until"]) == \
        (seen["lease_owner"], seen["lease_until"])


def _take(conn: sqlite3.Connection, job_id: int, owner: str, ttl: float, at: float) -> Job:
    attempts = conn.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    return jobs.transition_in(
        conn,
        job_id,
        JobState.LEASED,
        reason="leased",
        fields={"lease_owner": owner, "lease_until": at + ttl, "heartbeat_at": at,
                "attempts": attempts + 1},
        owner_id=owner,
    )


def renew(ledger: Ledger, job_id: int, owner: str, ttl: float = DEFAULT_TTL) -> float:
    """Extend ``owner``'s lease (the heartbeat) and return the new expiry; LeaseLost otherwise."""
    with ledger.write(shared=True) as conn:
        at = now()
        renewed = jobs.write_row(
            conn, job_id, {"lease_until": at + ttl, "heartbeat_at": at},
            "AND lease_owner = ?", (owner,),
        )
        if renewed is None:
            raise LeaseLost(job_id, owner)
    return at + ttl


def release(ledger: Ledger, job_id: int, owner: str) -> None:
    """Give the lease up; a no-op when ``owner`` no longer holds it."""
    with ledger.write(shared=True) as conn:
        jobs.write_row(conn, job_id, dict(jobs.CLEAR_LEASE), "AND lease_owner = ?", (owner,))


def hand_back_large(ledger: Ledger, taken: Sequence[tuple[int, str, int]]) -> set[int]:
    """Give leased jobs that turned out large back to the queue, with their length, so any idle
    worker can start them; ``taken`` holds (job id, owner, length). Returns the ids handed back
    (a job the operator paused or cancelled meanwhile, or no longer held, stays as it is)."""
    back: set[int] = set()
    with ledger.write(shared=True) as conn:
        for job_id, owner, length in sorted(taken):
            row = conn.execute("SELECT control FROM jobs WHERE id = ?" + for_update(conn),
                               (job_id,)).fetchone()
            if row is None or row[0] != Control.RUN.value:
                continue
            try:
                jobs.transition_in(conn, job_id, JobState.PLANNED, owner=owner,
                                   reason="large: back to the queue",
                                   fields={"content_length": length, "bytes_total": length,
                                           **jobs.CLEAR_LEASE})
            except (LeaseLost, IllegalTransition):
                continue
            back.add(job_id)
    return back
