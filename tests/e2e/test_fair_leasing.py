"""Fair sharing: one process must not hoard jobs that another could start now."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dltui.ledger import Ledger, jobs
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob, sha

MiB = 1 << 20


def test_two_processes_both_stream_large_files_of_unknown_size(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    data = {f"/big{i}.bin": blob(8 * MiB, seed=100 + i) for i in range(4)}
    for path, body in data.items():
        origin.add(path, Resource(data=body, rate=4 * MiB))  # ~2 s each
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_CONNECTIONS_PER_FILE": "1"}
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec(origin.url(p), dest) for p in data])  # sizes unknown
        runner = subprocess.Popen(
            [sys.executable, "-m", "dltui", "run", "--until-idle", "-p", "2", "-w", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: origin.requests("/big0.bin", "GET") or
                     origin.requests("/big1.bin", "GET"), "nothing started", timeout=20)
            first = time.monotonic()

            def streaming_owners() -> set[str]:
                return {j.lease_owner.split(":")[1] for j in jobs.list_jobs(led)
                        if j.state is JobState.STREAMING and j.bytes_committed > 0
                        and j.lease_owner}

            wait_for(lambda: len(streaming_owners()) == 2,
                     "the second process never streamed", timeout=20)
            assert time.monotonic() - first < 2.0
            _, err = runner.communicate(timeout=60)
        finally:
            if runner.poll() is None:
                runner.kill()
        assert runner.returncode == 0, err.decode()
        for job in jobs.list_jobs(led):
            assert job.state is JobState.FINALIZED
            assert sha(Path(job.final_path).read_bytes()) == sha(data["/" + Path(job.url).name])
