"""Full disks and damaged or deleted ledgers: ordinary failures, one line, never a hang."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger, jobs
from dltui.model import JobState
from dltui.origin import Resource
from dltui.store import sha256_file
from tests.conftest import TEST_ENV
from tests.engine.helpers import blob, sha

MiB = 1 << 20


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), **extra}


def _dltui(home: Path, *argv: str, timeout: float = 60, **extra: str):
    return subprocess.run([sys.executable, "-m", "dltui", *argv], env=_env(home, **extra),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def small_fs(tmp_path):
    """A 32 MiB tmpfs: a real filesystem that fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# guard: checkpoints come often, so the free-space guard stops the download first;
# enospc: no checkpoint before the disk is full, so a write(2) meets ENOSPC itself.
CASES = {"guard": {"DLTUI_MIN_FREE": "4M"},
         "enospc": {"DLTUI_MIN_FREE": "0", "DLTUI_CHECKPOINT_INTERVAL": "60",
                    "DLTUI_CHECKPOINT_BYTES": "64M"}}


@pytest.mark.parametrize("case", list(CASES))
def test_a_full_disk_fails_the_job_and_retry_resumes(small_fs, origin, case) -> None:
    home, dest = small_fs / "home", small_fs / "dl"
    data = blob(16 * MiB, seed=41)
    # No Content-Length: nothing can tell before the body that it will not fit.
    url = origin.add("/big.bin", Resource(data=data, chunked=True))
    filler = small_fs / "filler"
    filler.write_bytes(bytes(20 * MiB))
    assert _dltui(home, "add", url, "-d", str(dest)).returncode == 0
    proc = _dltui(home, "run", "--until-idle", DLTUI_FLAG_BATCH="0", **CASES[case])
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    with Ledger(home) as led:
        job = jobs.get(led, 1)
    assert job.state is JobState.FAILED
    assert job.error.startswith(f"no space on {small_fs}: need"), job.error
    assert "have" in job.error
    committed = job.bytes_committed
    if case == "enospc":  # the unrecorded bytes were given back to the filesystem
        part = paths.part_path(home, 1)
        assert (part.stat().st_size if part.exists() else 0) == committed
    filler.unlink()  # the operator frees space
    assert _dltui(home, "retry", "1").returncode == 0
    proc = _dltui(home, "run", "--until-idle", **CASES[case])
    assert proc.returncode == 0, proc.stderr
    with Ledger(home) as led:
        job = jobs.get(led, 1)
    assert job.state is JobState.FINALIZED and job.sha256 == sha(data)
    assert Path(job.final_path).read_bytes() == data
    gets = origin.requests("/big.bin", "GET")
    if committed and "range" in gets[-1].headers:
        assert gets[-1].headers["range"] == f"bytes={committed}-"


def _damage(path: Path) -> None:
    """Overwrite the b-tree header of every page but the first (the file header is kept)."""
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as fh:
        for page in range(1, pages):
            fh.seek(page * 4096)
            fh.write(b"\xde\xad\xbe\xef" * 4)


def _ledger_with_jobs(home: Path, dest: Path, n: int = 200) -> None:
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec(f"http://127.0.0.1:9/{i}.bin", dest) for i in range(n)])
        led.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_a_damaged_ledger_is_one_line_for_every_command(tmp_path) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    _ledger_with_jobs(home, dest)
    _damage(paths.ledger_path(home))
    for argv in (["status"], ["status", "--json"], ["run", "--until-idle"], ["pause", "1"],
                 ["reconcile"], ["check"]):
        proc = _dltui(home, *argv, timeout=30)
        assert "Traceback" not in proc.stderr, (argv, proc.stderr)
        assert proc.returncode in (1, 2), (argv, proc.returncode)
        if argv != ["check"]:
            assert proc.returncode == 2
            assert proc.stderr.count("\n") == 1, proc.stderr
            assert f"ledger {paths.ledger_path(home)} is damaged" in proc.stderr


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_ledger_deleted_or_replaced_under_a_run_stops_it(tmp_path, origin, how) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    url = origin.add("/slow.bin", Resource(data=blob(4 * MiB), rate=256 * 1024))
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec(url, dest)])
    proc = subprocess.Popen([sys.executable, "-m", "dltui", "run", "--until-idle"],
                            env=_env(home), stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    ledger = paths.ledger_path(home)
    if how == "deleted":
        ledger.unlink()
    else:
        shutil.copy(ledger, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", ledger)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert f"ledger {ledger} was deleted or replaced while running" in err
    assert "Traceback" not in err
    if how == "deleted":
        status = _dltui(home, "status")
        assert status.returncode == 2 and f"no ledger at {ledger}" in status.stderr


def test_check_reports_problems_and_changes_nothing(ledger, home, dest, origin, settings,
                                                    run) -> None:
    """A removed download is a note (``file_removed``: the user's deletion stands), no
    longer the problem ``file_missing``; the damaged object is still a problem."""
    from tests.conftest import dump
    from tests.engine.helpers import fetch_one

    data = blob(100_000, seed=42)
    job = fetch_one(ledger, dest, settings, origin.add("/k.bin", data))
    code, out, _ = run("check", "--deep")
    assert code == 0 and "check: ledger and store OK" in out
    Path(job.final_path).unlink()
    obj = paths.store_dir(home) / job.sha256[:2] / job.sha256
    os.chmod(obj, 0o644)
    with open(obj, "r+b") as fh:
        fh.write(b"rot")
    before = dump(paths.ledger_path(home))
    code, out, _ = run("check")
    assert code == 1 and "note: file_removed" in out and "object_changed" in out
    assert "1 problem(s), 1 note" in out
    code, out, _ = run("check", "--deep", "--json")
    found = {json.loads(line)["kind"]: json.loads(line)["note"] for line in out.splitlines()}
    assert code == 1 and found["file_removed"] is True and found["object_corrupt"] is False
    assert dump(paths.ledger_path(home)) == before
    assert obj.exists() and not Path(job.final_path).exists()


def test_a_full_disk_in_the_small_file_lane_fails_jobs_and_retry_heals(small_fs,
                                                                       origin) -> None:
    home, dest = small_fs / "home", small_fs / "dl"
    urls = [origin.add(f"/s{i:02}.bin", blob(256 * 1024, seed=100 + i)) for i in range(40)]
    assert _dltui(home, "add", *urls, "-d", str(dest)).returncode == 0
    # Fill the disk to the last byte: only the ledger's ballast stands between it and ENOSPC.
    free = shutil.disk_usage(small_fs).free
    (small_fs / "filler").write_bytes(bytes(free - 6 * MiB))
    # One process: with two, the second may find even the ballast spent and stop on a full
    # ledger (exit 2, one line: tested on its own), which is not this test's subject.
    proc = _dltui(home, "run", "--until-idle", "-w", "2", "-p", "1", DLTUI_MIN_FREE="0")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    with Ledger(home) as led:
        states = {j.state for j in jobs.list_jobs(led)}
        failed = jobs.list_jobs(led, [JobState.FAILED])
    assert states <= {JobState.FINALIZED, JobState.FAILED}, states  # none left active
    assert failed
    assert all(("no space on" in j.error or "not enough free space" in j.error)
               for j in failed), [j.error for j in failed]
    (small_fs / "filler").unlink()
    assert _dltui(home, "retry", "--all").returncode == 0
    assert _dltui(home, "run", "--until-idle").returncode == 0
    with Ledger(home) as led:
        assert {j.state for j in jobs.list_jobs(led)} == {JobState.FINALIZED}
        for job in jobs.list_jobs(led):
            assert sha256_file(Path(job.final_path)) == job.sha256


def test_room_the_ledger_gave_up_is_never_given_to_a_download(small_fs, settings,
                                                             tmp_path) -> None:
    from dltui.config import RESERVE_BYTES
    from dltui.engine import quota
    from dltui.errors import QuotaError

    home = small_fs / "home"
    Ledger(home).close()
    reserve = paths.reserve_path(home)
    parts = paths.parts_dir(home)
    free = shutil.disk_usage(small_fs).free
    (small_fs / "filler").write_bytes(bytes(free - 5 * MiB))
    quota.check_streaming(parts, settings, reserve)  # 5 MiB free above a floor of 4
    (small_fs / "more").write_bytes(bytes(4 * MiB))
    with pytest.raises(QuotaError, match="no space on"):  # 1 MiB free: downloads stop
        quota.check_streaming(parts, settings, reserve)
    assert Ledger(home).release_reserve()
    # The ballast went so the ledger can record the failures: its 4 MiB are the ledger's, so
    # with ~5 MiB free again no download may go on, nor start, on this filesystem.
    assert shutil.disk_usage(small_fs).free > RESERVE_BYTES  # above the floor of 4 MiB
    with pytest.raises(QuotaError, match="no space on"):
        quota.check_streaming(parts, settings, reserve)
    with pytest.raises(QuotaError, match="not enough free space"):
        quota.check_free_space([parts], MiB, settings, reserve)
    elsewhere = tmp_path / "other-fs"  # another filesystem keeps its own floor only
    elsewhere.mkdir()
    quota.check_free_space([elsewhere], MiB, settings, reserve)
    (small_fs / "more").unlink()
    Ledger(home).close()  # opening the ledger again makes a new ballast when there is room
    assert reserve.exists()
    quota.check_streaming(parts, settings, reserve)


def test_the_ledger_reserve_records_a_failure_on_a_disk_with_no_byte_left(small_fs,
                                                                           settings) -> None:
    from dltui.errors import QuotaError
    from dltui.ledger import leases
    from dltui.worker import JobRun, WorkerPool

    home = small_fs / "home"
    led = Ledger(home)
    reserve = paths.reserve_path(home)
    assert reserve.stat().st_size == 4 * MiB
    jobs.add(led, [jobs.JobSpec("http://127.0.0.1:9/x.bin", small_fs / "dl")])
    owner = leases.owner_id()
    [job] = leases.lease_batch(led, owner, 60.0, 1)
    pool = WorkerPool(led, settings, workers=1)
    try:
        # Every last byte.
        with open(small_fs / "filler", "wb") as fh, pytest.raises(OSError):
            while True:
                fh.write(bytes(1 << 16))
                fh.flush()
        assert shutil.disk_usage(small_fs).free < 64 * 1024
        JobRun(pool, job, owner).fail(QuotaError("no space on the test filesystem"))
    finally:
        pool.client.close()
    assert jobs.get(led, job.id).state is JobState.FAILED
    assert not reserve.exists()
    led.close()
    (small_fs / "filler").unlink()
    with Ledger(home):  # the next start makes the reserve again
        assert reserve.stat().st_size == 4 * MiB


def test_a_read_only_destination_fails_the_job_naming_it(small_fs, tmp_path, origin) -> None:
    home, dest = tmp_path / "home", small_fs / "ro"
    dest.mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    url = origin.add("/ro.bin", blob(300_000, seed=43))
    assert _dltui(home, "add", url, "-d", str(dest)).returncode == 0
    proc = _dltui(home, "run", "--until-idle")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    with Ledger(home) as led:
        job = jobs.get(led, 1)
    assert job.state is JobState.FAILED
    assert job.error.startswith(f"cannot write {dest / 'ro.bin'}: Read-only file system"), \
        job.error
    assert "internal error" not in job.error


def test_a_full_destination_names_its_filesystem(small_fs, tmp_path, origin) -> None:
    home, dest = tmp_path / "home", small_fs / "dl"  # the store is elsewhere: a copy
    # No length: the start check passes, the copy into the destination meets ENOSPC.
    url = origin.add("/big.bin", Resource(data=blob(8 * MiB, seed=44), chunked=True))
    assert _dltui(home, "add", url, "-d", str(dest)).returncode == 0
    free = shutil.disk_usage(small_fs).free
    (small_fs / "filler").write_bytes(bytes(free - 6 * MiB))
    proc = _dltui(home, "run", "--until-idle")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    with Ledger(home) as led:
        job = jobs.get(led, 1)
    assert job.state is JobState.FAILED
    assert job.error.startswith(f"no space on {small_fs}: need"), job.error
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]  # no temp left behind


def test_opening_the_ledger_again_keeps_this_process_locks(tmp_path) -> None:
    """Closing any descriptor of a file drops all of a process's POSIX locks on it: a second
    Ledger in the same process must never open the database file itself, or another process
    takes itself for the last user and removes the WAL index under our feet."""
    home = tmp_path / "home"
    first = Ledger(home)
    jobs.add(first, [jobs.JobSpec("http://127.0.0.1:9/a", tmp_path / "dl")])
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.tui.lock_holder", str(paths.ledger_path(home)), "0.5"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    Ledger(home, migrate=False).close()  # as the TUI's threads and workers do
    holder.wait(timeout=30)
    assert paths.ledger_path(home).with_name("ledger.db-shm").exists()
    assert jobs.get(first, 1).state is JobState.PLANNED
    first.close()


def test_a_ledger_setting_naming_someone_elses_file_is_never_advised_to_be_moved(
        tmp_path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    proc = _dltui(tmp_path / "home", "status", DLTUI_LEDGER=str(passwd))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{passwd} is not a dltui ledger (not an SQLite database)" in proc.stderr
    assert "mv " not in proc.stderr and passwd.read_text().startswith("root:")


def test_a_home_on_a_read_only_filesystem_can_still_be_read(small_fs, tmp_path) -> None:
    """`status`, `status --json` and `check` read a ledger whose filesystem became read-only
    (they failed with "unable to open database file"); `add` and `run` say in one line why
    they cannot write, exit 2, and the ledger is as it was."""
    home = small_fs / "home"
    assert _dltui(home, "add", "-q", "http://127.0.0.1:9/a.iso", "-d", str(tmp_path)
                  ).returncode == 0
    before = paths.ledger_path(home).read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    status = _dltui(home, "status")
    assert status.returncode == 0 and "a.iso" in status.stdout, status.stderr
    assert json.loads(_dltui(home, "status", "--json").stdout)["state"] == "PLANNED"
    check = _dltui(home, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    for argv in (["add", "http://127.0.0.1:9/b.iso", "-d", str(tmp_path)],
                 ["run", "--until-idle"], ["pause", "1"]):
        done = _dltui(home, *argv)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert "is read-only (its filesystem or directory is)" in line, line
    assert paths.ledger_path(home).read_bytes() == before


@pytest.mark.parametrize("shm", [True, False])
def test_a_read_only_home_with_writes_left_in_the_wal(small_fs, tmp_path, shm) -> None:
    """A writer killed before its last writes were folded into the database, then the
    filesystem made read-only: with the WAL's index (`-shm`) beside it SQLite reads those
    writes; without it they cannot be read, and one line says what to do."""
    home = small_fs / "home"
    assert _dltui(home, "add", "-q", "http://127.0.0.1:9/a.iso", "-d", str(tmp_path)
                  ).returncode == 0
    db = paths.ledger_path(home)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('PRAGMA wal_autocheckpoint=0'); "
         "c.execute(\"UPDATE jobs SET error = 'left in the WAL'\"); c.commit(); "
         "print('ok', flush=True); time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ok"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert Path(f"{db}-wal").stat().st_size > 0
    if not shm:
        Path(f"{db}-shm").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    done = _dltui(home, "status")
    if shm:
        assert done.returncode == 0 and "[left in the WAL]" in done.stdout, done.stderr
        return
    assert done.returncode == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "its last writes are still in" in line and "make it writable once" in line, line
