"""Workers publish breaker state and Retry-After per host, and apply stored limits live."""

from __future__ import annotations

import threading
import time

from dltui.ledger import hosts, jobs
from dltui.model import JobState
from dltui.origin import Resource
from dltui.worker import WorkerPool
from tests.conftest import wait_for
from tests.engine.helpers import blob


def test_breaker_opens_and_is_published(ledger, dest, origin, settings) -> None:
    url = origin.add("/down", Resource(status=500))
    job_id = jobs.add(ledger, [jobs.JobSpec(url, dest)])[0].job.id
    # Two failures open the breaker; its refusal is the third of five tries: re-queued.
    pool = WorkerPool(ledger, settings.replace(breaker_threshold=2, breaker_cooldown=60,
                                                retries=5), workers=1)
    pool.start()
    try:
        wait_for(lambda: "127.0.0.1" in hosts.statuses(ledger)
              and hosts.statuses(ledger)["127.0.0.1"].breaker == "open")
        job = jobs.get(ledger, job_id)
        wait_for(lambda: jobs.get(ledger, job_id).state is JobState.PLANNED)
        job = jobs.get(ledger, job_id)
        assert job.not_before is not None and job.not_before > time.time() + 30
        assert "circuit open" in job.error and job.failed_tries == 3
        status = hosts.statuses(ledger)["127.0.0.1"]
        assert "HTTP 500" in status.last_error and status.open_until > time.time()
    finally:
        pool.stop()


def test_retry_after_is_published(ledger, dest, origin, settings) -> None:
    url = origin.add("/busy", Resource(data=blob(1000), statuses=[503], retry_after="1"))
    jobs.add(ledger, [jobs.JobSpec(url, dest)])
    pool = WorkerPool(ledger, settings, workers=1)
    thread = threading.Thread(target=pool.run_until_idle, daemon=True)
    thread.start()
    wait_for(lambda: "127.0.0.1" in hosts.statuses(ledger)
          and hosts.statuses(ledger)["127.0.0.1"].retry_after_until is not None)
    thread.join(30)
    assert jobs.list_jobs(ledger)[0].state is JobState.FINALIZED


def test_stored_limits_reach_running_workers(ledger, dest, origin, settings) -> None:
    url = origin.add("/slow", Resource(data=blob(4 << 20), rate=1 << 20))
    jobs.add(ledger, [jobs.JobSpec(url, dest)])
    pool = WorkerPool(ledger, settings, workers=1)
    pool.start()
    try:
        hosts.set_limit(ledger, "127.0.0.1", requests_per_second=3.0, bandwidth=256 << 10,
                        by="test")
        hosts.set_global_bandwidth(ledger, 1 << 20, by="test")
        wait_for(lambda: pool.limits.limits_for("127.0.0.1") == (3.0, 256 << 10), timeout=5)
        assert pool.limits.global_bandwidth == 1 << 20
    finally:
        pool.stop()
