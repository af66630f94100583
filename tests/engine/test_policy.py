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


def _503(url: str) -> HTTPStatusError:
    return HTTPStatusError(503, "Service Unavailable", url)


def _refused() -> TransportError:
    return TransportError("[Errno 111] Connection refused (http://h/)", host_fault=True)


def test_breaker_opens_when_failures_span_urls_then_half_opens_and_closes() -> None:
    now = [1000.0]
    b = CircuitBreaker(threshold=3, cooldown=10.0, clock=lambda: now[0])
    for i in range(2):
        b.failure("h", f"http://h/{i}", _503(f"http://h/{i}"))
        b.before_request("h")
    b.failure("h", "http://h/2", _503("http://h/2"))
    with pytest.raises(CircuitOpenError) as info:
        b.before_request("h")
    assert info.value.until == 1010.0
    assert info.value.cause == "503 from 3 URLs"
    assert str(info.value) == "host cooling down (503 from 3 URLs)"
    b.before_request("other")  # hosts are independent
    now[0] = 1010.5
    b.before_request("h")  # half-open: one trial goes through...
    with pytest.raises(CircuitOpenError):
        b.before_request("h")  # ...and only one
    b.failure("h", "http://h/0", _503("http://h/0"))  # a failed trial re-opens at once
    with pytest.raises(CircuitOpenError):
        b.before_request("h")
    now[0] = 1030.0
    b.before_request("h")
    b.success("h", "http://h/9")
    b.before_request("h")
    assert b.snapshot()[0].state == "closed"
    # Closing is a fresh start: one more failing URL does not re-open it.
    b.failure("h", "http://h/0", _503("http://h/0"))
    b.before_request("h")


def test_a_few_bad_urls_never_open_their_host() -> None:
    """Four URLs answering 503 among good ones, each failing again and again: the host stays
    closed, however often they fail (they fail on their own budget)."""
    b = CircuitBreaker(threshold=3, cooldown=10.0)
    for i in range(20):
        b.success("h", f"http://h/good{i}")
    for _ in range(10):
        for i in range(4):
            b.failure("h", f"http://h/bad{i}", _503(f"http://h/bad{i}"))
            b.before_request("h")
    state = b.snapshot()[0]
    assert state.state == "closed" and state.failures == 4


def test_one_url_failing_alone_never_opens_its_host() -> None:
    b = CircuitBreaker(threshold=2, cooldown=10.0)
    for _ in range(10):
        b.failure("h", "http://h/x", _503("http://h/x"))
    b.before_request("h")


def test_connection_failures_open_the_host_whatever_the_url() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=3, cooldown=10.0, clock=lambda: now[0])
    for i in range(20):
        b.success("h", f"http://h/{i}")  # it worked a minute ago...
    for _ in range(2):
        b.failure("h", "http://h/1", _refused())
    b.before_request("h")
    b.failure("h", "http://h/1", _refused())  # ...three refused connections in a row
    with pytest.raises(CircuitOpenError) as info:
        b.before_request("h")
    assert info.value.cause == "3 connection failures in a row"


def test_old_failures_age_out_of_the_window() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=3, cooldown=10.0, clock=lambda: now[0], window=60.0)
    b.failure("h", "http://h/1", _503("http://h/1"))
    b.failure("h", "http://h/2", _503("http://h/2"))
    now[0] = 100.0
    b.failure("h", "http://h/3", _503("http://h/3"))
    b.before_request("h")  # one URL failing lately, not three
    assert b.snapshot()[0].failures == 1


def test_a_trial_that_never_reports_stops_blocking() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=1, cooldown=10.0, clock=lambda: now[0])
    b.failure("h", "http://h/1", _refused())
    now[0] = 11.0
    b.before_request("h")  # the trial; its job is paused and never reports
    with pytest.raises(CircuitOpenError):
        b.before_request("h")
    now[0] = 22.0
    b.before_request("h")  # a new trial


def test_an_answer_that_is_the_urls_own_fault_closes_a_trial() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=1, cooldown=10.0, clock=lambda: now[0])
    b.failure("h", "http://h/1", _refused())
    now[0] = 11.0
    b.before_request("h")
    b.answered("h")  # a 404: the host is up
    b.before_request("h")
    assert b.snapshot()[0].state == "closed"


def test_breaker_disabled_never_blocks() -> None:
    b = CircuitBreaker(threshold=1, cooldown=100.0)
    b.enabled = False
    b.failure("h", "http://h/", _refused())
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
