"""A JobRun's state and its writes to the job's row, shared by the parts JobRun is made of.

JobRun (``run.py``) is one class made of four: this base (the lease, its fields and every write
to the job's row), the stream hooks (``hooks.py``), the part and store inspection
(``parts.py``) and the finishing steps (``finishing.py``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from dltui import paths
from dltui.engine import resume
from dltui.errors import DltuiError, IllegalTransition, LeaseLost
from dltui.ledger import Ledger, events, jobs
from dltui.model import Job, JobState, Segment
from dltui.rates import SmoothedRate

if TYPE_CHECKING:
    import httpx

    from dltui.config import Settings
    from dltui.engine.policy import CircuitBreaker, RateLimits
    from dltui.ledger.flags import Flags
    from dltui.store import Store


@dataclass
class PoolStats:
    """Counters a front end shows; updated by worker threads without locks (ints only)."""

    finished: int = 0
    failed: int = 0
    bytes: int = 0


class WorkerPool(Protocol):
    """What a run (and the small-file lane) uses of the pool that carries it: the pool imports
    the runs, never the reverse."""

    ledger: Ledger
    settings: Settings
    client: httpx.Client
    limits: RateLimits
    breaker: CircuitBreaker
    store: Store
    stats: PoolStats
    flags: Flags

    def trusted(self, sha256: str, *, rehash: bool = False, job_id: int | None = None
                ) -> bool: ...
    def skips_head(self, host: str) -> bool: ...
    def head_refused(self, host: str) -> None: ...
    def note_retry_after(self, host: str, until: float, error: str) -> None: ...


_ORDER = [JobState.LEASED, JobState.PRECHECKED, JobState.STREAMING, JobState.FINALIZING]


class RunBase:
    """One leased job's state while a worker thread carries it; writes only while leased."""

    def __init__(self, pool: WorkerPool, job: Job, owner: str) -> None:
        self.pool = pool
        self.job = job
        self.owner = owner
        self.cancel = threading.Event()
        self.stop_reason: str | None = None
        self.state = job.state
        self.bytes_now = job.bytes_committed
        self.meter = SmoothedRate()  # this run's rate, recorded with each checkpoint
        self.total: int | None = job.bytes_total
        self.last_renew = time.monotonic()
        self.part = paths.part_path(pool.ledger.home, job.id)
        self.flags = pool.flags  # frozen: the values this run started with
        self.host = urlsplit(job.canonical_url).hostname or ""
        self._tries = 0
        #: Why the next download starts over (a ResumeConflict's reason), or None.
        self._restart: str | None = None
        #: Tries of this run that failed (any DownloadError, a breaker's refusal included).
        self._failed = 0
        self._failed_before = job.failed_tries
        self.released = False  # a terminal transition already cleared the lease
        self._head_ok = False
        self.segmented = False  # the ledger holds segment rows for this job
        self._complete_cp: tuple[dict[str, Any], tuple[Segment, ...] | None] | None = None
        self._prestarted: set[str] = set()  # ops marked started with the step before them
        self.resume_segments: list[Segment] = []
        self._handed_error: DltuiError | None = None  # see run()

    def request_stop(self, reason: str) -> None:
        """Ask the download to stop at its next chunk: pause, cancel, shutdown or lost."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.cancel.set()

    def control(self) -> str:
        return self.stop_reason or "pause"

    @property
    def ledger(self) -> Ledger:
        return self.pool.ledger

    def _advance(self, to: JobState, **fields: Any) -> None:
        """Move forward through the active states (a retry never moves back)."""
        with self.ledger.write(shared=True) as conn:
            self._advance_in(conn, to, **fields)

    def _advance_in(self, conn: Any, to: JobState, **fields: Any) -> None:
        """:meth:`_advance` inside the caller's transaction."""
        if self.state in _ORDER and to in _ORDER and _ORDER.index(to) <= _ORDER.index(self.state):
            if fields:
                self._write_in(conn, fields)
            return
        self.job = jobs.transition_in(conn, self.job.id, to, owner=self.owner,
                                      fields=fields or None)
        self.state = to

    def _write_in(self, conn: Any, fields: dict[str, Any]) -> None:
        """Write job columns inside the caller's transaction, while this run holds the lease."""
        job = jobs.write_row(conn, self.job.id, fields, "AND lease_owner = ?", (self.owner,))
        if job is None:
            raise LeaseLost(self.job.id, self.owner)
        self.job = job

    def _update(self, **fields: Any) -> None:
        self.job = jobs.update(self.ledger, self.job.id, owner=self.owner, **fields)

    def _event(self, kind: str, **data: Any) -> None:
        events.record(self.ledger, kind, self.job.id, **data)

    @property
    def sync_finished(self) -> bool:
        """Finished files (and their directories) are fsynced before FINALIZED."""
        return self.flags.fsync and self.pool.settings.fsync_on_finish

    def _record_decision(self, decision: resume.ResumeDecision) -> None:
        with self.ledger.write(shared=True) as conn:
            self._record_decision_in(conn, decision)

    def _record_decision_in(self, conn: Any, decision: resume.ResumeDecision) -> None:
        self._write_in(conn, {"decision": decision.mode.value,
                              "decision_reason": decision.reason})
        events.append(conn, "decision", self.job.id, mode=decision.mode.value,
                      reason=decision.reason, offset=decision.offset,
                      detail=decision.describe())

    def _end(self, to: JobState, reason: str, **fields: Any) -> None:
        fields.update(jobs.CLEAR_LEASE)
        with contextlib.suppress(LeaseLost, IllegalTransition):
            jobs.transition(self.ledger, self.job.id, to, owner=self.owner, reason=reason,
                            fields=fields)
            self.released = True
