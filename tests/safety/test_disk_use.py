"""Disk you can predict, measured on filesystems the tests mount (statvfs before and after).

One copy per file on one filesystem and across two; deleting gives the bytes back; the
store's budget keeps and evicts; files have the user's mode; a file dltui did not place is
never deleted; a user's deletion stands.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger, events, jobs
from dltui.model import JobState
from dltui.origin import Resource
from dltui.store import sha256_file
from tests.conftest import TEST_ENV, force_state
from tests.engine.helpers import blob, sha
from tests.support.cli import dltui

MiB = 1 << 20
#: What a ledger's own files may grow by during a run (the database, its WAL).
SLACK = 1 * MiB


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _dltui(home: Path, *argv: str, umask: int = 0o022, timeout: float = 90,
           **extra: str) -> subprocess.CompletedProcess[str]:
    return dltui(home, *argv, env=extra, timeout=timeout, umask=umask)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def _store(home: Path, *extra: str, **env: str) -> dict:
    return json.loads(_ok(_dltui(home, "store", "--json", *extra, **env)))


@pytest.fixture
def mount(tmp_path):
    """Mount a fresh filesystem: ``mount("a")`` a 64 MiB tmpfs, ``mount("x", "xfs")`` a
    loop-mounted XFS with reflinks."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root (CI runs as root)")
    mounted: list[Path] = []

    def make(name: str, kind: str = "tmpfs", size: str = "64m") -> Path:
        mnt = tmp_path / name
        mnt.mkdir()
        if kind == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                           check=True)
        else:
            mkfs = shutil.which("mkfs.xfs", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
            if mkfs is None:
                pytest.skip("mkfs.xfs is missing (.ci/run installs xfsprogs)")
            image = tmp_path / f"{name}.img"
            with open(image, "wb") as fh:
                fh.truncate(300 << 20)
            subprocess.run([mkfs, "-q", "-m", "reflink=1", str(image)], check=True)
            subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in reversed(mounted):
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _job(home: Path, job_id: int = 1):
    with Ledger(home) as led:
        return jobs.get(led, job_id)


def test_one_filesystem_holds_each_file_once_and_deleting_frees_it(mount, origin) -> None:
    fs = mount("one")
    home, dest = fs / "home", fs / "dl"
    data = blob(8 * MiB, seed=201)
    url = origin.add("/one.bin", data)
    _ok(_dltui(home, "add", url, "-d", str(dest)))
    before = _used(fs)
    _ok(_dltui(home, "run", "--until-idle"))
    grown = _used(fs) - before
    assert len(data) <= grown < len(data) + SLACK, grown  # not twice: store and file share
    final = Path(_job(home).final_path)
    assert sha256_file(final) == sha(data)
    survey = _store(home)
    assert (survey["objects"], survey["alone_bytes"]) == (1, 0)

    final.unlink()  # the user deletes the download: the store must not keep its bytes
    assert _store(home)["alone_bytes"] >= len(data)
    out = _ok(_dltui(home, "store", "gc", "--dry-run"))
    assert "would delete 1 object" in out and _used(fs) - before >= len(data)
    out = _ok(_dltui(home, "store", "gc"))
    assert "deleted 1 object, freed 8.0 MiB" in out
    assert _used(fs) - before < SLACK
    assert _store(home)["objects"] == 0

    out = _ok(_dltui(home, "reconcile"))
    assert not final.exists()  # the deletion stands
    assert _job(home).final_removed_at is not None and "dest_removed" in out


def test_two_filesystems_keep_nothing_in_the_home(mount, origin) -> None:
    a, b = mount("a"), mount("b")
    home, dest = a / "home", b / "dl"
    data = blob(8 * MiB, seed=202)
    _ok(_dltui(home, "add", origin.add("/two.bin", data), "-d", str(dest)))
    before_a, before_b = _used(a), _used(b)
    _ok(_dltui(home, "run", "--until-idle"))
    assert _used(a) - before_a < SLACK  # the store gave its copy back
    assert len(data) <= _used(b) - before_b < len(data) + SLACK
    assert _store(home)["objects"] == 0
    assert not list(paths.parts_dir(home).iterdir())
    final = Path(_job(home).final_path)
    assert sha256_file(final) == sha(data)

    out = _ok(_dltui(home, "remove", "--delete-files", "1"))
    assert "deleted 1 file" in out and not final.exists()
    assert _used(b) - before_b < SLACK and _used(a) - before_a < SLACK


def test_remove_delete_files_gives_back_the_file_and_its_object(mount, origin) -> None:
    fs = mount("rm")
    home, dest = fs / "home", fs / "dl"
    data = blob(6 * MiB, seed=203)
    _ok(_dltui(home, "add", origin.add("/rm.bin", data), "-d", str(dest)))
    before = _used(fs)
    _ok(_dltui(home, "run", "--until-idle"))
    assert _used(fs) - before >= len(data)
    out = _ok(_dltui(home, "remove", "--delete-files", "1"))
    assert "deleted 1 file; freed 6.0 MiB" in out
    assert _used(fs) - before < SLACK
    assert _store(home)["objects"] == 0


def test_store_size_keeps_the_most_recently_used_and_evicts_the_rest(mount, origin) -> None:
    a, b = mount("a"), mount("b")
    home, dest = a / "home", b / "dl"
    env = {"DLTUI_STORE_SIZE": "10M"}
    blobs = [blob(4 * MiB, seed=210 + i) for i in range(3)]
    urls = [origin.add(f"/c{i}.bin", d) for i, d in enumerate(blobs)]
    _ok(_dltui(home, "add", urls[0], "-d", str(dest), **env))
    before = _used(a)
    for url in urls:  # one after another, so the first is the least recently used
        _ok(_dltui(home, "add", url, "-d", str(dest), **env))
        _ok(_dltui(home, "run", "--until-idle", **env))
    survey = _store(home, **env)
    assert survey["objects"] == 2 and survey["alone_bytes"] == 8 * MiB, survey
    assert 8 * MiB <= _used(a) - before < 8 * MiB + SLACK
    store = paths.store_dir(home)
    assert not (store / sha(blobs[0])[:2] / sha(blobs[0])).exists()
    # A cached copy serves a second destination without a request.
    other = b / "again"
    gets = len(origin.requests("/c2.bin", "GET"))
    _ok(_dltui(home, "get", urls[2], "-d", str(other), **env))
    assert len(origin.requests("/c2.bin", "GET")) == gets
    assert sha256_file(other / "c2.bin") == sha(blobs[2])
    # Without the budget, the same collection gives every cached byte back.
    out = _ok(_dltui(home, "store", "gc"))
    assert "deleted 2 objects, freed 8.0 MiB" in out
    assert _used(a) - before < SLACK


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
@pytest.mark.parametrize("layout", ["one filesystem", "two filesystems", "dedupe off"])
def test_placed_files_have_the_users_mode(mount, origin, umask, mode, layout) -> None:
    a = mount("a")
    b = mount("b") if layout == "two filesystems" else a
    home, dest = a / "home", b / "dl"
    extra = {"DLTUI_FLAG_DEDUPE": "0"} if layout == "dedupe off" else {}
    data = blob(300_000, seed=220)
    url = origin.add(f"/m{umask}-{layout.replace(' ', '-')}.bin", data)
    _ok(_dltui(home, "get", url, "-d", str(dest), umask=umask, **extra))
    final = Path(_job(home).final_path)
    assert stat.S_IMODE(final.stat().st_mode) == mode
    with open(final, "r+b") as fh:  # the user's file: writable like any other
        fh.write(b"mine")
    # The edit never comes back as "cached" bytes for the next download of the URL.
    again = b / "again"
    _ok(_dltui(home, "get", url, "-d", str(again), umask=umask, **extra))
    assert sha256_file(again / final.name) == sha(data)


def test_reflinked_objects_cost_nothing_until_the_file_goes(mount, origin) -> None:
    fs = mount("x", "xfs")
    home, dest = fs / "home", fs / "dl"
    data = blob(8 * MiB, seed=230)
    _ok(_dltui(home, "add", origin.add("/x.bin", data), "-d", str(dest), umask=0o077))
    subprocess.run(["sync"], check=True)
    before = _used(fs)
    _ok(_dltui(home, "run", "--until-idle", umask=0o077))
    subprocess.run(["sync"], check=True)  # XFS allocates delayed extents at writeback
    final = Path(_job(home).final_path)
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    with Ledger(home) as led:
        assert [e.data.get("how") for e in events.for_job(led, 1)
                if e.kind == "state" and e.data.get("to") == "FINALIZED"] == ["reflink"]
    survey = _store(home)
    assert (survey["objects"], survey["alone_bytes"]) == (1, 0)  # every extent shared
    assert _used(fs) - before < len(data) + SLACK
    final.unlink()
    subprocess.run(["sync"], check=True)
    assert _store(home)["alone_bytes"] >= len(data)
    assert "deleted 1 object" in _ok(_dltui(home, "store", "gc"))
    subprocess.run(["sync"], check=True)
    assert _used(fs) - before < SLACK


def test_an_adopted_file_survives_remove_and_gc(mount, origin) -> None:
    fs = mount("adopt")
    home, dest = fs / "home", fs / "dl"
    data = blob(4 * MiB, seed=240)
    dest.mkdir()
    theirs = dest / "fetched.bin"
    theirs.write_bytes(data)  # the user fetched it earlier with curl
    os.chmod(theirs, 0o640)
    ident = theirs.stat()
    _ok(_dltui(home, "flags"))  # the home and its ledger exist before the measure
    before = _used(fs)
    _ok(_dltui(home, "get", origin.add("/fetched.bin", data), "-d", str(dest)))
    job = _job(home)
    assert job.state is JobState.FINALIZED and job.final_path == str(theirs) and job.adopted
    assert _used(fs) - before < SLACK  # nothing placed, nothing stored
    out = _ok(_dltui(home, "remove", "--delete-files", "1"))
    assert f"kept {theirs}: it was there before the job finished (adopted)" in out
    _ok(_dltui(home, "store", "gc"))
    after = theirs.stat()
    assert (after.st_ino, after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == \
        (ident.st_ino, ident.st_mtime_ns, 0o640)
    assert theirs.read_bytes() == data


def test_two_homes_sharing_a_directory_never_delete_each_others_files(mount, origin) -> None:
    fs = mount("shared")
    home_a, home_b, dest = fs / "a", fs / "b", fs / "dl"
    data = blob(2 * MiB, seed=250)
    url = origin.add("/shared.bin", data)
    _ok(_dltui(home_a, "get", url, "-d", str(dest)))
    _ok(_dltui(home_b, "get", url, "-d", str(dest)))
    final = dest / "shared.bin"
    assert _job(home_a).final_path == _job(home_b).final_path == str(final)
    assert _job(home_b).adopted and not _job(home_a).adopted
    assert not (dest / "shared (1).bin").exists()
    out = _ok(_dltui(home_b, "remove", "--delete-files", "1"))
    assert "kept" in out and final.read_bytes() == data
    out = _ok(_dltui(home_a, "remove", "--delete-files", "1"))
    assert "deleted 1 file" in out and not final.exists()


def test_inode_reuse_never_passes_for_proof(mount, origin) -> None:
    fs = mount("reuse")
    home, dest = fs / "home", fs / "dl"
    data = blob(1 * MiB, seed=260)
    _ok(_dltui(home, "get", origin.add("/same.bin", data), "-d", str(dest), "-o", "a.bin"))
    (dest / "a.bin").unlink()
    _ok(_dltui(home, "get", origin.add("/same.bin?x=2", data), "-d", str(dest), "-o", "a.bin"))
    second = _job(home, 2)
    mine = Path(second.final_path)
    assert mine == dest / "a.bin"
    st = mine.stat()

    def claim(job_id: int, ctime_ns: int) -> None:
        with Ledger(home) as led:
            force_state(led, job_id, JobState.FINALIZED, final_path=str(mine),
                        final_dev=st.st_dev, final_ino=st.st_ino, final_size=st.st_size,
                        final_mtime_ns=st.st_mtime_ns, final_ctime_ns=ctime_ns)

    # Job 1 recorded an earlier holder of the same inode: everything but the ctime agrees
    # (the store hands the inode on with its mtime; any link moves the ctime).
    claim(1, st.st_ctime_ns - 1)
    out = _ok(_dltui(home, "remove", "--delete-files", "1"))
    assert f"kept {mine}" in out and mine.read_bytes() == data
    # Even an identical record is no proof while another job claims the inode.
    _ok(_dltui(home, "get", origin.add("/same.bin?x=3", data), "-d", str(dest), "-o", "c.bin"))
    claim(3, mine.stat().st_ctime_ns)
    out = _ok(_dltui(home, "remove", "--delete-files", "3"))
    assert f"kept {mine}" in out and mine.read_bytes() == data
    out = _ok(_dltui(home, "remove", "--delete-files", "2"))
    assert "deleted 1 file" in out and not mine.exists()


def test_a_deleted_file_stays_deleted_until_asked_for_again(mount, origin) -> None:
    fs = mount("again")
    home, dest = fs / "home", fs / "dl"
    data = blob(1 * MiB, seed=270)
    url = origin.add("/again.bin", data)
    _ok(_dltui(home, "get", url, "-d", str(dest)))
    final = dest / "again.bin"
    out = _ok(_dltui(home, "get", url, "-d", str(dest)))
    assert "(already downloaded)" in out and len(origin.requests("/again.bin", "GET")) == 1
    final.unlink()
    _ok(_dltui(home, "reconcile"))
    _ok(_dltui(home, "run", "--until-idle"))
    assert not final.exists()  # neither the reconciler nor a pool brings it back
    origin.add("/again.bin", data[::-1])  # the server's copy changed meanwhile
    out = _ok(_dltui(home, "get", url, "-d", str(dest)))
    assert len(origin.requests("/again.bin", "GET")) == 2  # asked the server, not the store
    assert final.read_bytes() == data[::-1] and "already" not in out


def test_a_reboot_heals_a_file_it_may_have_cost(mount, origin) -> None:
    fs = mount("boot")
    home, dest = fs / "home", fs / "dl"
    data = blob(1 * MiB, seed=280)
    url = origin.add("/boot.bin", data)
    _ok(_dltui(home, "get", url, "-d", str(dest)))
    final = dest / "boot.bin"
    final.unlink()
    with Ledger(home) as led:  # finished without fsync in a boot that is over
        force_state(led, 1, JobState.FINALIZED, boot_id="an-earlier-boot", bytes_durable=0)
    out = _ok(_dltui(home, "reconcile"))
    assert "requeued" in out or "relinked" in out
    _ok(_dltui(home, "run", "--until-idle"))
    assert final.read_bytes() == data


@pytest.mark.timeout(240)
def test_gc_racing_running_jobs_with_sigkills_loses_nothing(mount, origin) -> None:
    a, b = mount("a", size="128m"), mount("b", size="128m")
    home, dest = a / "home", b / "dl"
    rnd = random.Random(290)
    blobs = {f"/g{i:02}.bin": blob(1 * MiB + i * 4096, seed=290 + i) for i in range(12)}
    urls = [origin.add(p, Resource(data=d, rate=256 << 10)) for p, d in blobs.items()]
    # Same bytes under another URL: dedupe and `cached` decisions meet the collector too.
    urls.append(origin.add("/dup.bin", Resource(data=blobs["/g03.bin"], rate=256 << 10)))
    _ok(_dltui(home, "add", *urls, "-d", str(dest), "-q"))
    before_a = _used(a)
    # One connection per file at 256 KiB/s: about 16 s of work, long enough to kill.
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_CONNECTIONS_PER_FILE": "1"}
    runner = subprocess.Popen([sys.executable, "-m", "dltui", "run", "--until-idle", "-w", "3"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_runner = False
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        gc = subprocess.Popen([sys.executable, "-m", "dltui", "store", "gc"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.05, 0.4))
        if gc.poll() is None:
            gc.send_signal(signal.SIGKILL)
        gc.wait()
        if not killed_runner and time.monotonic() > deadline - 145:
            runner.send_signal(signal.SIGKILL)  # the worker dies mid-way: FINALIZE, LINK, …
            runner.wait()
            killed_runner = True
            runner = subprocess.Popen(
                [sys.executable, "-m", "dltui", "run", "--until-idle", "-w", "3"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if runner.poll() is not None:
            break
    assert runner.wait(timeout=120) == 0, runner.stderr.read().decode() if runner.stderr else ""
    assert killed_runner
    with Ledger(home) as led:
        done = jobs.list_jobs(led)
    assert [j.state for j in done] == [JobState.FINALIZED] * len(urls)
    for job in done:
        path = job.url.split("127.0.0.1", 1)[1].split("/", 1)[1]
        want = blobs.get(f"/{path}", blobs["/g03.bin"])
        assert sha256_file(Path(job.final_path)) == sha(want), job
    out = _ok(_dltui(home, "check"))
    assert "OK" in out, out
    _ok(_dltui(home, "store", "gc"))
    assert _store(home)["objects"] == 0
    assert not list(paths.parts_dir(home).iterdir())
    assert _used(a) - before_a < SLACK


def test_what_dltui_holds_is_in_sight(mount, origin) -> None:
    """The free-space error, `status`, `status --json` and the disk survey (the TUI's
    header and hosts screen) all count dltui's own bytes: parts and store objects."""
    from dltui.disk import survey

    a, b = mount("a"), mount("b")
    home, dest = a / "home", b / "dl"
    env = {"DLTUI_STORE_SIZE": "32M", "DLTUI_RETRIES": "1"}
    cached = blob(8 * MiB, seed=300)
    _ok(_dltui(home, "get", origin.add("/kept.bin", cached), "-d", str(dest), **env))
    half = blob(6 * MiB, seed=301)  # cut off after 3 MiB, every time: a part stays
    cut = origin.add("/cut.bin", Resource(data=half, drop_after=3 * MiB, drop_times=99))
    assert _dltui(home, "get", cut, "-d", str(dest), "-x", "1", **env).returncode == 1
    part = _job(home, 2)
    assert part.state is JobState.FAILED and part.bytes_committed > 0

    status = _ok(_dltui(home, "status"))
    assert "parts: 1 unfinished job hold " in status and str(paths.parts_dir(home)) in status
    rows = {r["id"]: r for r in map(json.loads, _ok(_dltui(home, "status", "--json"))
                                    .splitlines())}
    assert rows[2]["part_bytes"] >= part.bytes_committed and rows[1]["part_bytes"] == 0

    [home_fs] = [d for d in survey(home, [(str(dest), 1)]) if d.home]
    assert home_fs.mount == str(a) and home_fs.held.store >= len(cached)
    assert home_fs.held.parts >= part.bytes_committed
    assert abs(home_fs.free - os.statvfs(a).f_bavail * os.statvfs(a).f_frsize) < MiB

    # A download that cannot fit names the filesystem and what dltui holds there.
    huge = origin.add("/huge.bin", bytes(60 * MiB))
    failed = _dltui(home, "get", huge, "-d", str(a / "dl"), **env)
    assert failed.returncode == 1
    error = _job(home, 3).error
    assert error.startswith(f"not enough free space on {a}:"), error
    assert "dltui holds" in error and "store 8.0 MiB" in error and "`dltui store gc`" in error
