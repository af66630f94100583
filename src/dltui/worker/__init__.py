"""Where the engine meets the ledger: lease a job, run its steps as exactly-once ops, release.

A :class:`WorkerPool` (``pool.py``) runs N worker threads and one keeper thread. Workers lease
jobs and carry each through HEAD / STREAM / FINALIZE / LINK as a :class:`JobRun` (``run.py``),
or a batch of small fresh ones through the small-file lane (``worker.lane``); the keeper renews
their leases (the heartbeat), watches the ledger for pause/cancel and re-reads flags, so
operator intent from any process lands within ``control_poll`` seconds.
"""

from dltui.worker.base import PoolStats
from dltui.worker.pool import WorkerPool
from dltui.worker.run import JobRun

__all__ = ["JobRun", "PoolStats", "WorkerPool"]
