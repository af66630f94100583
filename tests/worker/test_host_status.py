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


def test_breaker_opens_on_failing_urls_and_its_jobs_wait_without_spending_tries(
        ledger, dest, origin, settings) -> None:
    """One URL failing again and again leaves its host open (it fails on its own budget);
    a second failing URL opens the breaker (threshold 2, nothing working); the jobs behind it
    wait with the reason and spend no try, and the published status says the same."""
    bad = [origin.add(f"/down{i}", Resource(status=500)) for i in range(2)]
    ids = [r.job.id for r in jobs.add(ledger, [jobs.JobSpec(u, dest) for u in bad])]
    pool = WorkerPool(ledger, settings.replace(breaker_threshold=2, breaker_cooldown=60,
                                                retries=3), workers=1)
    pool.start()
    try:
        wait_for(lambda: jobs.get(ledger, ids[0]).state is JobState.FAILED)
        first = jobs.get(ledger, ids[0])
        assert first.failed_tries == 3 and first.error.startswith("HTTP 500"), first.error
        wait_for(lambda: jobs.get(ledger, ids[1]).not_before is not None)
        # Added once the breaker is open: its job is refused before any request.
        good = origin.add("/good", Resource(data=blob(1000)))
        ids.append(jobs.add(ledger, [jobs.JobSpec(good, dest)])[0].job.id)
        wait_for(lambda: jobs.get(ledger, ids[2]).state is JobState.PLANNED
                 and jobs.get(ledger, ids[2]).not_before is not None)
        second, third = jobs.get(ledger, ids[1]), jobs.get(ledger, ids[2])
        assert second.state is JobState.PLANNED and second.failed_tries == 1
        assert third.failed_tries == 0  # refused before any request: no try spent
        assert third.error == "host cooling down (500 from 2 URLs)"
        assert third.not_before > time.time() + 30
        wait_for(lambda: hosts.statuses(ledger).get("127.0.0.1") is not None
                 and hosts.statuses(ledger)["127.0.0.1"].breaker == "open")
        status = hosts.statuses(ledger)["127.0.0.1"]
        assert status.cause == "500 from 2 URLs" and "HTTP 500" in status.last_error
        assert status.open_until == third.not_before  # one count-down, shown twice
        assert third.waiting(time.time()).startswith("host cooling down ")
        assert third.waiting(time.time()).endswith("s (500 from 2 URLs)")
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
