"""Every job ends in bounded time: hostile servers, an open breaker and a trickle all end FAILED,
and `run --until-idle` exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dltui.ledger import Ledger, events, jobs
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV
from tests.engine.helpers import blob

ENV = {"DLTUI_RETRIES": "3", "DLTUI_BREAKER_THRESHOLD": "2", "DLTUI_BREAKER_COOLDOWN": "0.3",
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
    for path, job in by_path.items():
        assert job.state is JobState.FAILED, (path, job.state, job.error)
        assert 1 <= job.failed_tries <= 3, (path, job.failed_tries, job.error)
        assert job.attempts <= 3, (path, job.attempts)  # leases too: an open breaker ends
    for path in ("/garbled", "/headers", "/gone"):
        assert by_path[path].failed_tries == 1, (path, by_path[path].error)  # at once
    assert "malformed response from 127.0.0.1" in by_path["/garbled"].error
    assert "response headers from 127.0.0.1 exceed" in by_path["/headers"].error
    # The trickle stalls (retried, resumed) until its breaker opens; either way, 3 tries.
    assert by_path["/trickle"].failed_tries == 3
    assert any("stalled" in (e.data.get("error") or "") for e in trickle_events), trickle_events
    for i in range(6):
        assert by_path[f"/e{i}"].failed_tries == 3


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
