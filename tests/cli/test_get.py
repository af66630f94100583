"""dltui get: add and download in one foreground process; exit 0/1; Ctrl-C resumes later."""

from __future__ import annotations

import os
import signal
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


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}


def _get(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dltui", "get", *args], env=_env(home),
                          capture_output=True, text=True, timeout=120)


def test_get_downloads_now_and_reports(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    a, b = blob(300_000, seed=1), blob(2 * MiB, seed=2)
    done = _get(home, origin.add("/a.bin", a), origin.add("/b.bin", b), "-d", str(dest),
                "-x", "2", "--max-bandwidth", "50M")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Download Results:\n")
    assert "OK   #1  " in done.stdout and str(dest / "a.bin") in done.stdout
    assert (dest / "a.bin").read_bytes() == a and (dest / "b.bin").read_bytes() == b


def test_get_leaves_other_queued_jobs_alone(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    other = origin.add("/other.bin", blob(1000, seed=3))
    with Ledger(home) as led:
        other_id = jobs.add(led, [jobs.JobSpec(other, dest)])[0].job.id
    done = _get(home, origin.add("/mine.bin", blob(1000, seed=4)), "-d", str(dest))
    assert done.returncode == 0, done.stderr
    with Ledger(home) as led:
        assert jobs.get(led, other_id).state is JobState.PLANNED
    assert origin.requests("/other.bin") == []


def test_get_fails_with_exit_1_and_bad_input_with_exit_2(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    failed = _get(home, origin.add("/missing", Resource(status=404)), "-d", str(dest))
    assert failed.returncode == 1
    assert "ERR  #1" in failed.stdout and "HTTP 404" in failed.stdout
    bad = _get(home, "http://127.0.0.1:9/x", "--checksum", "md4=00")
    assert bad.returncode == 2 and "ALGO one of md5" in bad.stderr
    assert "Traceback" not in bad.stderr
    wrong = _get(home, "http://127.0.0.1:9/x", "--max-bandwidth", "fast")
    assert wrong.returncode == 2 and "--max-bandwidth" in wrong.stderr
    digest = _get(home, origin.add("/d.bin", blob(500, seed=5)), "-d", str(dest),
                  "--checksum", "sha-256=" + "0" * 64)
    assert digest.returncode == 1  # the bytes do not match the promised digest


def _interrupted_get(home: Path, url: str, dest: Path, after: float = 0.0
                     ) -> tuple[subprocess.Popen[str], str, str]:
    """`dltui get URL`, Ctrl-C'd ``after`` seconds past its first committed bytes."""
    proc = subprocess.Popen([sys.executable, "-m", "dltui", "get", url, "-d", str(dest)],
                            env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with Ledger(home) as led:
        wait_for(lambda: (j := jobs.find(led, 1)) is not None and j.bytes_committed > 0,
                 "no progress")
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    return proc, stdout, stderr


def test_ctrl_c_stops_at_a_checkpoint_and_the_next_get_resumes(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    data = blob(6 * MiB, seed=6)
    res = Resource(data=data, rate=2 * MiB)
    url = origin.add("/slow.bin", res)
    proc, stdout, stderr = _interrupted_get(home, url, dest, after=0.5)
    assert proc.returncode == 1, stderr
    assert "INPR #1" in stdout and "resume where they stopped" in stderr
    with Ledger(home) as led:
        kept = jobs.get(led, 1)
        assert kept.state is JobState.PLANNED and kept.bytes_committed > 0
    res.rate = None
    again = _get(home, url, "-d", str(dest))
    assert again.returncode == 0, again.stderr
    assert sha((dest / "slow.bin").read_bytes()) == sha(data)
    assert "range" in origin.requests("/slow.bin", "GET")[-1].headers


def test_ctrl_c_says_when_a_server_may_not_resume(tmp_path, origin) -> None:
    """A server that never said it takes ranges: the stop no longer claims the bytes are
    "kept" (the next run started from zero)."""
    home, dest = tmp_path / "home", tmp_path / "dl"
    url = origin.add("/nr.bin", Resource(data=blob(6 * MiB, seed=9), rate=2 * MiB,
                                         advertise_ranges=False))
    proc, stdout, stderr = _interrupted_get(home, url, dest)
    assert proc.returncode == 1, stderr
    assert "downloaded that the next run starts over: its server has not said it takes " \
           "byte ranges" in stdout, stdout
    assert " kept" not in stdout


def test_run_takes_connections_and_max_bandwidth(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    data = blob(MiB, seed=7)
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec(origin.add("/r.bin", data), dest)])
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "dltui", "run", "--until-idle", "-x", "1",
                           "--max-bandwidth", "512K"], env=_env(home), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began >= 1.5  # 1 MiB at 512 KiB/s takes about two seconds
    assert (dest / "r.bin").read_bytes() == data
    bad = subprocess.run([sys.executable, "-m", "dltui", "run", "-x", "0"], env=_env(home),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "dltui run: error: -x must be at least 1, got 0"


def test_a_taken_name_is_said_not_silently_renamed(tmp_path, origin) -> None:
    """`-o existing.txt` landed as `existing (1).txt` with nothing said."""
    home, dest = tmp_path / "home", tmp_path / "dl"
    dest.mkdir()
    (dest / "existing.txt").write_text("the user's own words\n")
    done = _get(home, origin.add("/e.txt", blob(3000, seed=11)), "-d", str(dest),
                "-o", "existing.txt")
    assert done.returncode == 0, done.stderr
    assert f"{dest / 'existing (1).txt'} (existing.txt was taken by another file, which is " \
           "left as it is)" in done.stdout
    assert (dest / "existing.txt").read_text() == "the user's own words\n"
