"""Transfer rates smoothed over a few seconds, and the ETA that follows from them.

Byte counts reach a watcher in steps (a checkpoint a second, a poll every few hundred ms), so a
rate taken between two samples swings between zero and several times the truth. An exponential
average over ``TAU`` seconds smooths the steps; dividing by the weight gathered so far keeps the
first seconds honest instead of starting from zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Seconds over which the average forgets (its time constant).
TAU = 5.0


@dataclass(slots=True)
class SmoothedRate:
    """Bytes/s from a running total sampled at arbitrary times."""

    tau: float = TAU
    _t: float | None = None
    _bytes: int = 0
    _avg: float = 0.0
    _weight: float = 0.0

    def add(self, t: float, total: int) -> None:
        """Fold in the running total ``total`` seen at time ``t`` (seconds, monotonic)."""
        if self._t is None or total < self._bytes:  # first sample, or the count restarted
            self._t, self._bytes, self._avg, self._weight = t, total, 0.0, 0.0
            return
        dt = t - self._t
        if dt <= 0:
            return
        inst = (total - self._bytes) / dt
        alpha = 1.0 - math.exp(-dt / self.tau)
        self._avg += alpha * (inst - self._avg)
        self._weight += alpha * (1.0 - self._weight)
        self._t, self._bytes = t, total

    @property
    def rate(self) -> float:
        """Smoothed bytes per second; 0.0 until two samples are in."""
        return self._avg / self._weight if self._weight > 0 else 0.0

    def eta(self, remaining: int | None) -> float | None:
        """Seconds to move ``remaining`` bytes at the smoothed rate, or None when unknown."""
        rate = self.rate
        if remaining is None or rate <= 0:
            return None
        return max(0.0, remaining / rate)
