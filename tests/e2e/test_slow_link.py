"""A 64 KiB/s link: the ledger learns the length at once, checkpoints every second, and a
SIGKILL keeps what was downloaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dltui.ledger import Ledger, jobs
from dltui.origin import Resource
from dltui.paths import part_path
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob, sha

KiB, MiB = 1 << 10, 1 << 20


def _runner(home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_READ_TIMEOUT": "10"}
    return subprocess.Popen([sys.executable, "-m", "dltui", "run", "--until-idle", "-w", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_progress_is_recorded_at_64_kib_per_second(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    data = blob(8 * MiB, seed=64)
    res = Resource(data=data, rate=64 * KiB)
    url = origin.add("/slow.bin", res)
    with Ledger(home) as led:
        job_id = jobs.add(led, [jobs.JobSpec(url, dest)])[0].job.id
        runner = _runner(home)
        try:
            wait_for(lambda: origin.requests("/slow.bin", "GET"), "no GET reached the origin")
            asked = time.monotonic()
            job = wait_for(lambda: (j := jobs.get(led, job_id)).bytes_committed > 0 and j,
                           "no checkpoint on a 64 KiB/s link", timeout=10)
            assert time.monotonic() - asked < 2.0
            assert job.bytes_total == len(data)
            time.sleep(1.5)
            before = jobs.get(led, job_id).bytes_committed
            assert before > job.bytes_committed  # a checkpoint a second, not one per buffer
            os.kill(runner.pid, signal.SIGKILL)
            runner.wait(timeout=10)
        finally:
            if runner.poll() is None:
                runner.kill()
        kept = jobs.get(led, job_id)
        assert kept.bytes_committed >= before and kept.bytes_total == len(data)
        part = part_path(home, job_id)
        assert part.stat().st_size >= kept.bytes_committed
        assert part.read_bytes()[:kept.bytes_committed] == data[:kept.bytes_committed]
        res.rate = None  # the link recovers: the next run resumes
        again = _runner(home)
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err.decode()
        done = jobs.get(led, job_id)
        assert sha(Path(done.final_path).read_bytes()) == sha(data)
        resumed = origin.requests("/slow.bin", "GET")[-1]
        start = int(resumed.headers["range"].removeprefix("bytes=").split("-")[0])
        assert start > 0 and start >= kept.bytes_committed - 64 * KiB
