"""Bandwidth limits measured on real downloads: achieved over a 5 s window vs the set rate."""

from __future__ import annotations

import contextlib
import threading
import time

from dltui.config import Settings
from dltui.engine import Mode, ResumeDecision, StreamOptions, fetch, make_client
from dltui.engine.policy import RateLimits
from dltui.errors import Interrupted
from dltui.model import ServerValidators
from tests.engine.helpers import blob

KiB, MiB = 1 << 10, 1 << 20
WINDOW = (1.0, 6.0)  # seconds after the first body byte


class _Clock:
    """Stream hooks that timestamp every progress report."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []

    def checkpoint(self, cp: object) -> None:
        pass

    def progress(self, done: int, total: int | None) -> None:
        self.points.append((time.monotonic(), done))

    def wire(self, decision: object) -> None:
        pass

    def before_body(self, total: int | None) -> None:
        pass

    def bytes_at(self, t: float) -> int:
        return max((done for when, done in self.points if when <= t), default=0)


def _download(url: str, part, limits: RateLimits, connections: int, hooks: _Clock,
              stop: threading.Event) -> None:
    options = StreamOptions(connections=connections, min_segment=1 * MiB, fsync=False,
                            preallocate=False)
    with make_client(Settings(trust_env=False), connections=connections + 1) as client, \
            contextlib.suppress(Interrupted):  # the test stops it after the window
        fetch(client, url, part, ResumeDecision(Mode.FRESH, 0, "no_part"),
              options=options, expected=ServerValidators(),
              hooks=hooks, cancel=stop, control=lambda: "pause", limits=limits,
              host="127.0.0.1")


def test_limits_hold_within_ten_percent(origin, tmp_path) -> None:
    """Three rates at once, each with its own limiter: 64 KiB/s on one stream, 3 MiB/s on one
    stream and 12 MiB/s over four segments."""
    cases = [(64 * KiB, 1), (3 * MiB, 1), (12 * MiB, 4)]
    stop = threading.Event()
    clocks, threads = [], []
    for i, (rate, connections) in enumerate(cases):
        url = origin.add(f"/l{i}", blob(rate * 8, seed=i))
        limits = RateLimits(Settings(max_bandwidth=rate))
        clock = _Clock()
        clocks.append(clock)
        threads.append(threading.Thread(
            target=_download, args=(url, tmp_path / f"l{i}.part", limits, connections, clock,
                                    stop), daemon=True))
    for t in threads:
        t.start()
    time.sleep(WINDOW[1] + 1.0)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    for (rate, connections), clock in zip(cases, clocks, strict=True):
        assert clock.points, f"no progress at {rate} B/s"
        start = clock.points[0][0]
        moved = clock.bytes_at(start + WINDOW[1]) - clock.bytes_at(start + WINDOW[0])
        achieved = moved / (WINDOW[1] - WINDOW[0])
        assert 0.9 <= achieved / rate <= 1.1, \
            f"{rate} B/s over {connections} connection(s): achieved {achieved:.0f} B/s"


def test_a_limit_changed_live_holds(origin, tmp_path) -> None:
    url = origin.add("/live", blob(32 * MiB, seed=9))
    limits = RateLimits(Settings(max_bandwidth=1 * MiB))
    stop = threading.Event()
    clock = _Clock()
    t = threading.Thread(target=_download, args=(url, tmp_path / "live.part", limits, 1, clock,
                                                 stop), daemon=True)
    t.start()
    time.sleep(1.5)
    limits.configure(global_bandwidth=4 * MiB)
    changed = time.monotonic()
    time.sleep(4.0)
    stop.set()
    t.join(timeout=10)
    moved = clock.bytes_at(changed + 3.5) - clock.bytes_at(changed + 0.5)
    assert 0.9 <= moved / 3.0 / (4 * MiB) <= 1.1, moved / 3.0
