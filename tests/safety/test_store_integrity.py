"""A user's edit to a finished file never reaches the store, another copy or a later download."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger, events, jobs, ops
from dltui.model import JobState
from dltui.store import Store, sha256_file
from tests.engine.helpers import blob, fetch_one, sha


def _edit_in_place(path: Path, data: bytes = b"EDITED BY THE USER") -> bytes:
    with open(path, "r+b") as fh:  # as `dd conv=notrunc` would
        fh.write(data)
    return path.read_bytes()


def _quarantined(home: Path) -> list[Path]:
    q = paths.store_dir(home) / "quarantine"
    return sorted(q.iterdir()) if q.exists() else []


def _tampered_events(ledger) -> list:
    return [e for e in events.recent(ledger, limit=1000) if e.kind == "store_tampered"]


def test_edit_does_not_poison_a_later_download_of_the_same_url(ledger, home, dest, origin,
                                                               settings, tmp_path) -> None:
    """A hard-linked store object is now the user's file, writable with the user's mode (it
    was read-only, 0444): the recorded identity, not the mode, keeps an edit from reuse."""
    data = blob(300_000, seed=21)
    url = origin.add("/d.iso", data)
    first = fetch_one(ledger, dest, settings, url)
    mine = Path(first.final_path)
    obj = Store(paths.store_dir(home)).object_path(sha(data))
    # The object is the user's file (one inode, the user's writable mode), so an edit
    # reaches it: the recorded identity must catch that before any reuse.
    assert obj.stat().st_ino == mine.stat().st_ino
    assert stat.S_IMODE(mine.stat().st_mode) & 0o200
    edited = _edit_in_place(mine)

    second = fetch_one(ledger, tmp_path / "other", settings, url)
    assert second.state is JobState.FINALIZED
    assert Path(second.final_path).read_bytes() == data and second.sha256 == sha(data)
    assert second.decision != "cached"  # the tampered object was not reused
    assert mine.read_bytes() == edited  # the user's edit is never reverted
    assert sha256_file(obj) == sha(data)
    assert len(_quarantined(home)) == 1 and len(_tampered_events(ledger)) == 1
    assert len(origin.requests("/d.iso", "GET")) == 2


def test_edit_does_not_poison_another_url_with_the_same_bytes(ledger, home, dest, origin,
                                                              settings, tmp_path) -> None:
    data = blob(200_000, seed=22)
    first = fetch_one(ledger, dest, settings, origin.add("/a.bin", data))
    edited = _edit_in_place(Path(first.final_path))
    second = fetch_one(ledger, tmp_path / "b", settings, origin.add("/mirror/a.bin", data))
    assert Path(second.final_path).read_bytes() == data
    assert Path(first.final_path).read_bytes() == edited
    assert sha256_file(Store(paths.store_dir(home)).object_path(sha(data))) == sha(data)


def test_a_job_with_an_expected_digest_never_finishes_with_edited_bytes(
        ledger, home, dest, origin, settings, tmp_path) -> None:
    data = blob(150_000, seed=23)
    url = origin.add("/s.bin", data)
    first = fetch_one(ledger, dest, settings, url)
    _edit_in_place(Path(first.final_path))
    second = fetch_one(ledger, tmp_path / "x", settings, url, sha256=sha(data))
    assert second.state is JobState.FINALIZED
    assert sha256_file(Path(second.final_path)) == sha(data)


def test_an_edit_that_restores_the_mtime_is_still_caught(ledger, home, dest, origin, settings,
                                                         tmp_path) -> None:
    data = blob(120_000, seed=24)
    url = origin.add("/m.bin", data)
    first = fetch_one(ledger, dest, settings, url)
    mine = Path(first.final_path)
    before = mine.stat()
    _edit_in_place(mine)
    os.utime(mine, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -r, a careful forger
    second = fetch_one(ledger, tmp_path / "y", settings, url)
    assert Path(second.final_path).read_bytes() == data
    assert len(_tampered_events(ledger)) == 1


def test_an_untouched_object_is_reused_without_reading_it_twice(ledger, home, dest, origin,
                                                                settings, tmp_path) -> None:
    data = blob(100_000, seed=25)
    url = origin.add("/u.bin", data)
    fetch_one(ledger, dest, settings, url)
    second = fetch_one(ledger, tmp_path / "z", settings, url)
    assert second.decision == "cached"
    assert len(origin.requests("/u.bin", "GET")) == 1
    assert not _tampered_events(ledger) and not _quarantined(home)


def test_copy_mode_keeps_destinations_independent_of_the_store(ledger, home, dest, origin,
                                                               settings, tmp_path) -> None:
    """A copy costs its own bytes, so only a store budget keeps the object (with the
    default ``store_size`` 0 it is given back once the file is placed)."""
    settings = settings.replace(link_mode="copy", store_size=1 << 20)
    data = blob(100_000, seed=26)
    url = origin.add("/c.bin", data)
    first = fetch_one(ledger, dest, settings, url)
    mine = Path(first.final_path)
    obj = Store(paths.store_dir(home)).object_path(sha(data))
    assert mine.stat().st_ino != obj.stat().st_ino
    assert stat.S_IMODE(mine.stat().st_mode) & 0o200  # the user's copy is writable
    _edit_in_place(mine)
    assert sha256_file(obj) == sha(data)
    second = fetch_one(ledger, tmp_path / "w", settings, url)
    assert second.decision == "cached" and Path(second.final_path).read_bytes() == data


def test_two_destinations_of_one_object_do_not_share_edits(ledger, home, dest, origin,
                                                           settings, tmp_path) -> None:
    data = blob(100_000, seed=27)
    url = origin.add("/t.bin", data)
    a = Path(fetch_one(ledger, dest, settings, url).final_path)
    b = Path(fetch_one(ledger, tmp_path / "two", settings, url).final_path)
    _edit_in_place(a)
    assert b.read_bytes() == data
    _edit_in_place(b, b"SECOND EDIT")
    assert a.read_bytes().startswith(b"EDITED BY THE USER")
    assert jobs.counts(ledger)[JobState.FINALIZED] == 2


@pytest.fixture
def reflink_fs(tmp_path):
    """A loop-mounted XFS with reflinks: destinations there are copy-on-write clones."""
    if os.geteuid() != 0:
        pytest.skip("loop-mounting a filesystem needs root (CI runs as root)")
    mkfs = shutil.which("mkfs.xfs", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if mkfs is None:
        pytest.skip("mkfs.xfs is missing (.ci/run installs xfsprogs)")
    image, mnt = tmp_path / "xfs.img", tmp_path / "xfs"
    with open(image, "wb") as fh:
        fh.truncate(300 << 20)  # sparse: XFS wants 300 MiB, the disk holds only what is used
    subprocess.run([mkfs, "-q", "-m", "reflink=1", str(image)], check=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_reflinked_destinations_are_independent_of_the_store(reflink_fs, origin,
                                                             settings) -> None:
    home, dest = reflink_fs / "home", reflink_fs / "dl"
    dest.mkdir()
    data = blob(3 << 20, seed=28)
    url = origin.add("/r.bin", data)
    with Ledger(home) as led:
        first = fetch_one(led, dest, settings, url)
        [link] = [o for o in ops.for_job(led, first.id) if o.kind == "LINK"]
        assert link.result["how"] == "reflink"
        mine = Path(first.final_path)
        obj = Store(paths.store_dir(home)).object_path(sha(data))
        assert mine.stat().st_ino != obj.stat().st_ino and obj.stat().st_nlink == 1
        assert stat.S_IMODE(mine.stat().st_mode) & 0o200  # the user's file is writable
        _edit_in_place(mine)
        assert sha256_file(obj) == sha(data)  # the clone's edit stays in the clone
        second = fetch_one(led, reflink_fs / "again", settings, url)
        assert second.decision == "cached"  # the object was untouched: reused, not fetched
        assert Path(second.final_path).read_bytes() == data
        assert len(origin.requests("/r.bin", "GET")) == 1
