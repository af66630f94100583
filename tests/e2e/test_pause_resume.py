"""Operator intent from one process reaches a download running in another."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dltui import paths
from dltui.engine.resume import OVERLAP_BYTES
from dltui.ledger import Ledger, actions, jobs
from dltui.model import JobState
from dltui.origin import Resource
from dltui.worker import WorkerPool
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob, sha

MiB = 1 << 20


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}


def _dltui(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dltui", *args], env=_env(home),
                          capture_output=True, text=True, timeout=120, **kw)




def test_cli_pause_in_another_process_then_resume_from_offset(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    data = blob(8 * MiB, seed=5)
    url = origin.add("/p.bin", Resource(data=data, rate=2 * MiB))
    assert _dltui(home, "add", url, "--dir", str(dest)).returncode == 0
    led = Ledger(home)
    runner = subprocess.Popen([sys.executable, "-m", "dltui", "run", "--until-idle"],
                              env=_env(home), stderr=subprocess.PIPE)
    wait_for(lambda: jobs.get(led, 1).bytes_committed >= MiB)
    asked = time.monotonic()
    paused = _dltui(home, "pause", "1")
    assert paused.returncode == 0 and "pause requested" in paused.stdout
    wait_for(lambda: jobs.get(led, 1).state is JobState.PAUSED, timeout=10)
    assert time.monotonic() - asked < 3.0  # the worker reacts at its next chunk
    assert runner.wait(timeout=30) == 0  # nothing runnable is left: --until-idle exits
    job = jobs.get(led, 1)
    committed = job.bytes_committed
    assert 0 < committed < len(data)
    assert paths.part_path(home, 1).stat().st_size >= committed

    assert _dltui(home, "resume", "1").returncode == 0
    done = _dltui(home, "run", "--until-idle")
    assert done.returncode == 0, done.stderr
    job = jobs.get(led, 1)
    assert job.state is JobState.FINALIZED and job.sha256 == sha(data)
    assert Path(job.final_path).read_bytes() == data
    last = origin.requests("/p.bin", "GET")[-1]
    # Resumed at the committed offset, with the 64 KiB before it fetched again and compared.
    assert last.headers["range"] == f"bytes={committed - OVERLAP_BYTES}-"
    assert last.headers["if-range"] == job.etag and last.status == 206
    led.close()


def test_sigterm_checkpoints_and_requeues(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    data = blob(6 * MiB, seed=6)
    url = origin.add("/t.bin", Resource(data=data, rate=2 * MiB))
    assert _dltui(home, "add", url, "--dir", str(dest)).returncode == 0
    led = Ledger(home)
    runner = subprocess.Popen([sys.executable, "-m", "dltui", "run"], env=_env(home),
                              stderr=subprocess.PIPE)
    wait_for(lambda: jobs.get(led, 1).bytes_committed >= MiB)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=15) == 0
    job = jobs.get(led, 1)
    assert job.state is JobState.PLANNED and job.lease_owner is None
    assert job.bytes_committed >= MiB
    assert paths.part_path(home, 1).stat().st_size >= job.bytes_committed
    done = _dltui(home, "run", "--until-idle")
    assert done.returncode == 0
    assert Path(jobs.get(led, 1).final_path).read_bytes() == data
    assert origin.requests("/t.bin", "GET")[-1].headers["range"] == \
        f"bytes={job.bytes_committed - OVERLAP_BYTES}-"
    led.close()


def test_sigint_works_the_same(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    url = origin.add("/i.bin", Resource(data=blob(4 * MiB), rate=MiB))
    assert _dltui(home, "add", url, "--dir", str(dest)).returncode == 0
    led = Ledger(home)
    runner = subprocess.Popen([sys.executable, "-m", "dltui", "run"], env=_env(home),
                              stderr=subprocess.PIPE)
    wait_for(lambda: jobs.get(led, 1).bytes_committed > 0)
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=15) == 0
    assert jobs.get(led, 1).state is JobState.PLANNED
    led.close()


def _pool_in_background(led: Ledger, settings) -> tuple[WorkerPool, threading.Thread]:
    pool = WorkerPool(led, settings, workers=1)
    thread = threading.Thread(target=pool.run_until_idle, daemon=True)
    thread.start()
    return pool, thread


def test_cancel_running_download_deletes_the_part(ledger, home, dest, origin, settings) -> None:
    url = origin.add("/c.bin", Resource(data=blob(8 * MiB), rate=2 * MiB))
    job_id = jobs.add(ledger, [jobs.JobSpec(url, dest)])[0].job.id
    _, thread = _pool_in_background(ledger, settings)
    wait_for(lambda: jobs.get(ledger, job_id).bytes_committed > 0)
    assert actions.cancel(ledger, job_id) == "cancel requested"
    wait_for(lambda: jobs.get(ledger, job_id).state is JobState.CANCELLED, timeout=5)
    thread.join(30)
    assert not paths.part_path(home, job_id).exists()
    assert not dest.exists() or not any(dest.iterdir())


def test_pause_keeps_the_part_and_flags_apply_live(ledger, home, dest, origin, settings) -> None:
    url = origin.add("/f.bin", Resource(data=blob(6 * MiB), rate=2 * MiB))
    job_id = jobs.add(ledger, [jobs.JobSpec(url, dest)])[0].job.id
    pool, thread = _pool_in_background(ledger, settings)
    wait_for(lambda: jobs.get(ledger, job_id).bytes_committed > 0)
    from dltui.ledger import flags

    flags.set_flag(ledger, "rate_limit", False, by="test")
    wait_for(lambda: pool.flags.rate_limit is False, timeout=5)  # read live by workers
    assert actions.pause(ledger, job_id) == "pause requested"
    wait_for(lambda: jobs.get(ledger, job_id).state is JobState.PAUSED, timeout=5)
    thread.join(30)
    job = jobs.get(ledger, job_id)
    assert paths.part_path(home, job_id).stat().st_size >= job.bytes_committed > 0
