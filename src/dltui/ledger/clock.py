"""The ledger's clock: every timestamp the ledger writes or compares comes from :func:`now`.

Wall-clock seconds since the epoch, so processes and hosts agree on lease expiry. Tests move it
with :func:`use` instead of sleeping past a lease's TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_source: Callable[[], float] = time.time


def now() -> float:
    """The ledger's current time."""
    return _source()


@contextmanager
def use(source: Callable[[], float]) -> Iterator[None]:
    """Read the time from ``source`` inside the block (for tests: a clock they can move)."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous
