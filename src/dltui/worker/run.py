"""One leased job carried through its ops: :class:`JobRun`.

It owns the job's lease while it runs: the stream hooks record checkpoints, each effect is an
exactly-once op, and every outcome ends in a ledger state.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import sqlite3
import time
import traceback
from pathlib import Path
from typing import Any

from dltui import paths
from dltui.engine import finalize, policy, quota, resume, stream, watching
from dltui.engine.precheck import Precheck, precheck
from dltui.engine.transfer import StreamOptions, StreamResult, as_record, from_record
from dltui.errors import (
    CircuitOpenError,
    DltuiError,
    DownloadError,
    HTTPStatusError,
    IntegrityError,
    Interrupted,
    LeaseLost,
    QuotaError,
    ResumeConflict,
    TransportError,
)
from dltui.ledger import is_disk_full, jobs, leases, ops, segments
from dltui.ledger.liveness import hostname
from dltui.model import Control, JobState, ServerValidators
from dltui.urls import is_presigned
from dltui.worker.finishing import Finishing
from dltui.worker.hooks import StreamHooks
from dltui.worker.parts import PartInspection

#: Times one try starts over on a changed object before the change counts as a failed try.
MAX_RESTARTS = 3
#: HEAD answers that say the server takes no HEAD here (a presigned URL's 403, a 405).
HEAD_REFUSED = frozenset({403, 405})
#: ResumeConflict reasons that mean the object changed on the server (not a fault of it).
CONTENT_CHANGED = frozenset({"overlap_mismatch", "etag_changed", "validators_mismatch"})


class JobRun(StreamHooks, PartInspection, Finishing):
    """One leased job being worked on by one worker thread: the orchestration of its ops.

    Its parts: the state and writes to the job's row (``base.py``), stream hooks
    (``hooks.py``), part and store inspection (``parts.py``), the finishing steps
    (``finishing.py``).
    """

    # -- the pipeline -----------------------------------------------------------------------
    def run(self, handed: DltuiError | None = None) -> None:
        """Carry the job as far as it goes; every outcome ends in a ledger state.

        ``handed`` is the failure of a first try made elsewhere (the small-file lane): the
        first try here raises it, so retries, the breaker and failure reports treat it as
        their own.
        """
        self._handed_error = handed
        # self.job is re-read as the run writes; failures before this run are counted once.
        self._failed_before = self.job.failed_tries
        try:
            retrying = policy.retrying(
                self.pool.settings, enabled=self.flags.retries, cancel=self.cancel,
                control=self.control, before_sleep=self._on_retry,
                attempts=max(1, self._budget - self._failed_before),
            )
            with watching(self.cancel, self.control):  # a stop cuts any socket wait
                for attempt in retrying:
                    with attempt:
                        self._try_once()
        except Interrupted:
            self.stopped()
        except LeaseLost:
            pass  # another worker (or the reconciler) owns the job now; write nothing
        except CircuitOpenError as exc:
            # Waiting out its host's cool-down costs the job no try: only its own requests'
            # failures do, so it fails, when it does, with its own last error.
            self._requeue(str(exc), not_before=exc.until)
        except DownloadError as exc:
            self.fail(exc)
        except DltuiError as exc:
            self.fail(exc)
        except OSError as exc:  # the part, the store or a destination refused a write
            self.fail(self._os_error(exc))
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            # The ledger itself could not write: its filesystem is full.
            self.fail(self._os_error(
                OSError(errno.ENOSPC, "No space left on device", str(self.ledger.path))))
        except Exception as exc:  # a bug must not strand the job in an active state
            # Never a repr: a UnicodeEncodeError's holds the header value it could not encode.
            scrub = self.job.request_options.scrub
            self._event("internal_error", error=scrub(f"{type(exc).__name__}: {exc}"),
                        traceback=scrub(traceback.format_exc()))
            self.fail(exc, prefix="internal error: ")
        finally:
            if not self.released:
                leases.release(self.ledger, self.job.id, self.owner)

    def _os_error(self, exc: OSError) -> DltuiError:
        """A filesystem error worded with its path; a full disk keeps what was recorded."""
        where = Path(exc.filename) if exc.filename else self.part
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            if not self.segmented:
                # Bytes past the last checkpoint are not recorded: give their room back so
                # the ledger can record the failure on the same filesystem.
                with contextlib.suppress(OSError):
                    if self.part.stat().st_size > self.job.bytes_committed:
                        os.truncate(self.part, self.job.bytes_committed)
            remaining = None if self.total is None else self.total - self.bytes_now
            return quota.no_space(where.parent if where == self.part else where, remaining,
                                  self.ledger.home)
        return DltuiError(f"cannot write {where}: {exc.strerror or exc}")

    @property
    def _budget(self) -> int:
        """Tries a job gets in all, over every lease."""
        return self.pool.settings.retries if self.flags.retries else 1

    @property
    def _failed_total(self) -> int:
        return self._failed_before + self._failed

    def _on_retry(self, exc: BaseException, delay: float, attempt: int) -> None:
        tried = self._failed_total
        error = self.job.request_options.scrub(str(exc))
        self._event("retry", error=error, reason=getattr(exc, "reason", None),
                    attempt=tried, delay=round(delay, 3))
        if getattr(exc, "retry_after", None) is not None:
            self.pool.note_retry_after(self.host, time.time() + delay, error)
        with contextlib.suppress(LeaseLost):
            self._update(error=f"{error} (try {tried} of {self._budget}, retrying in "
                               f"{delay:.1f}s)", failed_tries=tried)

    def _try_once(self) -> None:
        if self.cancel.is_set():  # stopped before it started: not even a request
            raise Interrupted(self.control())
        self._tries += 1
        pool = self.pool
        handed, self._handed_error = self._handed_error, None
        if self.flags.circuit_breaker and handed is None:
            pool.breaker.before_request(self.host)  # refused: no request, no try spent
        try:
            if handed is not None:
                raise handed
            self._download_restarting()
        except (TransportError, HTTPStatusError) as exc:
            self._failed += 1
            blames_host = isinstance(exc, TransportError) or exc.status >= 500
            if blames_host and self.flags.circuit_breaker:
                pool.breaker.failure(self.host, self.job.url, exc)
            elif self.flags.circuit_breaker:
                pool.breaker.answered(self.host)
            raise
        except DownloadError as exc:
            self._failed += 1
            if not isinstance(exc, QuotaError):  # the host answered; this URL is at fault
                pool.breaker.answered(self.host)
            raise
        else:
            pool.breaker.success(self.host, self.job.url)

    def _download_restarting(self) -> None:
        """:meth:`_download`, started over when the server's answer shows the object
        changed (:data:`CONTENT_CHANGED`): that is no failed try, whatever the ``retries``
        flag says. A server whose object changes on every request still ends:
        past :data:`MAX_RESTARTS` the change counts as a failed try."""
        for restart in itertools.count(1):
            try:
                self._download()
                return
            except ResumeConflict as exc:
                if exc.reason not in CONTENT_CHANGED or restart > MAX_RESTARTS:
                    raise  # a server that lies about ranges: a failed try, retried
                self._event("content_changed", reason=exc.reason, detail=str(exc),
                            restart=restart)
                self._restart = exc.reason
                self._tries += 1  # a STREAM op of its own

    def _op(self, kind: ops.OpKind, key: str, fn: Any, on_done: Any = None,
            on_start: Any = None) -> Any:
        return ops.run_effect(self.ledger, key, fn, job_id=self.job.id, kind=kind,
                              owner=self.owner, attempt=self.job.attempts, on_done=on_done,
                              on_start=on_start)

    def _streamed(self, conn: Any, result: dict[str, Any]) -> None:
        """STREAM done: a complete part moves the job to FINALIZING in the same transaction."""
        if self._complete_cp is not None:
            fields, segs = self._complete_cp
            self._complete_cp = None
            self._record_checkpoint(conn, fields, segs)
        length = (result["validators"] or {}).get("length")
        expected = self.job.expected_sha256
        if (length is None or length == result["size"]) and \
                (expected is None or expected == result["sha256"]):
            if jobs.with_control_in(conn, [self.job.id], Control.CANCEL):
                # A cancel that reached the ledger before FINALIZING wins: nothing is placed.
                # (Once FINALIZING commits, `cancel` is refused: the job is finishing.)
                self.request_stop("cancel")
                raise Interrupted("cancel")
            fields = {"sha256": result["sha256"]}
            if not self.job.requested_name and not self._head_ok:  # then the GET names it
                fields["file_name"] = finalize.resolve_name(None, result["disposition_name"],
                                                            result["url"] or self.job.url)
            self.job = jobs.transition_in(conn, self.job.id, JobState.FINALIZING,
                                          owner=self.owner, fields=fields)
            self.state = JobState.FINALIZING
            if self.flags.dedupe:
                # FINALIZE is the next effect: mark it started in this transaction.
                key = ops.finalize_key(self.job.id, result["sha256"])
                ops.start_in(conn, key, job_id=self.job.id, kind=ops.OpKind.FINALIZE,
                             attempt=self.job.attempts, args={"sha256": result["sha256"]})
                self._prestarted.add(key)

    def _download(self) -> None:
        pool, job = self.pool, self.job
        url = job.url
        # Started over because the object changed: nothing on disk or in the store is of
        # the new version, and its GET tells all a HEAD would.
        restart, self._restart = self._restart, None
        # A HEAD that cannot pass costs a round trip per try: a URL signed for GET only, or a
        # host whose HEAD was refused while its GET worked. Without a HEAD nothing confirms a
        # stored object is the server's current one, so none is reused.
        no_head = restart is not None or is_presigned(url) or pool.skips_head(self.host)
        cached_sha, cached_validators = (None, None) if no_head else self._cached_object()
        if no_head or self._nothing_to_check(cached_sha):
            # Nothing on disk to resume and nothing stored to reuse: the GET's own headers tell
            # all a HEAD would, one round trip sooner.
            pre = Precheck(url=url, status=0, validators=ServerValidators(),
                           disposition_name=None, head_ok=False, note="skipped")
        else:
            pre = Precheck(**from_record(self._op(
                ops.OpKind.HEAD, ops.head_key(job.id, job.attempts, self._tries),
                lambda: as_record(precheck(pool.client, url, job.request_options)))))
        self._head_ok = pre.head_ok
        recorded = ServerValidators() if restart else job.validators
        server = pre.validators if pre.head_ok else recorded
        name = job.requested_name or finalize.resolve_name(None, pre.disposition_name, pre.url)
        fields: dict[str, Any] = {"file_name": name, "error": None}
        if pre.head_ok:
            fields.update(etag=server.etag, last_modified=server.last_modified,
                          content_length=server.length, bytes_total=server.length,
                          accept_ranges=None if server.accept_ranges is None
                          else int(server.accept_ranges))
        if not pre.head_ok and pre.note != "skipped":
            self._event("precheck_fallback", note=pre.note)

        me = hostname()
        fields["part_host"] = me  # the part this run writes is on this host's disk
        if restart:
            # The discard stays visible (decision, reason) until this download's own.
            part_state = None
            decision = resume.ResumeDecision(resume.Mode.DISCARD, 0, restart)
            fields.update(etag=None, last_modified=None, content_length=None,
                          bytes_total=None)
        elif self.ledger.pg and job.part_host not in (None, me) and job.bytes_committed:
            # The bytes so far are on another host's disk: none of them can be resumed here.
            self.segmented = bool(segments.for_job(self.ledger, job.id))
            part_state = None
            decision = resume.ResumeDecision(resume.Mode.DISCARD, 0,
                                             f"part_on_host:{job.part_host}")
        else:
            part_state = self._part_state(recorded)
            decision = resume.decide(
                server, part_state, resume_enabled=self.flags.resume,
                prefix_check_enabled=self.flags.verify_prefix, cached=cached_validators,
            )
        if decision.needs_prefix_check:
            self._advance(JobState.PRECHECKED, **fields)  # the probe is a request of its own
            theirs = stream.server_prefix_hash(pool.client, url, job.request_options)
            decision = resume.confirm_prefix(
                decision, None if theirs == stream.RANGES_IGNORED else
                theirs is not None and part_state is not None
                and theirs == part_state.prefix_hash)

        if decision.mode is resume.Mode.CACHED and cached_sha is not None:
            finalize.verify_checksum(pool.store.object_path(cached_sha), job.checksum)
            with self.ledger.write(shared=True) as conn:
                # The job's digest holds the object: the store's collector, which decides
                # under the ledger's write lock, keeps every object an unfinished job names.
                self._advance_in(conn, JobState.PRECHECKED, **fields, sha256=cached_sha)
                self._record_decision_in(conn, decision)
                if self.state is JobState.STREAMING:  # a retry found the object stored
                    self._advance_in(conn, JobState.FINALIZING, sha256=cached_sha)
            if pool.store.has(cached_sha):
                self._link_and_finish(cached_sha, name)
                return
            # Collected between the check and the hold: download it after all.
            if self.state is not JobState.PRECHECKED:
                raise TransportError("the stored copy was collected meanwhile; downloading "
                                     "it again")
            decision = resume.ResumeDecision(resume.Mode.FRESH, 0, "object_collected")
            fields["sha256"] = None
        if decision.mode is not resume.Mode.RESUME:
            self.part.unlink(missing_ok=True)
            if job.bytes_committed:
                fields.update(bytes_committed=0, prefix_hash=None)
        remaining = None if server.length is None else server.length - decision.offset
        try:
            quota.check_free_space([self.part.parent, Path(job.dest_dir)], remaining,
                                   pool.settings, paths.reserve_path(self.ledger.home),
                                   self.ledger.home)
        except QuotaError:
            self._advance(JobState.PRECHECKED, **fields)
            self._record_decision(decision)
            raise

        def starting(conn: Any) -> None:
            # PRECHECKED, the decision and STREAMING commit with the op's start: one transaction.
            self._advance_in(conn, JobState.PRECHECKED, **fields)
            self._record_decision_in(conn, decision)
            self._advance_in(conn, JobState.STREAMING)

        # Where the HEAD's redirects led, asked directly in this try (a signed redirect
        # target may expire, so a later try asks the job's URL again).
        fetch_url = pre.url if pre.head_ok and pre.url else url
        result = StreamResult(**from_record(self._op(
            ops.OpKind.STREAM, ops.stream_key(job.id, job.attempts, self._tries),
            lambda: as_record(self._fetched(fetch_url, decision, server)),
            on_done=self._streamed, on_start=starting)))
        if pre.status in HEAD_REFUSED:
            pool.head_refused(self.host)  # and the GET worked: no HEAD there from now on
        try:
            finalize.verify(result.size, result.sha256, expected_size=result.validators.length,
                            expected_sha256=job.expected_sha256)
        except IntegrityError:
            if job.expected_sha256 and result.sha256 != job.expected_sha256:
                # The origin serves other bytes than promised: keep nothing of them.
                self.part.unlink(missing_ok=True)
                self._update(bytes_committed=0, prefix_hash=None)
                raise
            self.part.unlink(missing_ok=True)
            self._update(bytes_committed=0, prefix_hash=None)
            raise TransportError(f"size check failed for {url}; downloading again") from None
        if not pre.head_ok and not job.requested_name:
            name = finalize.resolve_name(None, result.disposition_name, result.url)
            if name != self.job.file_name:
                self._update(file_name=name)
        if self.state is not JobState.FINALIZING:
            with self.ledger.write(shared=True) as conn:
                if jobs.with_control_in(conn, [self.job.id], Control.CANCEL):
                    self.request_stop("cancel")
                    raise Interrupted("cancel")
                self._advance_in(conn, JobState.FINALIZING, sha256=result.sha256)
        self._link_and_finish(result.sha256, name, result.part)

    def _fetched(self, url: str, decision: resume.ResumeDecision,
                 server: ServerValidators) -> StreamResult:
        """The STREAM effect: the download, then an expected md5/sha-1/sha-512 checked over
        the part before the op may complete (and the job reach FINALIZING)."""
        result = self._fetch(url, decision, server)
        try:
            finalize.verify_checksum(self.part, self.job.checksum)
        except IntegrityError:
            # The origin serves other bytes than promised: keep nothing of them.
            self.part.unlink(missing_ok=True)
            self._update(bytes_committed=0, prefix_hash=None)
            raise
        return result

    def _fetch(self, url: str, decision: resume.ResumeDecision,
               server: ServerValidators) -> StreamResult:
        s = self.pool.settings
        options = StreamOptions(
            fsync=self.flags.fsync, preallocate=self.flags.preallocate,
            preallocate_min=s.preallocate_min, checkpoint_bytes=s.checkpoint_bytes,
            checkpoint_interval=s.checkpoint_interval, fsync_interval=s.fsync_interval,
            fsync_finish=s.fsync_on_finish,
            connections=s.connections_per_file if self.flags.segmented else 1,
            min_segment=s.min_segment_size, split_below_rate=s.split_below_rate,
            min_speed=s.min_speed,
            min_speed_time=s.min_speed_time, request=self.job.request_options,
        )
        return stream.fetch(
            self.pool.client, url, self.part, decision, expected=server, options=options,
            hooks=self, cancel=self.cancel, control=self.control,
            limits=self.pool.limits if self.flags.rate_limit else None, host=self.host,
            segments=self.resume_segments if decision.mode is resume.Mode.RESUME else None,
            home=self.job.url,
        )

    # -- endings ----------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the job again: the small-file lane may have moved it on before it stopped."""
        with contextlib.suppress(DltuiError):
            fresh = jobs.find(self.ledger, self.job.id)
            if fresh is not None:
                self.job, self.state = fresh, fresh.state

    def finished_in_lane(self) -> None:
        """The small-file lane FINALIZED this job (its lease cleared in that transaction)."""
        self.state = JobState.FINALIZED
        self.released = True
        self.pool.stats.finished += 1

    def stopped(self) -> None:
        """End the job as its stop asked: paused, cancelled (part deleted) or re-queued."""
        reason = self.stop_reason or "pause"
        if reason == "cancel":
            self.part.unlink(missing_ok=True)
            self._end(JobState.CANCELLED, "operator", bytes_committed=0, prefix_hash=None)
        elif reason == "pause":
            self._end(JobState.PAUSED, "operator")
        elif reason == "shutdown":
            # Not the operator's pause: the job goes back to the queue and the next run resumes it.
            self._end(JobState.PLANNED, "worker shutdown")

    def _requeue(self, message: str, *, not_before: float) -> None:
        self._end(JobState.PLANNED, "circuit_open", error=message, not_before=not_before,
                  failed_tries=self._failed_total)

    def fail(self, exc: BaseException, prefix: str = "") -> None:
        """End the job FAILED with ``exc``'s message (its part kept if any byte counted).

        When the ledger's filesystem is full, the ledger's ballast file is given up so the
        failure can still be recorded (if even that fails, the pool stops and says why).
        """
        tried = self._failed_total
        tries = f" (after {tried} tries)" if tried > 1 else ""
        code = getattr(exc, "reason", "error")
        text = self.job.request_options.scrub(f"{prefix}{exc}{tries}")
        if self.job.bytes_committed == 0:
            self.part.unlink(missing_ok=True)  # nothing worth resuming: leave no empty part
        try:
            self._end(JobState.FAILED, code, error=text, failed_tries=tried)
        except sqlite3.OperationalError as full:
            if not is_disk_full(full) or not self.ledger.release_reserve():
                raise
            self._end(JobState.FAILED, code, error=text, failed_tries=tried)
        self.pool.stats.failed += 1
