"""Jobs: adding them idempotently, the only writer of ``state``, reads and operator intent."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dltui import files, requests
from dltui.errors import (
    IllegalTransition,
    LeaseLost,
    NotApplicable,
    UnknownJob,
    UsageError,
)
from dltui.ledger import events, segments
from dltui.ledger._db import next_revs
from dltui.ledger.clock import now
from dltui.ledger.liveness import lease_is_live
from dltui.model import (
    ACTION_STATES,
    ACTIVE_STATES,
    FINAL_STATES,
    JOB_FIELDS,
    TRANSITIONS,
    Control,
    FileIdentity,
    Job,
    JobState,
    sources_of,
)
from dltui.requests import DownloadRequest
from dltui.urls import redact_text

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

IDEM_KEY_VERSION = 1
_COLUMNS = ", ".join(JOB_FIELDS)
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The columns that hold a lease; every write that ends or drops a lease sets exactly these.
CLEAR_LEASE: Mapping[str, None] = MappingProxyType(
    {"lease_owner": None, "lease_until": None, "heartbeat_at": None})
#: Columns a caller may set through :func:`update`; ``state`` only moves via :func:`transition`.
WRITABLE = frozenset(
    {
        "file_name", "control", "attempts", "lease_owner", "lease_until", "heartbeat_at",
        "etag", "last_modified", "content_length", "accept_ranges", "bytes_committed",
        "bytes_total", "prefix_hash", "decision", "decision_reason", "sha256", "final_path",
        "error", "finished_at", "not_before", "bytes_durable", "boot_id",
        "final_dev", "final_ino", "final_mtime_ns",
    }
)


def dest_fields(ident: FileIdentity | None) -> dict[str, Any]:
    """The job columns that prove what dltui placed at ``final_path``."""
    if ident is None:
        return {"final_dev": None, "final_ino": None, "final_mtime_ns": None}
    return {"final_dev": ident.dev, "final_ino": ident.ino, "final_mtime_ns": ident.mtime_ns}


class DigestConflict(UsageError):
    """A re-add of an existing job (same URL and destination) with another expected digest."""

    def __init__(self, job_id: int, existing: str | None, given: str) -> None:
        self.job_id, self.existing, self.given = job_id, existing, given
        had = f"expects SHA-256 {existing}" if existing else "has no expected digest"
        super().__init__(f"job {job_id} already exists for this URL and directory and {had}, "
                         f"not {given}; cancel or remove it first, or use another directory")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A URL, a directory, optionally a name and expected digest, not yet checked (checked by
    :func:`dltui.requests.request` when added; front ends build requests directly)."""

    url: str
    dest_dir: Path
    name: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class AddResult:
    """The job for a spec, and whether this call created it."""

    job: Job
    created: bool


def idempotency_key(canonical: str, dest_dir: str, name: str | None) -> str:
    """sha256 of the sorted JSON of key version, canonical URL and destination path."""
    payload = {"v": IDEM_KEY_VERSION, "url": canonical, "dir": dest_dir, "name": name}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _prepare(spec: JobSpec | DownloadRequest) -> dict[str, Any]:
    req = spec if isinstance(spec, DownloadRequest) else requests.request(
        spec.url, spec.dest_dir, spec.name, spec.sha256)
    dest_s = str(req.dest_dir)
    return {
        "idem_key": idempotency_key(req.canonical_url, dest_s, req.name),
        "url": req.url,
        "canonical_url": req.canonical_url,
        "dest_dir": dest_s,
        "requested_name": req.name,
        "file_name": req.name,
        "expected_sha256": req.sha256,
    }


def add(ledger: Ledger, specs: Sequence[JobSpec | DownloadRequest], *,
        by: str = "cli") -> list[AddResult]:
    """Add jobs; a spec whose URL and destination already have a job returns that job.

    Every spec is validated before anything is written, so bad input changes nothing.
    """
    prepared = [_prepare(s) for s in specs]
    results: list[AddResult] = []
    with ledger.write() as conn:
        ts = now()
        last_rev = next_revs(conn, max(len(prepared), 1))
        rev = last_rev - len(prepared) + 1
        for values in prepared:
            row = conn.execute(
                "INSERT INTO jobs (idem_key, url, canonical_url, dest_dir, requested_name, "
                "file_name, expected_sha256, state, control, attempts, bytes_committed, "
                "created_at, updated_at, rev) "
                "VALUES (:idem_key, :url, :canonical_url, :dest_dir, :requested_name, "
                ":file_name, :expected_sha256, 'PLANNED', 'run', 0, 0, :ts, :ts, :rev) "
                f"ON CONFLICT(idem_key) DO NOTHING RETURNING {_COLUMNS}",
                {**values, "ts": ts, "rev": rev},
            ).fetchone()
            rev += 1
            if row is not None:
                job = Job.from_row(row)
                events.append(conn, "added", job.id, url=job.url, dest=job.dest_dir, by=by)
                results.append(AddResult(job, True))
            else:
                existing = Job.from_row(conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE idem_key = ?", (values["idem_key"],)
                ).fetchone())
                wanted = values["expected_sha256"]
                if wanted is not None and wanted != existing.expected_sha256:
                    # Rolls back the whole add: bad input changes nothing.
                    raise DigestConflict(existing.id, existing.expected_sha256, wanted)
                results.append(AddResult(existing, False))
    return results


# -- reads -----------------------------------------------------------------------------------
def get(ledger: Ledger, job_id: int) -> Job:
    """The job with this id, or UnknownJob."""
    row = ledger.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise UnknownJob(job_id)
    return Job.from_row(row)


def find(ledger: Ledger, job_id: int) -> Job | None:
    """The job with this id, or None."""
    row = ledger.conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return Job.from_row(row) if row else None


def list_jobs(
    ledger: Ledger, states: Iterable[JobState | str] | None = None, limit: int | None = None
) -> list[Job]:
    """Jobs in id order, optionally only those in ``states``."""
    sql = f"SELECT {_COLUMNS} FROM jobs"
    params: list[Any] = []
    if states is not None:
        wanted = [JobState(s).value for s in states]
        sql += f" WHERE state IN ({','.join('?' * len(wanted))})"
        params.extend(wanted)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [Job.from_row(r) for r in ledger.conn.execute(sql, params).fetchall()]


def changed_since(ledger: Ledger, rev: int, limit: int = 10_000) -> list[Job]:
    """Jobs whose ``rev`` is above ``rev``, oldest change first: what a poller has not seen."""
    rows = ledger.conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE rev > ? ORDER BY rev LIMIT ?", (rev, limit)
    ).fetchall()
    return [Job.from_row(r) for r in rows]


_STORED = "state = 'FINALIZED' AND sha256 IS NOT NULL"


def find_stored(ledger: Ledger, canonical: str) -> Job | None:
    """The newest FINALIZED job for this URL, whose object may be reused (decision ``cached``)."""
    row = ledger.conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE canonical_url = ? AND {_STORED} "
        "ORDER BY finished_at DESC LIMIT 1",
        (canonical,),
    ).fetchone()
    return Job.from_row(row) if row else None


def stored_digests(ledger: Ledger, canonicals: Iterable[str]) -> dict[str, set[str]]:
    """:func:`find_stored` for many URLs at once: each URL's digests of finished downloads."""
    urls = sorted(set(canonicals))
    out: dict[str, set[str]] = {}
    if not urls:
        return out
    rows = ledger.conn.execute(
        f"SELECT DISTINCT canonical_url, sha256 FROM jobs WHERE {_STORED} "
        f"AND canonical_url IN ({','.join('?' * len(urls))})", urls,
    ).fetchall()
    for row in rows:
        out.setdefault(row["canonical_url"], set()).add(row["sha256"])
    return out


def pending_work(ledger: Ledger) -> tuple[int, int]:
    """(queued jobs that will run, active jobs): what keeps ``run --until-idle`` going."""
    active = [s.value for s in ACTIVE_STATES]
    queued = ledger.conn.execute(
        "SELECT COUNT(*) FROM jobs WHERE state = 'PLANNED' AND control = 'run'"
    ).fetchone()[0]
    running = ledger.conn.execute(
        f"SELECT COUNT(*) FROM jobs WHERE state IN ({','.join('?' * len(active))})", active
    ).fetchone()[0]
    return int(queued), int(running)


def current_rev(ledger: Ledger) -> int:
    """The newest rev handed out."""
    return int(ledger.conn.execute("SELECT value FROM meta WHERE key = 'rev'").fetchone()[0])


def counts(ledger: Ledger) -> dict[JobState, int]:
    """Number of jobs in each state (zero for absent states)."""
    out = dict.fromkeys(JobState, 0)
    for state, n in ledger.conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
        out[JobState(state)] = n
    return out


# -- writes ----------------------------------------------------------------------------------
def write_row(
    conn: sqlite3.Connection,
    job_id: int,
    sets: dict[str, Any],
    where: str = "",
    params: Sequence[Any] = (),
) -> Job | None:
    """UPDATE one job, stamping ``updated_at`` and a fresh ``rev``; None when WHERE missed."""
    if sets.get("error"):
        sets = {**sets, "error": redact_text(str(sets["error"]))}
    cols = list(sets)
    assignments = ", ".join(f"{c} = ?" for c in cols)
    sql = (
        f"UPDATE jobs SET {assignments}, updated_at = ?, rev = ? WHERE id = ? {where} "
        f"RETURNING {_COLUMNS}"
    )
    rev = next_revs(conn)
    row = conn.execute(sql, [*sets.values(), now(), rev, job_id, *params]).fetchone()
    return Job.from_row(row) if row else None


def _current(conn: sqlite3.Connection, job_id: int) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute("SELECT * FROM jobs WHERE id = ?",
                                           (job_id,)).fetchone()
    if row is None:
        raise UnknownJob(job_id)
    return row


def transition_in(
    conn: sqlite3.Connection,
    job_id: int,
    to: JobState | str,
    *,
    owner: str | None = None,
    reason: str | None = None,
    fields: dict[str, Any] | None = None,
    **data: Any,
) -> Job:
    """:func:`transition` inside the caller's write transaction."""
    target = JobState(to)
    row = _current(conn, job_id)
    if owner is not None and row["lease_owner"] != owner:
        raise LeaseLost(job_id, owner)
    current = JobState(row["state"])
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(job_id, current, target)
    sets: dict[str, Any] = {**(fields or {}), "state": target.value}
    if target in FINAL_STATES or target is JobState.FAILED:
        sets.setdefault("finished_at", now())
    elif target is JobState.PLANNED:
        sets.setdefault("finished_at", None)
    sources = sorted(s.value for s in sources_of(target))
    where = f"AND state IN ({','.join('?' * len(sources))})"
    params: list[Any] = list(sources)
    if owner is not None:
        where += " AND lease_owner = ?"
        params.append(owner)
    job = write_row(conn, job_id, sets, where, params)
    if job is None:  # unreachable while the write lock is held; kept as the hard guarantee
        raise IllegalTransition(job_id, current, target)
    move: dict[str, Any] = {"from": current.value, "to": target.value}
    events.append(conn, "state", job_id, **move, reason=reason, **data)
    if target in FINAL_STATES:  # a finished or cancelled download has no segments left
        segments.clear_in(conn, job_id)
    return job


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
    last = next_revs(conn, len(rows))
    at = now()
    params = []
    for n, (job_id, fields) in enumerate(rows):
        if list(fields) != cols:
            raise ValueError(f"job {job_id}: every job must set the same columns {cols}")
        p = [*fields.values(), *extra.values(), target.value, at, last - len(rows) + 1 + n,
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


def with_control_in(conn: sqlite3.Connection, ids: Sequence[int],
                    control: Control) -> set[int]:
    """Which of these jobs the operator has asked for ``control`` (in the caller's transaction)."""
    if not ids:
        return set()
    rows = conn.execute(
        f"SELECT id FROM jobs WHERE control = ? AND id IN ({','.join('?' * len(ids))})",
        [control.value, *ids],
    ).fetchall()
    return {int(r[0]) for r in rows}


def controls(ledger: Ledger, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
    """``{job id: (control, lease owner)}`` for these jobs: what the keeper watches."""
    if not ids:
        return {}
    rows = ledger.conn.execute(
        f"SELECT id, control, lease_owner FROM jobs WHERE id IN ({','.join('?' * len(ids))})",
        list(ids),
    ).fetchall()
    return {int(r["id"]): (r["control"], r["lease_owner"]) for r in rows}


def get_many(conn: sqlite3.Connection, ids: Sequence[int]) -> list[Job]:
    """The jobs with these ids, in the order given (missing ids are left out)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE id IN ({','.join('?' * len(ids))})", list(ids)
    ).fetchall()
    by_id = {r["id"]: Job.from_row(r) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def transition(
    ledger: Ledger,
    job_id: int,
    to: JobState | str,
    *,
    owner: str | None = None,
    reason: str | None = None,
    fields: dict[str, Any] | None = None,
    **data: Any,
) -> Job:
    """Move a job to state ``to``; the only writer of ``state``.

    Refuses any edge not in TRANSITIONS with IllegalTransition (naming both states) and, with
    ``owner``, any write by a worker that no longer holds the lease (LeaseLost). Appends a
    ``state`` event.
    """
    with ledger.write() as conn:
        return transition_in(conn, job_id, to, owner=owner, reason=reason, fields=fields, **data)


def update(ledger: Ledger, job_id: int, *, owner: str | None, **fields: Any) -> Job:
    """Set non-state columns; with ``owner`` only while that owner holds the lease."""
    bad = set(fields) - WRITABLE
    if bad:
        raise ValueError(f"cannot write job columns {sorted(bad)} with update()")
    with ledger.write() as conn:
        if owner is None:
            job = write_row(conn, job_id, fields)
            if job is None:
                raise UnknownJob(job_id)
            return job
        job = write_row(conn, job_id, fields, "AND lease_owner = ?", (owner,))
        if job is None:
            _current(conn, job_id)
            raise LeaseLost(job_id, owner)
        return job


# -- operator intent -------------------------------------------------------------------------


def _lease_live(row: sqlite3.Row, at: float) -> bool:
    return lease_is_live(row["lease_owner"], row["lease_until"], at)


def _refuse(job_id: int, state: JobState, action: str) -> NotApplicable:
    return NotApplicable(job_id, state.value, action, (s.value for s in ACTION_STATES[action]))


def check_action(job: Job, action: str) -> None:
    """Raise NotApplicable when ``action`` does not apply to ``job``'s state now."""
    if job.state not in ACTION_STATES[action]:
        raise _refuse(job.id, job.state, action)


def pause(ledger: Ledger, job_id: int, *, by: str = "cli") -> str:
    """Pause a job: at once when no worker holds it, else at the worker's next checkpoint."""
    with ledger.write() as conn:
        row = _current(conn, job_id)
        state = JobState(row["state"])
        if state is JobState.PAUSED:
            return "already paused"
        if state is JobState.PLANNED or (state in ACTIVE_STATES and not _lease_live(row, now())):
            transition_in(conn, job_id, JobState.PAUSED, reason="operator",
                          fields={"control": Control.PAUSE.value, **CLEAR_LEASE}, by=by)
            return "paused"
        if state in ACTIVE_STATES:
            write_row(conn, job_id, {"control": Control.PAUSE.value})
            events.append(conn, "control", job_id, control="pause", by=by)
            return "pause requested"
        raise _refuse(job_id, state, "pause")


def resume(ledger: Ledger, job_id: int, *, by: str = "cli") -> str:
    """Re-queue a paused job, or withdraw a pause a worker has not acted on yet."""
    with ledger.write() as conn:
        row = _current(conn, job_id)
        state = JobState(row["state"])
        if state is JobState.PAUSED:
            transition_in(conn, job_id, JobState.PLANNED, reason="operator",
                          fields={"control": Control.RUN.value}, by=by)
            return "resumed"
        if state in ACTIVE_STATES or state is JobState.PLANNED:
            if row["control"] == Control.PAUSE.value:
                write_row(conn, job_id, {"control": Control.RUN.value})
                events.append(conn, "control", job_id, control="run", by=by)
                return "pause withdrawn"
            return "already running" if state in ACTIVE_STATES else "already queued"
        raise _refuse(job_id, state, "resume")


def retry(ledger: Ledger, job_id: int, *, by: str = "cli") -> str:
    """Re-queue a failed job with its error cleared (its part, if any, is kept for resume)."""
    with ledger.write() as conn:
        row = _current(conn, job_id)
        state = JobState(row["state"])
        if state not in ACTION_STATES["retry"]:
            raise _refuse(job_id, state, "retry")
        transition_in(conn, job_id, JobState.PLANNED, reason="operator retry",
                      fields={"control": Control.RUN.value, "error": None, **CLEAR_LEASE},
                      by=by)
        return "queued for retry"


def cancel(ledger: Ledger, job_id: int, *, by: str = "cli") -> str:
    """Cancel a job and delete its part; a running worker stops at its next checkpoint."""
    with ledger.write() as conn:
        row = _current(conn, job_id)
        state = JobState(row["state"])
        if state not in ACTION_STATES["cancel"]:
            raise _refuse(job_id, state, "cancel")
        if state in ACTIVE_STATES and _lease_live(row, now()):
            write_row(conn, job_id, {"control": Control.CANCEL.value})
            events.append(conn, "control", job_id, control="cancel", by=by)
            return "cancel requested"
        transition_in(conn, job_id, JobState.CANCELLED, reason="operator",
                      fields={"control": Control.CANCEL.value, **CLEAR_LEASE}, by=by)
    files.delete_parts(ledger.home, job_id)
    return "cancelled"
