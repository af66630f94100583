"""What the TUI shows, computed from ledger rows: no widgets here, so it is cheap to test.

Rates come from ``bytes_committed`` between polls, smoothed (:mod:`dltui.rates`), so they are
right for workers in any process, not only the TUI's own.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dltui.disk import DiskUse
from dltui.ledger.flags import FlagState
from dltui.ledger.fleet import Process
from dltui.ledger.hosts import GLOBAL, HostLimitRow, HostStatus
from dltui.ledger.liveness import lease_is_live
from dltui.model import ACTIVE_STATES, Job, JobState
from dltui.rates import SmoothedRate

RATE_WINDOW = 5.0  # seconds without a sample after which a finished job's rate is dropped
HISTORY = 120  # samples kept for sparklines (one per poll)


@dataclass(frozen=True, slots=True)
class SideTables:
    """The small tables the TUI shows beside the jobs, as the last poll read them: screens
    draw from this, never from SQLite on the UI thread."""

    flags: tuple[FlagState, ...] = ()
    limits: Mapping[str, HostLimitRow] = field(default_factory=dict)
    statuses: Mapping[str, HostStatus] = field(default_factory=dict)
    #: The fleet's worker processes and their heartbeats.
    processes: tuple[Process, ...] = ()
    #: Free space of the home's filesystem and of each one active jobs write to, with
    #: what dltui holds there (read every few seconds, not every poll).
    disks: tuple[DiskUse, ...] = ()

    @property
    def tightest(self) -> DiskUse | None:
        """The filesystem with the least free space (the one to watch), if any is known."""
        return min(self.disks, key=lambda d: d.free, default=None)

    @property
    def global_bandwidth(self) -> int | None:
        """The stored global bandwidth limit (0 = none), or None when the setting applies."""
        row = self.limits.get(GLOBAL)
        return None if row is None else row.bandwidth


class Tab(enum.StrEnum):
    """The job table's filters."""

    ALL = "All"
    ACTIVE = "Active"
    QUEUED = "Queued"
    DONE = "Done"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


#: Failed and cancelled jobs have tabs of their own, so that "Failed N" counts what `run`
#: and `status` call failed.
TAB_STATES: dict[Tab, frozenset[JobState] | None] = {
    Tab.ALL: None,
    Tab.ACTIVE: frozenset(ACTIVE_STATES),
    Tab.QUEUED: frozenset({JobState.PLANNED, JobState.PAUSED}),
    Tab.DONE: frozenset({JobState.FINALIZED}),
    Tab.FAILED: frozenset({JobState.FAILED}),
    Tab.CANCELLED: frozenset({JobState.CANCELLED}),
}


class SortKey(enum.StrEnum):
    """Orders the `s` key cycles through."""

    ID = "id"
    NAME = "name"
    STATE = "state"
    PROGRESS = "progress"
    SIZE = "size"
    RATE = "rate"


@dataclass
class _Samples:
    rate: SmoothedRate = field(default_factory=SmoothedRate)
    last: float = 0.0

    def add(self, t: float, value: int) -> None:
        self.rate.add(t, value)
        self.last = t


class JobBook:
    """Every job the TUI knows, their rates, and the visible order under a tab/filter/sort."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.jobs: dict[int, Job] = {}
        self._samples: dict[int, _Samples] = {}
        self._job_history: dict[int, deque[float]] = {}
        self.total_history: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)
        self.tab = Tab.ALL
        self.text = ""
        self.sort = SortKey.ID
        self.reverse = False
        self._order: list[int] | None = None
        # Kept up to date by apply(), so polls cost O(changed rows), not O(all jobs).
        self._counts: dict[JobState, int] = dict.fromkeys(JobState, 0)
        self._active: set[int] = set()
        #: Active jobs no live worker holds (lease over, or its process gone), with the time of
        #: their last heartbeat; refreshed at each tick.
        self.stale: dict[int, float] = {}

    # -- updates ----------------------------------------------------------------------------
    def apply(self, changed: Iterable[Job], now: float | None = None) -> set[int]:
        """Fold in changed rows from a poll; returns the ids whose row changed."""
        t = self.clock() if now is None else now
        ids: set[int] = set()
        reorder = False
        for job in changed:
            old = self.jobs.get(job.id)
            self.jobs[job.id] = job
            if old is not None:
                self._counts[old.state] -= 1
            self._counts[job.state] += 1
            if job.state in ACTIVE_STATES:
                self._active.add(job.id)
            else:
                self._active.discard(job.id)
            ids.add(job.id)
            if old is None or old.state != job.state or self.sort is not SortKey.ID:
                reorder = True
            if job.state in ACTIVE_STATES:
                self._samples.setdefault(job.id, _Samples()).add(t, job.bytes_committed)
        if reorder:
            self._order = None
        return ids

    def forget(self, ids: Iterable[int]) -> bool:
        """Drop jobs whose rows were removed; True when any was known."""
        gone = False
        for job_id in ids:
            job = self.jobs.pop(job_id, None)
            if job is None:
                continue
            gone = True
            self._counts[job.state] -= 1
            self._active.discard(job_id)
            self._samples.pop(job_id, None)
            self._job_history.pop(job_id, None)
        if gone:
            self._order = None
        return gone

    def tick(self, now: float | None = None) -> None:
        """Record one point of throughput history (call once per poll)."""
        t = self.clock() if now is None else now
        total = 0.0
        for job_id, samples in list(self._samples.items()):
            job = self.jobs.get(job_id)
            if job is None or job.state not in ACTIVE_STATES:
                if t - samples.last > RATE_WINDOW:
                    del self._samples[job_id]
                continue
            samples.add(t, job.bytes_committed)
            r = samples.rate.rate
            total += r
            self._job_history.setdefault(job_id, deque([0.0] * 60, maxlen=60)).append(r)
        self.total_history.append(total)
        dead: dict[str, bool] = {}
        self.stale = {
            i: self.jobs[i].heartbeat_at or self.jobs[i].updated_at for i in self._active
            if not lease_is_live(self.jobs[i].lease_owner, self.jobs[i].lease_until, t, dead)}

    # -- reads ------------------------------------------------------------------------------
    def rate(self, job_id: int) -> float:
        """Bytes per second of one job over the last few seconds."""
        job = self.jobs.get(job_id)
        samples = self._samples.get(job_id)
        if job is None or samples is None or job.state not in ACTIVE_STATES:
            return 0.0
        return samples.rate.rate

    def eta(self, job_id: int) -> float | None:
        """Seconds left at the current rate, or None."""
        job = self.jobs[job_id]
        rate = self.rate(job_id)
        if not job.bytes_total or rate <= 0:
            return None
        return max(0.0, (job.bytes_total - job.bytes_committed) / rate)

    def job_history(self, job_id: int) -> list[float]:
        """The job's recent rates, for its sparkline."""
        return list(self._job_history.get(job_id, [0.0] * 60))

    def rates_active(self) -> bool:
        """True while any job has recent throughput samples (its rate or ETA may change)."""
        return bool(self._samples)

    @property
    def total_rate(self) -> float:
        """Bytes per second over every active job."""
        return self.total_history[-1] if self.total_history else 0.0

    def counts(self) -> dict[JobState, int]:
        """Jobs per state."""
        return dict(self._counts)

    def tab_count(self, tab: Tab) -> int:
        """Jobs a tab shows, ignoring the text filter."""
        states = TAB_STATES[tab]
        if states is None:
            return len(self.jobs)
        return sum(self._counts[s] for s in states)

    def live_owners(self) -> set[str]:
        """Owners (host:pid:start:thread) holding a live lease right now."""
        now = self.clock()
        dead: dict[str, bool] = {}
        active = (self.jobs[i] for i in self._active)
        return {j.lease_owner for j in active
                if j.lease_owner and lease_is_live(j.lease_owner, j.lease_until, now, dead)}

    # -- the visible order ------------------------------------------------------------------
    def set_view(self, *, tab: Tab | None = None, text: str | None = None,
                 sort: SortKey | None = None, reverse: bool | None = None) -> None:
        """Change what is shown; the order is recomputed lazily."""
        if tab is not None:
            self.tab = tab
        if text is not None:
            self.text = text.strip().lower()
        if sort is not None:
            self.sort = sort
        if reverse is not None:
            self.reverse = reverse
        self._order = None

    def _key(self) -> Callable[[Job], Any]:  # each key is a tuple (or int) of comparables
        if self.sort is SortKey.NAME:
            return lambda j: (j.display_name.lower(), j.id)
        if self.sort is SortKey.STATE:
            return lambda j: (j.state.value, j.id)
        if self.sort is SortKey.PROGRESS:
            return lambda j: (j.bytes_committed / j.bytes_total if j.bytes_total else 0.0, j.id)
        if self.sort is SortKey.SIZE:
            return lambda j: (j.bytes_total or 0, j.id)
        if self.sort is SortKey.RATE:
            return lambda j: (self.rate(j.id), j.id)
        return lambda j: j.id

    def order(self) -> list[int]:
        """Visible job ids, in display order."""
        if self._order is None:
            states = TAB_STATES[self.tab]
            text = self.text
            rows = [
                j for j in self.jobs.values()
                if (states is None or j.state in states)
                and (not text or text in j.display_name.lower() or text in j.url.lower()
                     or text == str(j.id))
            ]
            rows.sort(key=self._key(), reverse=self.reverse)
            self._order = [j.id for j in rows]
        return self._order
