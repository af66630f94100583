"""The worker pool: N worker threads and a keeper, sharing one client, limits and breakers."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import traceback
from collections.abc import Collection
from typing import cast

from dltui import paths
from dltui.config import Settings
from dltui.engine import policy
from dltui.engine.client import make_client
from dltui.errors import DltuiError, LeaseLost, LedgerError
from dltui.ledger import (
    Ledger,
    db_error,
    events,
    flags,
    fleet,
    hosts,
    is_connection_lost,
    is_disk_full,
    jobs,
    leases,
    objects,
    storegc,
)
from dltui.ledger.liveness import hostname
from dltui.store import Store
from dltui.worker import lane
from dltui.worker.base import PoolStats
from dltui.worker.run import JobRun


class WorkerPool:
    """N worker threads plus a keeper, all sharing one httpx client, limits and breakers."""

    def __init__(self, ledger: Ledger, settings: Settings, *, workers: int | None = None,
                 only: Collection[int] | None = None) -> None:
        self.ledger = ledger
        self.settings = settings
        #: Lease nothing but these jobs (``dltui get``); None: any queued job.
        self.only = None if only is None else frozenset(only)
        self.size = workers if workers is not None else settings.workers
        self.store = Store(paths.store_dir(ledger.home))
        # Each worker may hold a connection per segment (or per lane fetch) plus a spare.
        per_job = max(settings.connections_per_file, lane.LANE_FETCHES, 1) + 1
        self.client = make_client(settings, connections=max(self.size, 1) * per_job)
        self.limits = policy.RateLimits(settings)
        self.breaker = policy.CircuitBreaker(settings.breaker_threshold,
                                             settings.breaker_cooldown,
                                             window=settings.breaker_window)
        self.flags = flags.current(ledger)
        self.stats = PoolStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._active: dict[int, JobRun] = {}
        self._threads: list[threading.Thread] = []
        self._keeper: threading.Thread | None = None
        self._wake = threading.Event()
        self._settled = threading.Event()  # a job ended or a worker found nothing to do
        self._retry_after: dict[str, tuple[float, str]] = {}
        #: Why the pool stopped by itself: the ledger became unusable (damaged, deleted,
        #: replaced, full). The front end reports it and exits.
        self.fatal: LedgerError | None = None
        self._last_flags = 0.0
        self._last_beat = -1e9
        #: This process in the fleet's ``processes`` table: its leases' owner without a thread.
        self.process = leases.owner_id("").rstrip(":")
        self._published: dict[str, tuple[object, ...]] = {}
        #: Hosts whose HEAD was refused (403/405) while a GET worked: no HEAD there again.
        self._no_head: set[str] = set()
        #: Digests of jobs that finished since the keeper last collected the store.
        self._finished_digests: set[str] = set()
        self._collected_at = -1e9

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads and the keeper."""
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep, name="dltui-keeper", daemon=True)
        self._keeper.start()
        for i in range(self.size):
            t = threading.Thread(target=self._loop, name=f"dltui-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop: active downloads checkpoint and go back to the queue; then join the threads."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            for run in self._active.values():
                run.request_stop("shutdown")
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self._keeper is not None:
            self._keeper.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        self.client.close()
        if self.fatal is None:
            with contextlib.suppress(DltuiError, sqlite3.Error, OSError):
                self._collect(final=True)  # a short `get` leaves nothing behind either
        if self._last_beat > 0 and self.fatal is None:  # leave the fleet's list, if on it
            with contextlib.suppress(DltuiError, sqlite3.Error):
                fleet.leave(self.ledger, self.process)

    def trusted(self, sha256: str, *, rehash: bool = False, job_id: int | None = None) -> bool:
        """True when the stored object may be reused (see :func:`objects.verify`)."""
        return objects.verify(self.ledger, self.store, sha256, rehash=rehash, job_id=job_id)

    def skips_head(self, host: str) -> bool:
        """True when this host refused a HEAD whose GET then worked."""
        return host in self._no_head

    def head_refused(self, host: str) -> None:
        """Send no more HEADs to ``host`` (set operations are atomic under the GIL)."""
        self._no_head.add(host)

    def note_retry_after(self, host: str, until: float, error: str) -> None:
        """A server asked us to wait; shown as a countdown on the hosts screen."""
        with self._lock:
            self._retry_after[host] = (until, error)

    def _sync_hosts(self) -> None:
        """Apply the ledger's limits to running downloads; publish what we know of hosts."""
        stored = hosts.limits(self.ledger)
        glob = stored.get(hosts.GLOBAL)
        self.limits.configure(
            global_bandwidth=glob.bandwidth if glob is not None and glob.bandwidth is not None
            else self.settings.max_bandwidth,
            hosts={h: policy.HostLimit(r.requests_per_second, r.bandwidth)
                   for h, r in stored.items() if h != hosts.GLOBAL},
        )
        now = time.time()
        with self._lock:
            retry = dict(self._retry_after)
        report = []
        for b in self.breaker.snapshot():
            until, error = retry.pop(b.host, (None, None))
            report.append(hosts.HostStatus(b.host, b.state, b.failures, b.open_until, until,
                                           b.last_error or error, now, b.cause))
        report.extend(hosts.HostStatus(h, "closed", 0, None, until, error, now)
                      for h, (until, error) in retry.items())

        def key(s: hosts.HostStatus) -> tuple[object, ...]:
            return (s.breaker, s.failures, s.open_until, s.retry_after_until, s.last_error,
                    s.cause)

        fresh = [s for s in report if self._published.get(s.host) != key(s)]
        hosts.publish(self.ledger, fresh)
        for s in fresh:
            self._published[s.host] = key(s)

    def active(self) -> list[JobRun]:
        """The jobs being worked on now."""
        with self._lock:
            return list(self._active.values())

    def idle(self) -> bool:
        """True when no job this host may run is queued and none is active anywhere.

        An active job counts as work even when its holder is dead: this pool takes it over
        (at once for a dead process on this host, after the TTL for another host's), so
        ``run --until-idle`` never ends while a dead runner's jobs wait.
        """
        queued, running = jobs.pending_work(self.ledger, hostname())
        return queued == 0 and running == 0

    def run_until_idle(self, poll: float = 0.2) -> None:
        """Work until :meth:`idle`, then stop."""
        self.start()
        try:
            # Woken as soon as a job ends, so a short run does not idle out its poll interval.
            while not self._stop.is_set():
                self._settled.wait(poll)
                self._settled.clear()
                if not self.active() and self.idle():
                    break
        finally:
            self.stop()
        if self.fatal is not None:
            raise self.fatal

    # -- threads ----------------------------------------------------------------------------
    def _loop(self) -> None:
        owner = leases.owner_id()
        while not self._stop.is_set():
            try:
                leased = leases.lease_batch(self.ledger, owner, self.settings.lease_ttl,
                                            self._batch_limit(),
                                            small_max=self.settings.batch_max_size,
                                            only=self.only,
                                            affinity_grace=self.settings.affinity_grace)
            except (sqlite3.Error, LedgerError) as exc:
                if is_connection_lost(exc):
                    self._stop.wait(0.1)  # rolled back: lease again (a gone server stops us)
                    continue
                self._ledger_failed(exc)
                return
            except DltuiError:
                leased = []
            if not leased:
                self._settled.set()
                self._wake.wait(0.25)
                self._wake.clear()
                continue
            runs = [JobRun(self, job, owner) for job in leased]
            with self._lock:
                self._active.update((run.job.id, run) for run in runs)
            try:
                todo: list[tuple[JobRun, DltuiError | None]] = [(run, None) for run in runs]
                if len(runs) > 1:
                    carried = lane.carry(self, runs)
                    with self._lock:
                        self._finished_digests.update(carried.digests)
                    for run in carried.finished:
                        run.finished_in_lane()
                        self._done(run)
                    todo = carried.left
                    if carried.stale:
                        for run, _ in todo:
                            run.reload()
                for run, handed in todo:
                    self._carry(run, handed)
                    self._done(run)
            except (sqlite3.Error, LedgerError) as exc:
                if is_connection_lost(exc):
                    self._interrupted(runs)
                    if not self._stop.is_set():
                        continue
                    return
                self._ledger_failed(exc)
                return
            finally:
                for run in runs:
                    self._done(run)

    def _carry(self, run: JobRun, handed: DltuiError | None = None) -> None:
        """Run one job; a worker thread survives anything but an unusable ledger."""
        try:
            run.run(handed)
        except (sqlite3.Error, LedgerError):
            raise
        except Exception as exc:  # JobRun settles its own failures; this is a bug in that
            with contextlib.suppress(Exception):
                run.fail(exc, prefix="internal error: ")

    def _interrupted(self, runs: list[JobRun]) -> None:
        """The server dropped a transaction of these runs mid-way (a restart, a failover): it
        was rolled back, so the ledger holds what the last commit said. Their leases go back
        at once (a run that gave its own back is skipped), and the jobs resume from their
        checkpoints like after a crash; the thread leases again. Should the server stay gone,
        that release or the next lease says so and the pool stops."""
        for run in runs:
            if run.released:
                continue
            try:
                leases.release(self.ledger, run.job.id, run.owner)
            except (sqlite3.Error, LedgerError) as exc:
                if not is_connection_lost(exc):
                    self._ledger_failed(exc)
                    return
            run.released = True

    def _ledger_failed(self, exc: Exception) -> None:
        """The ledger cannot be read or written: stop everything, keep the reason to report."""
        if self.fatal is None:
            self.fatal = exc if isinstance(exc, LedgerError) else \
                db_error(self.ledger.path, cast(sqlite3.Error, exc))
        self._stop.set()
        self._wake.set()
        with self._lock:
            for run in self._active.values():
                run.request_stop("shutdown")

    def _batch_limit(self) -> int:
        """How many jobs to lease at once: a fair share of the queue, up to ``batch_jobs``."""
        if not self.flags.batch or self.settings.batch_jobs <= 1:
            return 1
        try:
            queued, _ = jobs.pending_work(self.ledger)
        except DltuiError:
            return 1
        return max(1, min(self.settings.batch_jobs, queued // max(self.size, 1)))

    def _done(self, run: JobRun) -> None:
        with self._lock:
            if self._active.pop(run.job.id, None) is not None and run.job.sha256:
                self._finished_digests.add(run.job.sha256)
        self._settled.set()

    #: With a budget the whole store is weighed, at most this often (seconds).
    FULL_COLLECT_EVERY = 10.0

    def _collect(self, *, final: bool = False) -> None:
        """Give back the store's bytes that nothing keeps (see ``ledger.storegc``): at the
        pool's first heartbeat the whole store, then the objects of jobs that finished."""
        with self._lock:
            digests, self._finished_digests = self._finished_digests, set()
        budget = self.settings.store_size
        now = time.monotonic()
        first = self._collected_at < 0
        if not first and not digests:
            return
        every = self.FULL_COLLECT_EVERY if budget > 0 else 1.0
        if not first and not final and now - self._collected_at < every:
            with self._lock:
                self._finished_digests |= digests  # weighed at the next full collection
            return
        self._collected_at = now
        storegc.collect(self.ledger, self.store, budget=budget,
                        only=None if first else digests, by="worker")

    def _keep(self) -> None:
        while not self._stop.wait(self.settings.control_poll):
            try:
                self._keep_once()
            except (sqlite3.Error, LedgerError) as exc:
                if isinstance(exc, sqlite3.Error) and is_disk_full(exc):
                    # The disk filled under a heartbeat: this beat is skipped (a lease lasts
                    # its TTL), and the ledger's ballast stays for the jobs to record their
                    # failures. Spent on heartbeats, it left a lane's failures no room and
                    # stopped the pool on a full ledger.
                    continue
                if is_connection_lost(exc):
                    continue  # a heartbeat cut off by a server restart: the next one goes on
                self._ledger_failed(exc)
                return
            except Exception as exc:  # a bug: heartbeats must go on, so record it and continue
                with contextlib.suppress(Exception):
                    events.record(self.ledger, "internal_error", None, error=repr(exc),
                                  traceback=traceback.format_exc(), where="keeper")

    def _keep_once(self) -> None:
        ttl = self.settings.lease_ttl
        now = time.monotonic()
        if now - self._last_flags >= 1.0:
            self._last_flags = now
            self.ledger.check_file()  # deleted or replaced under us: stop, write nothing
            try:
                self.flags = flags.current(self.ledger)
                self.limits.enabled = self.flags.rate_limit
                self.breaker.enabled = self.flags.circuit_breaker
                self._sync_hosts()
            except LedgerError:
                raise
            except DltuiError:
                pass  # e.g. a host limit that cannot apply: keep the last good ones
        if now - self._last_beat >= ttl / 3:
            self._last_beat = now
            try:
                fleet.beat(self.ledger, self.process, hostname(), self.size)
            except sqlite3.Error as exc:
                # Only shown to the fleet: on a full disk, the jobs' own records come first.
                if not is_disk_full(exc):
                    raise
        try:
            self._collect()
        except OSError as exc:  # a store that cannot be read or changed: said once a pass
            events.record(self.ledger, "store_gc_failed", None, error=str(exc))
        runs = self.active()
        if not runs:
            return
        by_id = jobs.controls(self.ledger, [r.job.id for r in runs])
        for run in runs:
            control, owner = by_id.get(run.job.id, (None, None))
            if owner != run.owner:
                run.request_stop("lost")
                continue
            if control in ("pause", "cancel"):
                run.request_stop(control)
            if now - run.last_renew >= ttl / 3:
                try:
                    leases.renew(self.ledger, run.job.id, run.owner, ttl)
                    run.last_renew = now
                except LeaseLost:
                    run.request_stop("lost")
