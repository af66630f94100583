"""The operations ledger: each side effect of a job runs exactly once, or is replayed safely.

``run_effect`` records an op as ``started`` before calling the effect and ``done`` with its JSON
result after. A crash in between leaves ``started``; the next run calls the effect again, which is
safe because every effect is idempotent and verifies what is already on disk. A ``done`` op is
never run again unless its ``verify`` says the effect has since disappeared.
"""

from __future__ import annotations

import enum
import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dltui.errors import LeaseLost, UnknownJob
from dltui.ledger._db import for_update
from dltui.ledger.clock import now

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

OP_KEY_VERSION = 1


class OpStatus:
    """Values of ``ops.status``."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Op:
    """One recorded side effect."""

    key: str
    job_id: int
    kind: str
    status: str
    attempt: int | None
    runs: int
    args: dict[str, Any]
    result: Any
    error: str | None
    started_at: float | None
    finished_at: float | None


class OpKind(enum.StrEnum):
    """The side effects of a download, in the order they happen (docs/ARCHITECTURE.md)."""

    HEAD = "HEAD"  # the precheck request
    STREAM = "STREAM"  # the body into the part file
    FINALIZE = "FINALIZE"  # the verified part into the store
    LINK = "LINK"  # the stored object (or the part) at the destination


#: The number of the first try of an attempt; the small-file lane's effects are that try's.
FIRST_TRY = 1


def op_key(kind: str, job_id: int, **parts: Any) -> str:
    """Deterministic op key: sha256 of the sorted JSON of version, kind, job and ``parts``."""
    payload = {"v": OP_KEY_VERSION, "kind": kind, "job": job_id, **parts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# The one definition of each op's key: the per-job path and the small-file lane both use these,
# so a job handed from one to the other replays the very same op.
def head_key(job_id: int, attempt: int, try_: int) -> str:
    """HEAD of one try of one attempt."""
    return op_key(OpKind.HEAD, job_id, attempt=attempt, **{"try": try_})


def stream_key(job_id: int, attempt: int, try_: int) -> str:
    """STREAM of one try of one attempt."""
    return op_key(OpKind.STREAM, job_id, attempt=attempt, **{"try": try_})


def finalize_key(job_id: int, sha256: str) -> str:
    """FINALIZE of these bytes (once per job and digest, whatever the attempt)."""
    return op_key(OpKind.FINALIZE, job_id, sha256=sha256)


def link_key(job_id: int, sha256: str, dest_dir: Path | str) -> str:
    """LINK of these bytes into this directory."""
    return op_key(OpKind.LINK, job_id, sha256=sha256, dir=str(dest_dir))


def _op(row: Any) -> Op:
    return Op(
        key=row["key"],
        job_id=row["job_id"],
        kind=row["kind"],
        status=row["status"],
        attempt=row["attempt"],
        runs=row["runs"],
        args=json.loads(row["args"] or "{}"),
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def get(ledger: Ledger, key: str) -> Op | None:
    """The op with this key, if any."""
    row = ledger.conn.execute("SELECT * FROM ops WHERE key = ?", (key,)).fetchone()
    return _op(row) if row else None


def for_job(ledger: Ledger, job_id: int) -> list[Op]:
    """All ops of a job in the order they were started."""
    rows = ledger.conn.execute(
        "SELECT * FROM ops WHERE job_id = ? ORDER BY started_at, rowid", (job_id,)
    ).fetchall()
    return [_op(r) for r in rows]


def started(ledger: Ledger) -> list[Op]:
    """Ops left ``started``: in flight, or interrupted by a crash."""
    rows = ledger.conn.execute("SELECT * FROM ops WHERE status = 'started'").fetchall()
    return [_op(r) for r in rows]


def run_effect(
    ledger: Ledger,
    key: str,
    fn: Callable[[], Any],
    *,
    job_id: int,
    kind: str,
    args: dict[str, Any] | None = None,
    owner: str | None = None,
    attempt: int | None = None,
    verify: Callable[[Any], bool] | None = None,
    on_done: Callable[[sqlite3.Connection, Any], None] | None = None,
    on_start: Callable[[sqlite3.Connection], None] | None = None,
    started: bool = False,
) -> Any:
    """Run ``fn`` at most once to completion for ``key`` and return its (JSON) result.

    A ``done`` op returns its stored result without calling ``fn`` (unless ``verify(result)`` is
    False, meaning the effect vanished). A ``started`` or ``failed`` op runs ``fn`` again. With
    ``owner``, the op starts only while that owner holds the job's lease (else LeaseLost).
    ``on_start(conn)`` and ``on_done(conn, result)`` run inside the transactions that mark the
    op started and done, so the state changes around an effect commit with it (neither runs
    when a stored result is returned).

    With ``started`` the caller already marked the op started with :func:`start_in`, inside
    an earlier transaction of its own (one commit fewer per op); ``fn`` runs at once.
    """
    mine = owner is not None  # a worker's op on its own job: a shared write
    if not started:
        existing = get(ledger, key)
        if existing and existing.status == OpStatus.DONE and (
            verify is None or verify(existing.result)
        ):
            return existing.result
        with ledger.write(shared=mine) as conn:
            if on_start is not None:
                _check_owner(conn, job_id, owner)
                on_start(conn)
                owner = None  # checked
            start_in(conn, key, job_id=job_id, kind=kind, owner=owner, attempt=attempt,
                     args=args)
    try:
        result = fn()
    except BaseException as exc:
        with ledger.write(shared=mine) as conn:
            conn.execute(
                "UPDATE ops SET status = 'failed', error = ?, finished_at = ? WHERE key = ?",
                (f"{type(exc).__name__}: {exc}"[:2000], now(), key),
            )
        raise
    encoded = json.dumps(result, sort_keys=True)
    decoded = json.loads(encoded)  # a first run and a replay hand back identical values
    with ledger.write(shared=mine) as conn:
        conn.execute(
            "UPDATE ops SET status = 'done', result = ?, finished_at = ? WHERE key = ?",
            (encoded, now(), key),
        )
        if on_done is not None:
            on_done(conn, decoded)
    return decoded


def _check_owner(conn: sqlite3.Connection, job_id: int, owner: str | None) -> None:
    if owner is None:
        return
    row = conn.execute("SELECT lease_owner FROM jobs WHERE id = ?" + for_update(conn),
                       (job_id,)).fetchone()
    if row is None:
        raise UnknownJob(job_id)
    if row[0] != owner:
        raise LeaseLost(job_id, owner)


_START_SQL = (
    "INSERT INTO ops (key, job_id, kind, status, attempt, runs, args, started_at) "
    "VALUES (?, ?, ?, 'started', ?, 1, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET status = 'started', attempt = excluded.attempt, "
    "runs = ops.runs + 1, args = excluded.args, result = NULL, error = NULL, "
    "started_at = excluded.started_at, finished_at = NULL"
)


def start_in(conn: sqlite3.Connection, key: str, *, job_id: int, kind: str,
             owner: str | None = None, attempt: int | None = None,
             args: dict[str, Any] | None = None) -> None:
    """Mark an op ``started`` inside the caller's transaction, before its effect runs; with
    ``owner``, only while that owner holds the job's lease (else LeaseLost)."""
    _check_owner(conn, job_id, owner)
    conn.execute(_START_SQL,
                 (key, job_id, kind, attempt, json.dumps(args or {}, sort_keys=True), now()))


@dataclass(frozen=True, slots=True)
class OpStart:
    """An op to mark ``started`` with :func:`start_many_in`."""

    key: str
    job_id: int
    kind: str
    attempt: int | None
    args: dict[str, Any]


def start_many_in(conn: sqlite3.Connection, starts: list[OpStart]) -> None:
    """:func:`start_in` for many ops in one statement; the caller has checked the leases."""
    at = now()
    conn.executemany(
        _START_SQL,
        [(o.key, o.job_id, o.kind, o.attempt, json.dumps(o.args, sort_keys=True), at)
         for o in starts],
    )


def finish_many_in(conn: sqlite3.Connection, results: list[tuple[str, Any]]) -> list[Any]:
    """Mark ``(key, result)`` ops done inside the caller's transaction; returns the results
    as a replay would read them back (through JSON)."""
    at = now()
    encoded = [json.dumps(result, sort_keys=True) for _, result in results]
    conn.executemany(
        "UPDATE ops SET status = 'done', result = ?, finished_at = ? WHERE key = ?",
        [(e, at, key) for e, (key, _) in zip(encoded, results, strict=True)],
    )
    return [json.loads(e) for e in encoded]


def settle(ledger: Ledger, key: str, *, done: bool, result: Any = None, error: str = "") -> None:
    """Close a ``started`` op found by the reconciler: done with a verified result, or failed."""
    with ledger.write() as conn:
        if done:
            conn.execute(
                "UPDATE ops SET status = 'done', result = ?, finished_at = ? "
                "WHERE key = ? AND status = 'started'",
                (json.dumps(result, sort_keys=True), now(), key),
            )
        else:
            conn.execute(
                "UPDATE ops SET status = 'failed', error = ?, finished_at = ? "
                "WHERE key = ? AND status = 'started'",
                (error, now(), key),
            )
