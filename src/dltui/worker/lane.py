"""The small-file lane: fresh small downloads carried in batches, a few commits per batch.

Through :class:`~dltui.worker.JobRun` a 64 KiB file costs five ledger transactions and far more
Python than its transfer. Here one worker carries up to ``batch_jobs`` jobs it leased together:

1. each body is fetched whole into memory; nothing on disk changes, so nothing needs an op;
2. one transaction: PRECHECKED, the ``fresh`` decision, STREAMING and the STREAM op's start;
3. the parts are written (STREAM's effect);
4. one transaction: STREAM done with its result, the complete checkpoint, FINALIZING and the
   FINALIZE op's start;
5. the parts are promoted into the store (FINALIZE's effect);
6. one transaction: FINALIZE done and LINK started;
7. the objects are linked into their destinations (LINK's effect);
8. one transaction: LINK done and FINALIZED.

The states, ops (with the keys JobRun uses), checkpoints and events are the ones JobRun writes,
so the reconciler heals a crash between any two steps the same way, and a job can leave the
lane at any step for :meth:`JobRun.run`, which picks it up from what the ledger says.

Anything the lane does not handle leaves it before step 2, untouched: a part or a stored
object to reuse, a limited host, a 206/416 answer, no or a large Content-Length, a digest other
than the expected one. A failed request leaves it with its error, so retries, the circuit
breaker and the failure report stay JobRun's.
"""

from __future__ import annotations

import contextlib
import sqlite3
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltui import durability, paths
from dltui.engine import finalize, quota, resume, small, watching
from dltui.engine.transfer import SpeedGuard, StreamOptions
from dltui.errors import CircuitOpenError, DltuiError
from dltui.ledger import batched, events, jobs, leases, objects, ops
from dltui.model import Control, JobState, PartIdentity, Placed, ServerValidators
from dltui.records import as_record
from dltui.worker.base import WorkerPool
from dltui.worker.run import JobRun

_FRESH = resume.decide(ServerValidators(), None)


@dataclass(slots=True)
class _Item:
    """One job in the lane and what it has gathered so far."""

    run: JobRun
    body: small.SmallBody
    name: str
    job_id: int = 0
    dest_dir: Path = Path()
    sha: str = ""
    placed: Placed | None = None
    #: The part as written: only that file is promoted (see dltui.store.vet_part).
    written: PartIdentity | None = None

    def __post_init__(self) -> None:
        self.job_id = self.run.job.id
        self.dest_dir = Path(self.run.job.dest_dir)


def eligible(pool: WorkerPool, run: JobRun) -> bool:
    """True for a fresh job the lane can carry with the flags as they are."""
    job, f = run.job, run.flags
    return (f.batch and f.dedupe and job.state is JobState.LEASED
            and job.bytes_committed == 0 and job.sha256 is None and job.checksum is None
            and not (f.rate_limit and pool.limits.limited(run.host))
            and not run.part.exists())


@dataclass(slots=True)
class LaneResult:
    """What the lane did with each job it was given; it writes no field of a JobRun."""

    #: Jobs the lane FINALIZED.
    finished: list[JobRun] = field(default_factory=list)
    #: Jobs JobRun must carry on, each with the failure of its first try when the lane's
    #: request failed (JobRun then treats it as its own first try).
    left: list[tuple[JobRun, DltuiError | None]] = field(default_factory=list)
    #: Jobs that turned out large, handed back to the queue (their size now recorded) so that
    #: any idle worker, in any process, can start them now.
    released: list[JobRun] = field(default_factory=list)
    #: The lane stopped midway: the ledger is ahead of what the runs in ``left`` last read.
    stale: bool = False
    #: The digests of the jobs it finished (their objects may now go back to the disk).
    digests: set[str] = field(default_factory=set)


def carry(pool: WorkerPool, runs: list[JobRun]) -> LaneResult:
    """Finish what the lane can of ``runs``; say what became of each."""
    result = LaneResult()
    settled: set[int] = set()  # finished, or stopped by the operator, inside the lane
    try:
        _carry(pool, runs, result, settled)
    except Exception as exc:  # a lost lease, a full disk, a bug: JobRun settles each job
        if not isinstance(exc, DltuiError | OSError):  # a full disk is no bug: JobRun words it
            with contextlib.suppress(DltuiError, sqlite3.Error):
                events.record(pool.ledger, "internal_error", None, error=repr(exc),
                              traceback=traceback.format_exc(), where="small-file lane")
        handed = dict((id(run), error) for run, error in result.left)
        result.finished = [r for r in result.finished if r.job.id in settled]
        result.left = [(r, handed.get(id(r))) for r in runs if r.job.id not in settled]
        result.stale = True
    return result


def _carry(pool: WorkerPool, runs: list[JobRun], result: LaneResult,
           settled: set[int]) -> None:
    lane: list[JobRun] = []
    rest: list[JobRun] = []
    for run in runs:
        (lane if eligible(pool, run) else rest).append(run)
    if len(lane) < 2:
        result.left = [(run, None) for run in runs]
        return
    lane = _without_stored(pool, lane, rest)
    result.left = [(run, None) for run in rest]
    large: list[tuple[JobRun, int]] = []
    items = _fetch(pool, lane, result.left, large)
    _release_large(pool, large, result, settled)
    if not items:
        return
    try:
        _check_space(pool, items)
    except DltuiError:
        result.left += [(i.run, None) for i in items]  # JobRun fetches again and reports it
        return
    for item in [i for i in items if i.run.stop_reason is not None]:
        items.remove(item)
        item.run.stopped()  # paused, cancelled or shut down before anything was recorded
        settled.add(item.job_id)
    _finish(pool, items, result, settled)


def _without_stored(pool: WorkerPool, lane: list[JobRun], rest: list[JobRun]) -> list[JobRun]:
    """Jobs whose URL already has a stored object go to JobRun (decision ``cached``)."""
    digests = jobs.stored_digests(pool.ledger, (r.job.canonical_url for r in lane))
    stored = {url for url, shas in digests.items() if any(pool.store.has(s) for s in shas)}
    keep: list[JobRun] = []
    for run in lane:
        (rest if run.job.canonical_url in stored else keep).append(run)
    return keep


def _release_large(pool: WorkerPool, large: list[tuple[JobRun, int]], result: LaneResult,
                   settled: set[int]) -> None:
    """Keep the first large job (this worker streams it next) and give the others back to the
    queue at once, with their length, so other workers start them instead of waiting here."""
    if not large:
        return
    first, *others = large
    result.left.append((first[0], None))
    if not others:
        return
    released = leases.hand_back_large(pool.ledger,
                                      [(r.job.id, r.owner, n) for r, n in others])
    for run, _ in others:
        if run.job.id in released:
            run.released = True
            result.released.append(run)
            settled.add(run.job.id)
        else:
            result.left.append((run, None))


#: Bodies one lane fetches at once: against a distant server each request is a round trip, and
#: a batch fetched one by one would wait out 32 of them in a row.
LANE_FETCHES = 16


def _get(pool: WorkerPool, run: JobRun) -> small.SmallBody | small.TooLarge | DltuiError | None:
    """One lane job's GET: the body, TooLarge, the error of the request, or None (JobRun's)."""
    if run.stop_reason is not None:
        return None
    if run.flags.circuit_breaker:
        try:
            pool.breaker.before_request(run.host)
        except CircuitOpenError:
            return None  # JobRun asks the breaker again and re-queues it
    limits = pool.limits if run.flags.rate_limit and pool.limits.limited(run.host) else None
    guard = SpeedGuard(StreamOptions(min_speed=pool.settings.min_speed,
                                     min_speed_time=pool.settings.min_speed_time),
                       run.job.url, limits.bandwidth_for(run.host) if limits else None)

    def charge(n: int) -> None:
        if limits is not None:
            limits.bandwidth(run.host, n, run.cancel, run.control)

    try:
        with watching(run.cancel, run.control):  # a stop cuts any socket wait
            return small.fetch_small(pool.client, run.job.url, _FRESH,
                                     max_bytes=pool.settings.batch_max_size, guard=guard,
                                     charge=charge, request=run.job.request_options)
    except DltuiError as exc:
        return exc


def _fetch(pool: WorkerPool, lane: list[JobRun],
           left: list[tuple[JobRun, DltuiError | None]],
           large: list[tuple[JobRun, int]]) -> list[_Item]:
    items = []
    with ThreadPoolExecutor(min(LANE_FETCHES, len(lane)),
                            thread_name_prefix="dltui-lane") as fetches:
        outcomes = list(fetches.map(lambda run: _get(pool, run), lane))
    for run, body in zip(lane, outcomes, strict=True):
        if isinstance(body, DltuiError):
            left.append((run, body))
            continue
        if isinstance(body, small.TooLarge):
            pool.breaker.answered(run.host)
            large.append((run, body.length))
            continue
        if body is None or run.job.expected_sha256 not in (None, body.result.sha256):
            left.append((run, None))
            continue
        pool.breaker.success(run.host, run.job.url)
        job = run.job
        name = job.requested_name or finalize.resolve_name(
            None, body.result.disposition_name, body.result.url or job.url)
        items.append(_Item(run, body, name))
    return items


def _check_space(pool: WorkerPool, items: list[_Item]) -> None:
    dirs = [paths.parts_dir(pool.ledger.home), *{i.dest_dir for i in items}]
    quota.check_free_space(dirs, sum(len(i.body.data) for i in items), pool.settings,
                           paths.reserve_path(pool.ledger.home), pool.ledger.home)


def _finish(pool: WorkerPool, items: list[_Item], result: LaneResult,
            settled: set[int]) -> None:
    if not items:
        return
    ledger, owner = pool.ledger, items[0].run.owner
    sync = items[0].run.sync_finished
    boot = durability.boot_id()
    rows = [(i.job_id, {"file_name": i.name, "error": None, "decision": _FRESH.mode.value,
                        "decision_reason": _FRESH.reason}) for i in items]
    # The lane's effects are those of JobRun's first try: a job handed back replays them.
    stream_keys = [ops.stream_key(i.job_id, i.run.job.attempts, ops.FIRST_TRY) for i in items]
    with ledger.write(shared=True) as conn:
        batched.advance_many_in(conn, [JobState.LEASED, JobState.PRECHECKED], rows, owner=owner)
        events.append_many(conn, (
            ("decision", i.job_id, {"mode": _FRESH.mode.value, "reason": _FRESH.reason,
                                    "offset": 0, "detail": _FRESH.describe()}) for i in items))
        batched.advance_many_in(conn, [JobState.PRECHECKED, JobState.STREAMING],
                             [(i.job_id, {}) for i in items], owner=owner)
        ops.start_many_in(conn, [ops.OpStart(k, i.job_id, ops.OpKind.STREAM, i.run.job.attempts, {})
                                 for k, i in zip(stream_keys, items, strict=True)])

    parts_dir = paths.parts_dir(ledger.home)
    parts_dir.mkdir(parents=True, exist_ok=True)
    for item in items:
        item.written = small.write_part(item.run.part, item.body.data, fsync=sync)
        size = item.body.result.size
        item.run.progress(size, size)
        item.sha = item.body.result.sha256

    with ledger.write(shared=True) as conn:
        # A cancel that reached the ledger before FINALIZING wins (see JobRun._streamed).
        cancelled = jobs.with_control_in(conn, [i.job_id for i in items], Control.CANCEL)
        keep = [(k, i) for k, i in zip(stream_keys, items, strict=True)
                if i.job_id not in cancelled]
        stopped = [i for i in items if i.job_id in cancelled]
        stream_keys, items = [k for k, _ in keep], [i for _, i in keep]
        finalize_keys = [ops.finalize_key(i.job_id, i.sha) for i in items]
        if items:
            ops.finish_many_in(conn, [(k, as_record(i.body.result))
                                      for k, i in zip(stream_keys, items, strict=True)])
            batched.advance_many_in(conn, [JobState.STREAMING, JobState.FINALIZING],
                                 [(i.job_id, _complete(i, sync, boot)) for i in items],
                                 owner=owner)
            ops.start_many_in(conn, [ops.OpStart(k, i.job_id, ops.OpKind.FINALIZE,
                                                 i.run.job.attempts, {"sha256": i.sha})
                                     for k, i in zip(finalize_keys, items, strict=True)])
    for item in stopped:
        item.run.request_stop("cancel")
        item.run.stopped()
        settled.add(item.job_id)
    if not items:
        return

    recorded = objects.get_many(ledger, (i.sha for i in items))
    promoted = [finalize.promote(pool.store, i.run.part, i.sha, fsync=sync,
                                 keep=recorded.get(i.sha), expect=i.written) for i in items]
    link_keys = [ops.link_key(i.job_id, i.sha, i.dest_dir) for i in items]
    with ledger.write(shared=True) as conn:
        ops.finish_many_in(conn, [(k, as_record(p))
                                  for k, p in zip(finalize_keys, promoted, strict=True)])
        objects.record_in(conn, [(i.sha, p.identity) for i, p in zip(items, promoted, strict=True)
                                 if p.identity is not None])
        ops.start_many_in(conn, [
            ops.OpStart(k, i.job_id, ops.OpKind.LINK, i.run.job.attempts,
                        {"sha256": i.sha, "dest": str(i.dest_dir / i.name)})
            for k, i in zip(link_keys, items, strict=True)])

    for item in items:
        item.placed = finalize.link(pool.store, item.sha, item.dest_dir, item.name, fsync=sync,
                                    mode=pool.settings.link_mode)
    with ledger.write(shared=True) as conn:
        placed = [i.placed for i in items if i.placed is not None]
        ops.finish_many_in(conn, [(k, as_record(p))
                                  for k, p in zip(link_keys, placed, strict=True)])
        objects.record_in(conn, [(i.sha, p.identity) for i, p in zip(items, placed, strict=True)
                                 if p.identity is not None])
        batched.advance_many_in(
            conn, [JobState.FINALIZING, JobState.FINALIZED],
            [(i.job_id, {"final_path": p.dest, "sha256": i.sha, "error": None,
                         "bytes_committed": i.body.result.size, "boot_id": boot,
                         "bytes_durable": i.body.result.size if sync else 0,
                         **jobs.CLEAR_LEASE,
                         **jobs.dest_fields(p.dest_identity, adopted=p.adopted)})
             for i, p in zip(items, placed, strict=True)],
            owner=owner, reason="finished",
            last_data=[{"dest": p.dest, "how": p.how} for p in placed],
        )
    for item in items:
        settled.add(item.job_id)
        result.finished.append(item.run)
        result.digests.add(item.sha)


def _complete(item: _Item, sync: bool, boot: str | None) -> dict[str, Any]:
    """The complete checkpoint JobRun records with STREAM done, and the FINALIZING digest."""
    r = item.body.result
    v = r.validators
    return {"bytes_committed": r.size, "prefix_hash": r.prefix_hash,
            "bytes_durable": r.size if sync else 0, "boot_id": boot, "etag": v.etag,
            "last_modified": v.last_modified, "content_length": v.length,
            "accept_ranges": None if v.accept_ranges is None else int(v.accept_ranges),
            "bytes_total": v.length, "sha256": r.sha256}
