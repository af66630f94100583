import threading
import time

import pytest

from dltui.config import Settings
from dltui.engine.policy import CircuitBreaker, HostLimit, RateLimits, backoff_delay, retrying
from dltui.errors import CircuitOpenError, HTTPStatusError, Interrupted, TransportError


def test_backoff_grows_with_jitter_and_caps() -> None:
    s = Settings(backoff_initial=1.0, backoff_max=8.0)
    for attempt, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        for _ in range(20):
            assert base * 0.5 <= backoff_delay(s, attempt, None) <= base


def test_retry_after_wins_and_is_capped() -> None:
    s = Settings(retry_after_max=60.0)
    assert backoff_delay(s, 1, 7.0) == 7.0
    assert backoff_delay(s, 1, 3600.0) == 60.0


def _run(settings: Settings, errors: list[BaseException], enabled: bool = True) -> int:
    calls = []
    cancel = threading.Event()
    for attempt in retrying(settings, enabled=enabled, cancel=cancel, control=lambda: "pause"):
        with attempt:
            calls.append(1)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
    return len(calls)


FAST = Settings(backoff_initial=0.001, backoff_max=0.002, retries=4)


def test_retries_retryable_errors() -> None:
    errs = [TransportError("reset"), HTTPStatusError(503, "x", "u"), HTTPStatusError(429, "x", "u")]
    assert _run(FAST, errs) == 4


def test_non_retryable_fails_at_once() -> None:
    with pytest.raises(HTTPStatusError):
        _run(FAST, [HTTPStatusError(404, "Not Found", "u")])


def test_gives_up_after_the_limit_and_when_disabled() -> None:
    with pytest.raises(TransportError):
        _run(FAST, [TransportError("x")] * 4)
    with pytest.raises(TransportError):
        _run(FAST, [TransportError("x")], enabled=False)


def test_cancel_cuts_a_backoff_short() -> None:
    cancel = threading.Event()
    slow = Settings(backoff_initial=30.0, backoff_max=30.0, retries=3)
    threading.Timer(0.1, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(Interrupted):
        for attempt in retrying(slow, enabled=True, cancel=cancel, control=lambda: "cancel"):
            with attempt:
                raise TransportError("x")
    assert time.monotonic() - t0 < 10


def test_breaker_opens_half_opens_and_closes() -> None:
    now = [1000.0]
    b = CircuitBreaker(threshold=3, cooldown=10.0, clock=lambda: now[0])
    for _ in range(2):
        b.failure("h", "boom")
        b.before_request("h")
    b.failure("h", "boom")
    with pytest.raises(CircuitOpenError) as info:
        b.before_request("h")
    assert info.value.until == 1010.0
    b.before_request("other")  # hosts are independent
    now[0] = 1010.5
    b.before_request("h")  # half-open: one trial goes through...
    with pytest.raises(CircuitOpenError):
        b.before_request("h")  # ...and only one
    b.failure("h", "still down")  # a failed trial re-opens at once
    with pytest.raises(CircuitOpenError):
        b.before_request("h")
    now[0] = 1030.0
    b.before_request("h")
    b.success("h")
    b.before_request("h")
    assert b.snapshot()[0].state == "closed"


def test_breaker_disabled_never_blocks() -> None:
    b = CircuitBreaker(threshold=1, cooldown=100.0)
    b.enabled = False
    b.failure("h", "x")
    b.before_request("h")


def test_bandwidth_limit_slows_transfers() -> None:
    limits = RateLimits(Settings(host_bandwidth=200_000))
    cancel = threading.Event()
    t0 = time.monotonic()
    for _ in range(6):  # 600 KB at 200 KB/s, of which the first 200 KB are the burst
        limits.bandwidth("h", 100_000, cancel, lambda: "pause")
    assert time.monotonic() - t0 >= 1.5
    assert limits.limits_for("other") == (0.0, 200_000)  # the default applies to every host
    limits.configure(hosts={"fast": HostLimit(bandwidth=0)})  # 0 in an override: unlimited
    limits.bandwidth("fast", 50_000_000, cancel, lambda: "pause")


def test_limits_change_live_and_per_host() -> None:
    limits = RateLimits(Settings())
    assert limits.limits_for("a") == (0.0, 0)
    limits.configure(global_bandwidth=1_000_000, default=HostLimit(2.0, 0),
                     hosts={"a": HostLimit(bandwidth=5000)})
    assert limits.limits_for("a") == (2.0, 5000)
    assert limits.limits_for("b") == (2.0, 0)
    assert limits.global_bandwidth == 1_000_000


def test_limit_wait_is_cancellable() -> None:
    limits = RateLimits(Settings(host_bandwidth=1000))
    cancel = threading.Event()
    limits.bandwidth("h", 1000, cancel, lambda: "cancel")  # the burst
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(Interrupted):
        limits.bandwidth("h", 100_000, cancel, lambda: "cancel")


def test_requests_per_second() -> None:
    limits = RateLimits(Settings(host_requests_per_second=5))
    cancel = threading.Event()
    t0 = time.monotonic()
    for _ in range(10):
        limits.request("h", cancel, lambda: "pause")
    assert time.monotonic() - t0 >= 0.8
