"""Every job ends in bounded time: hostile servers, an open breaker and a trickle all end FAILED,
and `run --until-idle` exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dltui.ledger import Ledger, events, hosts, jobs
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV
from tests.engine.helpers import blob

ENV = {"DLTUI_RETRIES": "3", "DLTUI_BREAKER_THRESHOLD": "2", "DLTUI_BREAKER_COOLDOWN": "0.1",
       "DLTUI_MIN_SPEED": "1K", "DLTUI_MIN_SPEED_TIME": "1.5"}


def _run(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TEST_ENV, **ENV, "DLTUI_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "dltui", "run", "--until-idle", *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_hostile_servers_end_failed_and_the_run_exits(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    urls = {
        # Another host name: the 500s open its breaker, which then refuses its other jobs.
        **{f"/e{i}": origin.add(f"/e{i}", Resource(status=500)).replace(
            "127.0.0.1", "localhost") for i in range(6)},
        "/garbled": origin.add("/garbled", Resource(raw_status_line=b"HTTX/1.1 2OO Okay")),
        "/headers": origin.add("/headers", Resource(data=blob(1000), header_bytes=200_000)),
        "/gone": origin.add("/gone", Resource(status=404)),
        "/trickle": origin.add("/trickle", Resource(data=blob(4096), rate=1)),
    }
    with Ledger(home) as led:
        ids = {path: jobs.add(led, [jobs.JobSpec(url, dest)])[0].job.id
               for path, url in urls.items()}
        done = _run(home, "-w", "3")
        assert done.returncode == 1, done.stderr  # some jobs failed: exit 1, not a hang
        by_path = {path: jobs.get(led, job_id) for path, job_id in ids.items()}
        trickle_events = [e for e in events.for_job(led, ids["/trickle"], 100)
                          if e.kind == "retry"]
        # Waiting out an open breaker spends no try, but each wait is a lease of its own.
        waits = {path: sum(1 for e in events.for_job(led, job_id, 1000)
                           if e.kind == "state" and e.data.get("reason") == "circuit_open")
                 for path, job_id in ids.items()}
    for path, job in by_path.items():
        assert job.state is JobState.FAILED, (path, job.state, job.error)
        assert 1 <= job.failed_tries <= 3, (path, job.failed_tries, job.error)
        # Leases are bounded too: one per failed try and one per wait behind the breaker.
        assert job.attempts <= 3 + waits[path], (path, job.attempts, waits[path])
        assert not job.error.startswith("host cooling down"), (path, job.error)
    for path in ("/garbled", "/headers", "/gone"):
        assert by_path[path].failed_tries == 1, (path, by_path[path].error)  # at once
    assert "malformed response from 127.0.0.1" in by_path["/garbled"].error
    assert "response headers from 127.0.0.1 exceed" in by_path["/headers"].error
    # The trickle stalls (retried, resumed): 3 tries.
    assert by_path["/trickle"].failed_tries == 3
    assert any("stalled" in (e.data.get("error") or "") for e in trickle_events), trickle_events
    for i in range(6):  # each fails with its own last error, not the breaker's
        assert by_path[f"/e{i}"].failed_tries == 3
        assert by_path[f"/e{i}"].error.startswith("HTTP 500 Internal Server Error from "
                                                  "http://localhost:"), by_path[f"/e{i}"].error
    assert any(waits[f"/e{i}"] for i in range(6)), waits  # the breaker did open


def test_retry_gives_a_failed_job_a_new_budget(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    res = Resource(status=503)
    url = origin.add("/flaky", res)
    with Ledger(home) as led:
        job_id = jobs.add(led, [jobs.JobSpec(url, dest)])[0].job.id
        assert _run(home).returncode == 1
        assert jobs.get(led, job_id).failed_tries == 3
        res.status = None
        res.data = blob(5000)
        env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
        subprocess.run([sys.executable, "-m", "dltui", "retry", str(job_id)], env=env,
                       check=True, capture_output=True)
        assert jobs.get(led, job_id).failed_tries == 0
        assert _run(home).returncode == 0
        assert jobs.get(led, job_id).state is JobState.FINALIZED


def test_a_few_503_urls_never_sink_their_hosts_good_jobs(tmp_path, origin) -> None:
    """Four URLs answering 503 (queued first, so their failures come in a row) among 40 good
    ones on the same host, at the default threshold: every good job finishes without a failed
    try or a wait, each bad one fails with its own 503 after its own tries, and the host's
    breaker never opened."""
    home, dest = tmp_path / "home", tmp_path / "dl"
    bad = [origin.add(f"/bad{i}", Resource(status=503)) for i in range(4)]
    good = [origin.add(f"/ok{i}", Resource(data=blob(2000 + i))) for i in range(40)]
    with Ledger(home) as led:
        ids = [jobs.add(led, [jobs.JobSpec(url, dest)])[0].job.id for url in [*bad, *good]]
        env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_RETRIES": "3",
               "DLTUI_BREAKER_THRESHOLD": "5"}
        done = subprocess.run([sys.executable, "-m", "dltui", "run", "--until-idle", "-w", "4"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr  # the four failed
        by_id = {job_id: jobs.get(led, job_id) for job_id in ids}
        waits = [e for job_id in ids for e in events.for_job(led, job_id, 1000)
                 if e.kind == "state" and e.data.get("reason") == "circuit_open"]
        status = hosts.statuses(led).get("127.0.0.1")
    for i, job_id in enumerate(ids[:4]):
        job = by_id[job_id]
        assert job.state is JobState.FAILED and job.failed_tries == 3, (job.state, job.error)
        assert job.error == (f"HTTP 503 Service Unavailable from {bad[i]} (after 3 tries)")
    for job_id in ids[4:]:
        job = by_id[job_id]
        assert job.state is JobState.FINALIZED and job.failed_tries == 0, (job.id, job.error)
    assert waits == []
    assert status is None or (status.breaker == "closed" and status.cause is None), status
