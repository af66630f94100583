"""A home dltui trusts: the home, `parts` and `store` are real directories of the user, private
to them; anything else is refused with one line (exit 2) before a byte is read or written.
And a part is stored (or placed) only while it is the very file that was downloaded: one
swapped in under its name is refused, whatever it holds.

A second Unix user, made by the tests as root, owns the foreign home.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from dltui import paths
from dltui.engine import finalize
from dltui.ledger import Ledger, flags, jobs
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV
from tests.engine.helpers import blob, fetch_one, sha

OTHER = "dltui-other"


@pytest.fixture(scope="session")
def other_user() -> pwd.struct_passwd:
    """A second local user (created once, as root)."""
    if os.geteuid() != 0:
        pytest.skip("making a second Unix user needs root (CI runs as root)")
    try:
        return pwd.getpwnam(OTHER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER],
                       check=True)
        return pwd.getpwnam(OTHER)


def _dltui(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "dltui", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _dltui_as(user: pwd.struct_passwd, home: Path, *args: str
              ) -> subprocess.CompletedProcess[str]:
    """`dltui ARGS` run by ``user``: a forked child of this process drops to that user and
    calls the CLI (the interpreter lives where only root may execute it)."""
    from dltui.cli import main

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.close(read)
            os.dup2(write, 2)
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115  # pytest's is captured
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            os.environ.update({**TEST_ENV, "DLTUI_HOME": str(home), "HOME": "/"})
            code = main(list(args))
        except BaseException:
            import traceback
            os.write(2, traceback.format_exc().encode())
        finally:
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 70)
    os.close(write)
    with os.fdopen(read) as fh:
        err = fh.read()
    _, status = os.waitpid(pid, 0)
    return subprocess.CompletedProcess(args, os.waitstatus_to_exitcode(status), "", err)


def _one_line_exit_2(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_home_owned_by_another_user_is_refused(tmp_path, other_user) -> None:
    home = tmp_path / "theirs"
    home.mkdir(mode=0o700)
    os.chown(home, other_user.pw_uid, other_user.pw_gid)
    for args in (["status"], ["add", "http://127.0.0.1:9/x", "-d", str(tmp_path / "dl")]):
        line = _one_line_exit_2(_dltui(home, *args), str(home), f"belongs to {OTHER}, not to root",
                                "use a dltui home of your own")
        assert line.startswith("dltui")
    assert os.listdir(home) == []  # nothing was made in it


def test_a_parts_directory_of_another_user_is_refused(tmp_path, other_user) -> None:
    home = tmp_path / "home"
    with Ledger(home):
        pass
    os.chown(paths.parts_dir(home), other_user.pw_uid, other_user.pw_gid)
    _one_line_exit_2(_dltui(home, "status"), f"{paths.parts_dir(home)} belongs to {OTHER}")


def test_the_other_user_cannot_use_our_home(tmp_path, other_user) -> None:
    """Run as the second user against root's home: refused with one line, not a traceback
    (the path cannot even be examined, or is named as root's)."""
    home = tmp_path / "home"
    with Ledger(home):
        pass
    os.chmod(tmp_path, 0o755)  # they may reach it, and see that it is not theirs
    done = _dltui_as(other_user, home, "status")
    _one_line_exit_2(done, str(home))
    assert "belongs to root" in done.stderr or "cannot be examined" in done.stderr


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_a_home_open_to_others_is_refused_with_the_fix(tmp_path, mode) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, mode)
    _one_line_exit_2(_dltui(home, "status"), f"{home} is open to other users (mode {mode:04o})",
                     f"chmod 700 {home}")
    os.chmod(home, 0o700)  # the fix it names works
    done = _dltui(home, "add", "-q", "http://127.0.0.1:9/x", "-d", str(tmp_path / "dl"))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("which", ["home", "parts", "store"])
def test_a_symlink_for_the_home_parts_or_store_is_refused(tmp_path, which) -> None:
    real, elsewhere = tmp_path / "real", tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if which == "home":
        home = tmp_path / "link"
        real.mkdir(mode=0o700)
        home.symlink_to(real)
        target = home
    else:
        home = real
        with Ledger(home):
            pass
        target = home / which
        target.rmdir()
        target.symlink_to(elsewhere)
    _one_line_exit_2(_dltui(home, "status"), f"{target} is a symlink", "real directories")
    assert os.listdir(elsewhere) == []


def test_a_part_swapped_before_promotion_is_never_stored(ledger, dest, origin, settings,
                                                          monkeypatch) -> None:
    """Between its last byte and its promotion, the part's name is re-pointed at another file
    of the same size (a file full of `E`s): the job fails naming the swap, the store holds
    nothing under the digest of the bytes received, and no file reaches the destination."""
    data = blob(300_000, seed=5)
    url = origin.add("/f.bin", Resource(data=data))
    real_promote = finalize.promote

    def swapping(store, part, sha256, **kw):
        evil = part.with_name("evil")
        evil.write_bytes(b"E" * len(data))
        os.replace(evil, part)  # same size, same name, another inode
        return real_promote(store, part, sha256, **kw)

    monkeypatch.setattr(finalize, "promote", swapping)
    job = fetch_one(ledger, dest, settings.replace(retries=1), url)
    assert job.state is JobState.FAILED
    assert "another file lies at its name now" in job.error, job.error
    store = paths.store_dir(ledger.home)
    assert not any(p.is_file() for p in store.rglob("*")), list(store.rglob("*"))
    assert not dest.exists() or os.listdir(dest) == []


def test_a_part_swapped_before_it_is_placed_without_the_store(ledger, dest, origin, settings,
                                                               monkeypatch) -> None:
    flags.set_flag(ledger, "dedupe", False, by="test")
    data = blob(200_000, seed=6)
    url = origin.add("/g.bin", Resource(data=data))
    real_place = finalize.place_part

    def swapping(part, sha256, dest_dir, name, **kw):
        part.unlink()
        part.symlink_to("/etc/passwd")  # a symlink now: never followed, never placed
        return real_place(part, sha256, dest_dir, name, **kw)

    monkeypatch.setattr(finalize, "place_part", swapping)
    job = fetch_one(ledger, dest, settings.replace(retries=1), url)
    assert job.state is JobState.FAILED and "it is a symlink now" in job.error, job.error
    assert not dest.exists() or os.listdir(dest) == []


def test_an_honest_part_is_promoted_as_before(ledger, dest, origin, settings) -> None:
    """The check costs nothing to a part nobody touched: one file, several segments, a
    small-file batch."""
    urls = [origin.add("/big.bin", Resource(data=blob(6 << 20, seed=7))),
            *(origin.add(f"/s{i}", Resource(data=blob(5000 + i, seed=i))) for i in range(5))]
    jobs.add(ledger, [jobs.JobSpec(u, dest) for u in urls[1:]])
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=4,
                                                   min_segment_size=1 << 20,
                                                   split_below_rate=0), urls[0])
    assert job.state is JobState.FINALIZED and job.sha256 == sha(blob(6 << 20, seed=7))
    assert all(j.state is JobState.FINALIZED for j in jobs.list_jobs(ledger)), \
        [(j.id, j.state, j.error) for j in jobs.list_jobs(ledger)]
