"""A presigned URL signed anew names the same object: its part carries over, no byte twice."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

from dltui.ledger import Ledger, jobs
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV
from tests.engine.helpers import blob, sha
from tests.support.cli import dltui

MiB = 1 << 20
SIGNED = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=900&X-Amz-Signature="


def _dltui(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return dltui(home, *args, env=extra, timeout=60)


def _half_done(tmp_path, origin, path: str, data: bytes) -> tuple[Path, Path, str]:
    """Job 1 under signature `aaaa` failed half way (its server cut it off, one try), its
    part kept."""
    home, dest = tmp_path / "home", tmp_path / "dl"
    origin.add(path, Resource(data=data, drop_after=len(data) // 2,
                              head_status=403, ignore_if_range=True))
    first = origin.url(path + SIGNED + "aaaa")
    assert _dltui(home, "add", first, "-d", str(dest)).returncode == 0
    failed = _dltui(home, "run", "--until-idle", DLTUI_RETRIES="1", DLTUI_FLAG_BATCH="0",
                    DLTUI_CONNECTIONS_PER_FILE="1")
    assert failed.returncode == 1, failed.stderr
    with Ledger(home) as led:
        job = jobs.get(led, 1)
    assert job.state is JobState.FAILED and job.bytes_committed >= len(data) // 4
    return home, dest, first


def test_add_of_a_resigned_url_says_so_and_resume_from_carries_the_part(tmp_path,
                                                                        origin) -> None:
    data = blob(4 * MiB, seed=500)
    home, dest, _ = _half_done(tmp_path, origin, "/bucket/obj.bin", data)
    with Ledger(home) as led:
        kept = jobs.get(led, 1).bytes_committed
    again = origin.url("/bucket/obj.bin" + SIGNED + "bbbb")
    added = _dltui(home, "add", again, "-d", str(dest))
    assert added.returncode == 0
    assert ("note: job 2 is job 1's object signed anew, and job 1 has "
            in added.stderr) and "--resume-from 1" in added.stderr
    carried = _dltui(home, "add", again, "-d", str(dest), "--resume-from", "1")
    assert carried.returncode == 0, carried.stderr
    assert carried.stdout.startswith("job 1 carries on from its ")
    with Ledger(home) as led:
        assert [j.id for j in jobs.list_jobs(led)] == [1]  # the empty twin is gone
        job = jobs.get(led, 1)
        assert job.state is JobState.PLANNED and job.url.endswith("bbbb")
        assert job.bytes_committed == kept
    gets_before = len(origin.requests("/bucket/obj.bin", "GET"))
    done = _dltui(home, "run", "--until-idle", DLTUI_CONNECTIONS_PER_FILE="1")
    assert done.returncode == 0, done.stderr
    with Ledger(home) as led:
        job = jobs.get(led, 1)
    assert job.state is JobState.FINALIZED and job.sha256 == sha(data)
    after = origin.requests("/bucket/obj.bin", "GET")[gets_before:]
    [resumed] = after
    assert resumed.headers["range"].startswith("bytes=") and resumed.status == 206
    start = int(resumed.headers["range"][6:].split("-")[0])
    assert start >= kept - 64 * 1024  # only the overlap is fetched twice
    assert "bbbb" in resumed.path


def test_resume_from_refuses_what_is_not_the_same_object(tmp_path, origin) -> None:
    data = blob(2 * MiB, seed=501)
    home, dest, _ = _half_done(tmp_path, origin, "/bucket/a.bin", data)
    other = origin.add("/bucket/b.bin", data)
    for url, words in (
            (other + SIGNED + "cccc", "job 1 downloads another object"),
            (origin.url("/bucket/a.bin"), "is not a presigned URL")):
        proc = _dltui(home, "add", url, "-d", str(dest), "--resume-from", "1")
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = _dltui(home, "add", origin.url("/bucket/a.bin" + SIGNED + "dddd"), "-d",
                  str(tmp_path / "elsewhere"), "--resume-from", "1")
    assert proc.returncode == 2 and "another file" in proc.stderr
    with Ledger(home) as led:
        assert [j.id for j in jobs.list_jobs(led)] == [1]  # nothing changed
        assert jobs.get(led, 1).url.endswith("aaaa")


def test_on_a_terminal_add_offers_the_carry_over(tmp_path, origin) -> None:
    data = blob(2 * MiB, seed=502)
    home, dest, _ = _half_done(tmp_path, origin, "/bucket/t.bin", data)
    again = origin.url("/bucket/t.bin" + SIGNED + "eeee")
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    pid, fd = pty.fork()
    if pid == 0:  # the child: dltui on a real terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "dltui", "add", again, "-d",
                                    str(dest)], env)
    seen = b""
    deadline = time.monotonic() + 30
    while b"[Y/n]" not in seen and time.monotonic() < deadline:
        seen += os.read(fd, 4096)
    assert b"Carry that over instead of a new download? [Y/n]" in seen, seen
    os.write(fd, b"y\n")
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal closed with the child
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"job 1 carries on from its" in seen
    with Ledger(home) as led:
        assert [j.id for j in jobs.list_jobs(led)] == [1]
        assert jobs.get(led, 1).url.endswith("eeee")
