"""A runner SIGKILLed mid-download: the runners still alive take its jobs over and finish them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dltui.ledger import Ledger, jobs
from dltui.model import ACTIVE_STATES, JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob, sha

MiB = 1 << 20


def _runner(home: Path, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "dltui", "run", "--until-idle", "-w",
                             str(workers)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_a_live_runner_finishes_a_killed_runners_jobs(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    data = {f"/d{i}.bin": blob(2 * MiB, seed=60 + i) for i in range(3)}
    for path, body in data.items():
        origin.add(path, Resource(data=body, rate=512 * 1024))  # ~4 s each
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec(origin.url(p), dest) for p in data])
        doomed = _runner(home, 3)  # leases all three
        wait_for(lambda: all(j.state in ACTIVE_STATES and j.bytes_committed > 0
                             for j in jobs.list_jobs(led)), "the first runner never started")
        survivor = _runner(home, 1)  # nothing queued: it waits on the live leases
        time.sleep(2.0)  # fully started: its worker polls for work, its loop for idleness
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
        _, err = survivor.communicate(timeout=90)
        assert survivor.returncode == 0, err.decode()
        finished = jobs.list_jobs(led)
        assert [j.state for j in finished] == [JobState.FINALIZED] * 3, \
            [(j.id, j.state, j.lease_owner) for j in finished]
        for job in finished:
            assert sha(Path(job.final_path).read_bytes()) == sha(data["/" + Path(job.url).name])
