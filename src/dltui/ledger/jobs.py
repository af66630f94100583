"""Jobs: adding them idempotently, reading them, and the only writer of ``state``.

Operator intent is ``actions.py``; many jobs in one statement, ``batched.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dltui import requests
from dltui.errors import (
    IllegalTransition,
    LeaseLost,
    UnknownJob,
    UsageError,
)
from dltui.ledger import events, segments
from dltui.ledger._db import for_update, is_pg, next_revs
from dltui.ledger.clock import now
from dltui.ledger.liveness import lease_is_live
from dltui.model import (
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
from dltui.urls import redact, redact_text, unsigned

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

IDEM_KEY_VERSION = 1
_COLUMNS = ", ".join(JOB_FIELDS)
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The columns that hold a lease (and the rate measured under it); every write that ends or
#: drops a lease sets exactly these.
CLEAR_LEASE: Mapping[str, None] = MappingProxyType(
    {"lease_owner": None, "lease_until": None, "heartbeat_at": None, "rate": None})
#: Columns a caller may set through :func:`update`; ``state`` only moves via :func:`transition`.
WRITABLE = frozenset(
    {
        "file_name", "control", "attempts", "lease_owner", "lease_until", "heartbeat_at",
        "etag", "last_modified", "content_length", "accept_ranges", "bytes_committed",
        "bytes_total", "prefix_hash", "decision", "decision_reason", "sha256", "final_path",
        "error", "finished_at", "not_before", "bytes_durable", "boot_id",
        "final_dev", "final_ino", "final_mtime_ns", "failed_tries", "rate", "part_host",
        "final_size", "final_ctime_ns", "adopted", "final_removed_at",
    }
)


def dest_fields(ident: FileIdentity | None, *, adopted: bool = False) -> dict[str, Any]:
    """The job columns that prove what dltui placed at ``final_path`` (none for a file the
    job adopted: it was there already, so nothing may ever prove it dltui's)."""
    if ident is None or adopted:
        return {"final_dev": None, "final_ino": None, "final_mtime_ns": None,
                "final_size": None, "final_ctime_ns": None, "adopted": int(adopted),
                "final_removed_at": None}
    return {"final_dev": ident.dev, "final_ino": ident.ino, "final_mtime_ns": ident.mtime_ns,
            "final_size": ident.size, "final_ctime_ns": ident.ctime_ns, "adopted": 0,
            "final_removed_at": None}


class DigestConflict(UsageError):
    """A re-add of an existing job (same URL and destination) with another expected digest, of
    any algorithm (``existing`` and ``given`` as ``algo=hex`` for those but SHA-256)."""

    def __init__(self, job_id: int, existing: str | None, given: str,
                 algo: str = "SHA-256 ") -> None:
        self.job_id, self.existing, self.given = job_id, existing, given
        had = f"expects {algo}{existing}" if existing else "has no expected digest"
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
        "checksum": req.checksum,
        "request": req.options.to_json(),
        "host": req.host,
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
        revs = next_revs(conn, len(prepared)) if prepared else []
        for values, rev in zip(prepared, revs, strict=True):
            row = conn.execute(
                "INSERT INTO jobs (idem_key, url, canonical_url, dest_dir, requested_name, "
                "file_name, expected_sha256, checksum, request, host, state, control, attempts, "
                "bytes_committed, created_at, updated_at, rev) "
                "VALUES (:idem_key, :url, :canonical_url, :dest_dir, :requested_name, "
                ":file_name, :expected_sha256, :checksum, :request, :host, 'PLANNED', 'run', 0, 0, "
                ":ts, :ts, :rev) "
                f"ON CONFLICT(idem_key) DO NOTHING RETURNING {_COLUMNS}",
                {**values, "ts": ts, "rev": rev},
            ).fetchone()
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
                other = values["checksum"]  # md5, sha-1, sha-224, sha-384, sha-512
                if other is not None and other != existing.checksum:
                    raise DigestConflict(existing.id, existing.checksum, other, algo="")
                results.append(AddResult(existing, False))
    return results


def resigned_of(ledger: Ledger, job: Job) -> Job | None:
    """An unfinished job with a part whose URL names the same object as ``job``'s presigned
    URL, signed otherwise, into the same file: its bytes can carry over (:func:`resign`)."""
    target = unsigned(job.canonical_url)
    if target is None:
        return None
    stem = job.canonical_url.split("?", 1)[0]
    # The same path with any query: an index range on canonical_url ('?' sorts before '@').
    for row in ledger.conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE canonical_url >= ? AND canonical_url < ? "
            "AND id != ? AND dest_dir = ? AND bytes_committed > 0 "
            "AND state NOT IN ('FINALIZED', 'CANCELLED') ORDER BY id DESC",
            (stem + "?", stem + "@", job.id, job.dest_dir)):
        other = Job.from_row(row)
        if other.requested_name == job.requested_name and \
                unsigned(other.canonical_url) == target:
            return other
    return None


def resign(ledger: Ledger, job_id: int, spec: JobSpec | DownloadRequest | Job, *,
           by: str = "cli") -> Job:
    """Give unfinished job ``job_id`` the URL of ``spec`` (a request, or the job a plain
    ``add`` of it made), the same object signed anew, so its part carries over. A job that
    ``spec`` already made and that has not started is removed in the same transaction; one
    that has bytes is refused, as is any job whose URL names another object or file."""
    values: dict[str, Any] = _prepare(spec) if not isinstance(spec, Job) else {
        "url": spec.url, "canonical_url": spec.canonical_url, "idem_key": spec.idem_key,
        "dest_dir": spec.dest_dir, "requested_name": spec.requested_name,
        "request": spec.request}
    with ledger.write() as conn:
        row = _current(conn, job_id)
        old = Job.from_row(conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?",
                                        (job_id,)).fetchone())
        target = unsigned(values["canonical_url"])
        if target is None:
            raise UsageError(f"{redact(values['url'])} is not a presigned URL; --resume-from "
                             "carries a part over to the same object signed anew")
        if unsigned(old.canonical_url) != target or old.dest_dir != values["dest_dir"] or \
                old.requested_name != values["requested_name"]:
            raise UsageError(f"job {job_id} downloads another object or into another file; "
                             "--resume-from takes the job of the same URL (signed otherwise) "
                             "and the same destination")
        if JobState(row["state"]) in (JobState.FINALIZED, JobState.CANCELLED):
            raise UsageError(f"job {job_id} is {row['state']}: there is no part to carry over")
        if JobState(row["state"]) in ACTIVE_STATES and \
                lease_is_live(row["lease_owner"], row["lease_until"], now()):
            raise UsageError(f"job {job_id} is downloading now; pause it first (dltui pause "
                             f"{job_id}), then carry it over")
        twin = conn.execute("SELECT id, state, bytes_committed, lease_owner FROM jobs "
                            "WHERE idem_key = ? AND id != ?",
                            (values["idem_key"], job_id)).fetchone()
        if twin is not None:
            if twin["bytes_committed"] or twin["lease_owner"] or twin["state"] != "PLANNED":
                raise UsageError(f"job {twin['id']} already downloads this URL and has begun; "
                                 f"cancel and remove it first to carry job {job_id}'s part over")
            for table in ("ops", "segments"):
                conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (twin["id"],))
            conn.execute("DELETE FROM jobs WHERE id = ?", (twin["id"],))
            events.append(conn, "removed", twin["id"], state="PLANNED", by=by,
                          detail=f"the same object as job {job_id}, which carries on")
        fields: dict[str, Any] = {"url": values["url"],
                                  "canonical_url": values["canonical_url"],
                                  "idem_key": values["idem_key"], "request": values["request"]}
        if row["state"] == JobState.FAILED.value:
            fields.update(error=None, failed_tries=0)
        job = write_row(conn, job_id, fields)
        if job is not None and job.state in (JobState.FAILED, JobState.PAUSED):
            # Asked for again under the new URL: back in the queue, its part kept.
            job = transition_in(conn, job_id, JobState.PLANNED, reason="re-signed URL",
                                fields={"control": "run", **CLEAR_LEASE}, by=by)
        events.append(conn, "resigned", job_id, url=values["url"], by=by,
                      kept=old.bytes_committed)
    assert job is not None
    return job


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


#: Where a poller has read up to (:func:`changes`): the newest rev seen on SQLite, the snapshot
#: of its last read (as text) on PostgreSQL. Opaque to callers.
Cursor = int | str


def changes(ledger: Ledger, cursor: Cursor | None) -> tuple[list[Job], Cursor]:
    """Jobs changed since ``cursor`` (every job when None), oldest change first, and the
    cursor to pass next time: what a poller has not seen.

    SQLite commits one writer at a time, in rev order, so "rev above N" misses nothing. On
    PostgreSQL writers of different jobs commit side by side, and a rev taken early may
    commit after a later one was read; there the cursor is the snapshot the last read saw,
    and the rows returned are those whose writer it could not see (``txid``), in the manner
    of PgQ's batches. A cursor of the other backend's kind reads every job again.
    """
    if ledger.pg:
        with ledger.read() as conn:
            snapshot = str(conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0])
            if isinstance(cursor, str):
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs "
                    "WHERE txid >= pg_snapshot_xmin(CAST(? AS pg_snapshot)) "
                    "AND NOT pg_visible_in_snapshot(txid, CAST(? AS pg_snapshot)) ORDER BY rev",
                    (cursor, cursor)).fetchall()
            else:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY rev").fetchall()
        return [Job.from_row(r) for r in rows], snapshot
    after = cursor if isinstance(cursor, int) else 0
    rows = ledger.conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE rev > ? ORDER BY rev", (after,)).fetchall()
    return [Job.from_row(r) for r in rows], (int(rows[-1]["rev"]) if rows else after)


def cursor_now(ledger: Ledger) -> Cursor:
    """The cursor of a poller that has seen every change committed so far."""
    if ledger.pg:
        return str(ledger.conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0])
    return int(ledger.conn.execute("SELECT value FROM meta WHERE key = 'rev'").fetchone()[0])


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


def active_destinations(ledger: Ledger) -> list[tuple[str, int]]:
    """Each destination directory of an active job, with how many active jobs write there."""
    active = [s.value for s in ACTIVE_STATES]
    return [(r[0], int(r[1])) for r in ledger.conn.execute(
        f"SELECT dest_dir, COUNT(*) FROM jobs WHERE state IN ({','.join('?' * len(active))}) "
        "GROUP BY dest_dir", active)]


def claimed_inodes(ledger: Ledger, inodes: Iterable[tuple[int, int]], *,
                   besides: Iterable[int] = ()) -> set[tuple[int, int]]:
    """Of these (device, inode) pairs, those a job other than ``besides`` records as the
    file it placed: an inode two jobs claim is provably neither's."""
    wanted = set(inodes)
    skip = set(besides)
    inos = sorted({ino for _, ino in wanted})
    out: set[tuple[int, int]] = set()
    for at in range(0, len(inos), 500):
        chunk = inos[at:at + 500]
        for row in ledger.conn.execute(
                "SELECT id, final_dev, final_ino FROM jobs WHERE adopted = 0 AND final_ino IN "
                f"({','.join('?' * len(chunk))})", chunk):
            pair = (row[1], row[2])
            if pair in wanted and row[0] not in skip:
                out.add(pair)
    return out


def pending_work(ledger: Ledger, host: str | None = None) -> tuple[int, int]:
    """(queued jobs that will run, active jobs): what keeps ``run --until-idle`` going. With
    ``host``, only the jobs that host may run (those pinned to another host are left out:
    only their own host can ever finish them)."""
    active = [s.value for s in ACTIVE_STATES]
    mine = "" if host is None else " AND (host IS NULL OR host = ?)"
    extra = () if host is None else (host,)
    queued = ledger.conn.execute(
        f"SELECT COUNT(*) FROM jobs WHERE state = 'PLANNED' AND control = 'run'{mine}", extra
    ).fetchone()[0]
    running = ledger.conn.execute(
        f"SELECT COUNT(*) FROM jobs WHERE state IN ({','.join('?' * len(active))}){mine}",
        (*active, *extra)).fetchone()[0]
    return int(queued), int(running)


def pinned_elsewhere(ledger: Ledger, host: str) -> dict[str, int]:
    """Unfinished jobs pinned to hosts other than ``host``, counted by host."""
    return {r[0]: int(r[1]) for r in ledger.conn.execute(
        "SELECT host, COUNT(*) FROM jobs WHERE host IS NOT NULL AND host != ? "
        "AND state NOT IN ('FINALIZED', 'FAILED', 'CANCELLED') GROUP BY host ORDER BY host",
        (host,))}


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
    if is_pg(conn):  # the sequence inside the statement: one round trip fewer per write
        row = conn.execute(
            f"UPDATE jobs SET {assignments}, updated_at = ?, rev = nextval('jobs_rev') "
            f"WHERE id = ? {where} RETURNING {_COLUMNS}",
            [*sets.values(), now(), job_id, *params]).fetchone()
        return Job.from_row(row) if row else None
    [rev] = next_revs(conn)
    row = conn.execute(
        f"UPDATE jobs SET {assignments}, updated_at = ?, rev = ? WHERE id = ? {where} "
        f"RETURNING {_COLUMNS}", [*sets.values(), now(), rev, job_id, *params]).fetchone()
    return Job.from_row(row) if row else None


def _current(conn: sqlite3.Connection, job_id: int) -> sqlite3.Row:
    """The job's row, locked until the transaction ends: what it decides on stays so."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM jobs WHERE id = ?" + for_update(conn), (job_id,)).fetchone()
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
    if job is None:  # unreachable while the row is locked; kept as the hard guarantee
        raise IllegalTransition(job_id, current, target)
    move: dict[str, Any] = {"from": current.value, "to": target.value}
    events.append(conn, "state", job_id, **move, reason=reason, **data)
    if target in FINAL_STATES:  # a finished or cancelled download has no segments left
        segments.clear_in(conn, job_id)
    return job


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
    with ledger.write(shared=owner is not None) as conn:  # a worker's own job
        return transition_in(conn, job_id, to, owner=owner, reason=reason, fields=fields, **data)


def update(ledger: Ledger, job_id: int, *, owner: str | None, **fields: Any) -> Job:
    """Set non-state columns; with ``owner`` only while that owner holds the lease."""
    bad = set(fields) - WRITABLE
    if bad:
        raise ValueError(f"cannot write job columns {sorted(bad)} with update()")
    with ledger.write(shared=owner is not None) as conn:
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
