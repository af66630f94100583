"""Smoothed rates: steady through the steps of checkpoints and polls, honest from the start."""

from __future__ import annotations

from dltui.rates import SmoothedRate


def _stepped(rate: int, seconds: float, poll: float = 0.25, step: float = 1.0):
    """Samples of a total that grows at ``rate`` but is only seen to move once per ``step``."""
    t = 0.0
    while t <= seconds:
        yield t, int(int(t / step) * step * rate)
        t += poll


def test_stepped_totals_give_a_steady_rate() -> None:
    meter = SmoothedRate()
    seen = []
    for t, total in _stepped(64 << 10, 20.0):
        meter.add(t, total)
        if t >= 3.0:
            seen.append(meter.rate)
    assert all(0.75 * (64 << 10) <= r <= 1.25 * (64 << 10) for r in seen), (min(seen), max(seen))
    assert abs(seen[-1] / (64 << 10) - 1) < 0.1


def test_first_seconds_are_not_underestimated() -> None:
    meter = SmoothedRate()
    meter.add(0.0, 0)
    meter.add(0.5, 500_000)
    assert meter.rate == 1_000_000  # not the 10 % that an average started at 0 would say


def test_eta_and_restart() -> None:
    meter = SmoothedRate()
    assert meter.rate == 0.0 and meter.eta(100) is None
    meter.add(0.0, 0)
    meter.add(1.0, 1000)
    assert meter.eta(5000) == 5.0 and meter.eta(None) is None
    meter.add(2.0, 10)  # the count restarted (a discarded part): start over, no negative rate
    assert meter.rate == 0.0
