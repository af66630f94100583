from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path

from dltui.config import Settings
from dltui.ledger import Ledger, events, jobs
from dltui.model import Job
from dltui.worker import WorkerPool


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_pool(ledger: Ledger, settings: Settings, workers: int = 2, timeout: float = 90.0) -> None:
    pool = WorkerPool(ledger, settings, workers=workers)
    t = threading.Thread(target=pool.run_until_idle, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the worker pool did not go idle"


def fetch_all(ledger: Ledger, dest: Path, settings: Settings, *urls: str, workers: int = 2,
              **spec) -> list[Job]:
    added = jobs.add(ledger, [jobs.JobSpec(u, dest, **spec) for u in urls])
    run_pool(ledger, settings, workers)
    return [jobs.get(ledger, r.job.id) for r in added]


def fetch_one(ledger: Ledger, dest: Path, settings: Settings, url: str, **spec) -> Job:
    return fetch_all(ledger, dest, settings, url, **spec)[0]


def decisions(ledger: Ledger, job_id: int) -> list[tuple[str, str]]:
    return [(e.data["mode"], e.data["reason"]) for e in events.for_job(ledger, job_id, 500)
            if e.kind == "decision"]
