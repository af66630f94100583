"""Retries (tenacity), per-host request and bandwidth limits (pyrate-limiter), circuit breakers.

All three are shared by every worker thread of a process and can be reconfigured while they run.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import tenacity

from dltui.config import Settings
from dltui.errors import (
    CircuitOpenError,
    DownloadError,
    HTTPStatusError,
    Interrupted,
    TransportError,
)

if TYPE_CHECKING:  # pyrate-limiter loads only when a limit is set: it costs ~35 ms at start-up
    from pyrate_limiter import Limiter

_WAIT_SLICE = 0.1  # how long one limiter wait blocks before re-checking cancellation


# -- retries ---------------------------------------------------------------------------------
def backoff_delay(settings: Settings, attempt: int, retry_after: float | None) -> float:
    """Seconds before retry number ``attempt`` (1-based): Retry-After when the server gave one
    (capped at ``retry_after_max``), else exponential backoff with jitter."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), settings.retry_after_max)
    base = min(settings.backoff_max, settings.backoff_initial * (2.0 ** (attempt - 1)))
    return base * random.uniform(0.5, 1.0)


def retrying(
    settings: Settings,
    *,
    enabled: bool,
    cancel: threading.Event,
    control: Callable[[], str],
    before_sleep: Callable[[BaseException, float, int], None] | None = None,
    attempts: int | None = None,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for one download attempt.

    Retries DownloadErrors marked retryable, up to ``attempts`` tries (default
    ``settings.retries``; one when the ``retries`` flag is off). Sleeps on ``cancel`` so
    pause/cancel cut a backoff short.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return backoff_delay(settings, state.attempt_number, retry_after)

    def sleep(seconds: float) -> None:
        if cancel.wait(seconds):
            raise Interrupted(control())

    def log(state: tenacity.RetryCallState) -> None:
        if before_sleep is not None and state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                delay = state.next_action.sleep if state.next_action else 0.0
                before_sleep(exc, delay, state.attempt_number)

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(
            (settings.retries if attempts is None else attempts) if enabled else 1),
        retry=tenacity.retry_if_exception(
            lambda e: isinstance(e, DownloadError) and e.retryable
        ),
        wait=wait,
        sleep=sleep,
        before_sleep=log,
        reraise=True,
    )


# -- rate limits -----------------------------------------------------------------------------
#: Finest step a bandwidth meter keeps: with at most this many units a second, pyrate-limiter's
#: whole-microsecond emission interval (rounded up) is off by 1 % at most.
_METER_UNITS_PER_SECOND = 10_000
#: A meter lets through at most this fraction of a second of its rate at once.
_BURST_SECONDS = 0.1
#: Bounds for one read while bytes are metered (a tenth of a second of the rate, in between).
MIN_METERED_READ = 4 << 10
MAX_METERED_READ = 256 << 10


class _Meter:
    """A bandwidth budget of ``rate`` bytes/s over a pyrate-limiter GCRA bucket.

    pyrate-limiter keeps GCRA state in whole microseconds per unit, so metering single bytes
    would cap every limit at 1 MB/s (one unit per microsecond), and its blocking wait adds
    ``buffer_ms`` to every sleep. Bytes are therefore charged in units sized so that a second
    holds at most ``_METER_UNITS_PER_SECOND`` of them, the sleep buffer is zero, and the burst is
    a tenth of a second of the rate. Bytes short of a unit are carried to the next charge.
    """

    def __init__(self, rate: int) -> None:
        from pyrate_limiter import GCRA, Duration, Limiter, Rate, StateBucket

        self.rate = rate
        self.unit = max(1, -(-rate // _METER_UNITS_PER_SECOND))
        per_second = max(1, rate // self.unit)
        self.burst = max(1, int(per_second * _BURST_SECONDS))
        bucket = StateBucket([Rate(per_second, Duration.SECOND, burst=self.burst)],
                             algorithm=GCRA())
        self._limiter = Limiter(bucket, buffer_ms=0)
        self._lock = threading.Lock()
        self._carry = 0

    def charge(self, nbytes: int, cancel: threading.Event, control: Callable[[], str]) -> None:
        """Wait until ``nbytes`` more fit the rate; raise Interrupted when ``cancel`` is set."""
        with self._lock:
            total = self._carry + nbytes
            units, self._carry = divmod(total, self.unit)
        while units > 0:
            piece = min(units, self.burst)
            while not self._limiter.try_acquire("dltui", weight=piece, blocking=True,
                                                timeout=_WAIT_SLICE):
                if cancel.is_set():
                    raise Interrupted(control())
            units -= piece


def _request_limiter(per_second: float) -> Limiter:
    from pyrate_limiter import GCRA, Duration, Limiter, Rate, StateBucket

    # Express fractional rates (0.5/s) over a longer interval so the limit stays an integer.
    if per_second >= 1:
        rate = Rate(int(per_second), Duration.SECOND)
    else:
        rate = Rate(1, int(1000 / per_second))
    return Limiter(StateBucket([rate], algorithm=GCRA()), buffer_ms=0)


@dataclass(frozen=True, slots=True)
class HostLimit:
    """Limits for one host; 0 means no limit, None means use the default."""

    requests_per_second: float | None = None
    bandwidth: int | None = None


class RateLimits:
    """Requests/s per host and bytes/s globally and per host, changeable while in use."""

    def __init__(self, settings: Settings) -> None:
        self._lock = threading.Lock()
        self._default = HostLimit(settings.host_requests_per_second, settings.host_bandwidth)
        self._global_bw = settings.max_bandwidth
        self._overrides: dict[str, HostLimit] = {}
        self._req: dict[str, Limiter] = {}
        self._bw: dict[str, _Meter] = {}
        self._global: _Meter | None = None
        self.enabled = True
        self._rebuild_global()

    def _rebuild_global(self) -> None:
        self._global = _Meter(self._global_bw) if self._global_bw > 0 else None

    def configure(
        self,
        *,
        global_bandwidth: int | None = None,
        default: HostLimit | None = None,
        hosts: dict[str, HostLimit] | None = None,
    ) -> None:
        """Change limits; running downloads feel the change on their next chunk."""
        with self._lock:
            if global_bandwidth is not None and global_bandwidth != self._global_bw:
                self._global_bw = global_bandwidth
                self._rebuild_global()
            if default is not None and default != self._default:
                self._default = default
                self._req.clear()
                self._bw.clear()
            if hosts is not None and hosts != self._overrides:
                self._overrides = dict(hosts)
                self._req.clear()
                self._bw.clear()

    def limits_for(self, host: str) -> tuple[float, int]:
        """Effective (requests/s, bytes/s) for a host; 0 means unlimited."""
        override = self._overrides.get(host, HostLimit())
        rps = override.requests_per_second
        bw = override.bandwidth
        return (
            self._default.requests_per_second or 0.0 if rps is None else rps,
            self._default.bandwidth or 0 if bw is None else bw,
        )

    def limited(self, host: str) -> bool:
        """True when requests to ``host`` are paced or its bytes are metered."""
        return self.enabled and (self._global_bw > 0 or any(self.limits_for(host)))

    @property
    def global_bandwidth(self) -> int:
        """Total bytes/s over all downloads; 0 means unlimited."""
        return self._global_bw

    def _host_limiters(self, host: str) -> tuple[Limiter | None, _Meter | None]:
        with self._lock:
            rps, bw = self.limits_for(host)
            req = self._req.get(host)
            if req is None and rps > 0:
                req = self._req[host] = _request_limiter(rps)
            band = self._bw.get(host)
            if band is None and bw > 0:
                band = self._bw[host] = _Meter(bw)
            return req, band

    def request(self, host: str, cancel: threading.Event, control: Callable[[], str]) -> None:
        """Wait until one more request to ``host`` fits its requests/s limit."""
        if not self.enabled:
            return
        req, _ = self._host_limiters(host)
        if req is not None:
            while not req.try_acquire("dltui", blocking=True, timeout=_WAIT_SLICE):
                if cancel.is_set():
                    raise Interrupted(control())

    def bandwidth(self, host: str, nbytes: int, cancel: threading.Event,
                  control: Callable[[], str]) -> None:
        """Charge ``nbytes`` to the global and the host's bandwidth budget, waiting as needed."""
        if not self.enabled:
            return
        _, band = self._host_limiters(host)
        if band is not None:
            band.charge(nbytes, cancel, control)
        glob = self._global
        if glob is not None:
            glob.charge(nbytes, cancel, control)

    def bandwidth_for(self, host: str) -> int | None:
        """The lowest bandwidth limit that applies to ``host`` (bytes/s), or None."""
        if not self.enabled:
            return None
        rates = [r for r in (self.limits_for(host)[1], self._global_bw) if r > 0]
        return min(rates) if rates else None

    def read_size(self, host: str) -> int | None:
        """How many bytes one read should take while ``host``'s bytes are metered (a tenth of a
        second of the lowest rate that applies, so the meter paces smoothly), or None when no
        bandwidth limit applies."""
        rate = self.bandwidth_for(host)
        if rate is None:
            return None
        return max(MIN_METERED_READ, min(MAX_METERED_READ, int(rate * _BURST_SECONDS)))


# -- circuit breaker -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BreakerState:
    """One host's breaker as the TUI shows it."""

    host: str
    state: str  # closed | open | half_open
    #: Failures that count now: the host's own in a row, else its URLs failing lately.
    failures: int
    open_until: float | None
    last_error: str | None
    #: Why it opened (or would): ``503 from 4 URLs``, ``5 connection failures in a row``.
    cause: str | None = None


def _blame(exc: DownloadError) -> tuple[str, bool]:
    """A failure's short label and whether it blames the host itself (no connection at all)
    rather than the one URL asked."""
    if isinstance(exc, HTTPStatusError):
        return str(exc.status), False
    if isinstance(exc, TransportError) and exc.host_fault:
        return "connection failures", True
    return "transport errors", False


@dataclass(slots=True)
class _Host:
    #: Failures in a row that blame the host itself (connect, TLS, proxy).
    in_a_row: int = 0
    #: URL -> (when it last failed, label): URLs whose last answer was a failure.
    failing: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: URL -> when it last worked: URLs whose last answer was a success.
    working: dict[str, float] = field(default_factory=dict)
    open_until: float | None = None
    trial: bool = False
    trial_since: float = 0.0
    last_error: str | None = None
    cause: str | None = None


class CircuitBreaker:
    """Per host, failures counted per URL and for the host itself.

    A host's circuit opens when ``threshold`` connections to it failed in a row (connect,
    TLS, proxy: the host itself is down), or when ``threshold`` of its URLs failed lately
    (within ``window`` seconds) and more of its recent URLs fail than work: a few bad URLs
    among good ones never open it, whatever each of them answers and however often. After
    ``cooldown`` seconds one trial goes through (half-open); a success closes the circuit.
    """

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.time,
        *, window: float = 300.0,
    ) -> None:
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self.window = window
        self.enabled = True
        self._clock = clock
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}

    def before_request(self, host: str) -> None:
        """Raise CircuitOpenError while the host's circuit is open."""
        if not self.enabled:
            return
        with self._lock:
            h = self._hosts.get(host)
            if h is None or h.open_until is None:
                return
            now = self._clock()
            if now < h.open_until:
                raise CircuitOpenError(host, h.open_until, h.cause)
            # Half-open: one trial at a time. A trial that never reported (its job was
            # paused, or lost its lease) stops counting after a cool-down of its own.
            if h.trial and now < h.trial_since + self.cooldown:
                raise CircuitOpenError(host, now + min(self.cooldown, 5.0), h.cause)
            h.trial, h.trial_since = True, now

    def success(self, host: str, url: str | None = None) -> None:
        """A request to ``url`` on the host worked: the host works, its circuit closes."""
        with self._lock:
            h = self._hosts.setdefault(host, _Host())  # keep the host listed, closed
            h.in_a_row = 0
            if h.open_until is not None:  # a fresh start: what opened it is over
                h.failing.clear()
                h.open_until, h.trial, h.cause = None, False, None
            if url is not None:
                h.failing.pop(url, None)
                h.working.pop(url, None)
                h.working[url] = self._clock()  # newest last, so pruning stops early

    def answered(self, host: str) -> None:
        """The host answered, with an error that is the URL's own (a 404, a bad body): the
        host is up, so a trial that got this far closes its circuit."""
        self.success(host)

    def failure(self, host: str, url: str, exc: DownloadError) -> None:
        """A request to ``url`` failed in a way that may blame the host (5xx, transport)."""
        label, host_fault = _blame(exc)
        with self._lock:
            now = self._clock()
            h = self._hosts.setdefault(host, _Host())
            h.last_error = str(exc)
            if host_fault:
                h.in_a_row += 1
            else:
                h.in_a_row = 0
                h.working.pop(url, None)
                h.failing.pop(url, None)
                h.failing[url] = (now, label)
            self._prune(h, now)
            cause = self._cause(h)
            if cause is not None or (h.trial and (host_fault or h.failing)):
                h.open_until = now + self.cooldown
                h.cause = cause or h.cause or label
            h.trial = False

    def _prune(self, h: _Host, now: float) -> None:
        horizon = now - self.window
        for url in [u for u, (t, _) in h.failing.items() if t < horizon]:
            del h.failing[url]
        while h.working:  # oldest first: stop at the first recent one, copying nothing
            url, t = next(iter(h.working.items()))
            if t >= horizon:
                break
            del h.working[url]

    def _cause(self, h: _Host) -> str | None:
        """Why the host's circuit should be open now, or None."""
        if h.in_a_row >= self.threshold:
            return f"{h.in_a_row} connection failures in a row"
        if len(h.failing) >= self.threshold and len(h.failing) > len(h.working):
            labels = Counter(label for _, label in h.failing.values())
            what = ", ".join(label for label, _ in labels.most_common(3))
            return f"{what} from {len(h.failing)} URLs"
        return None

    def snapshot(self) -> list[BreakerState]:
        """Every host the breaker has seen."""
        with self._lock:
            now = self._clock()
            out = []
            for host in sorted(self._hosts):
                h = self._hosts[host]
                self._prune(h, now)
                if h.open_until is None:
                    state = "closed"
                elif h.trial or now >= h.open_until:
                    state = "half_open"
                else:
                    state = "open"
                failures = h.in_a_row or len(h.failing)
                out.append(BreakerState(host, state, failures, h.open_until, h.last_error,
                                        h.cause if h.open_until is not None else None))
            return out
