import errno
import hashlib
import os

import pytest

from dltui.store import Store, sha256_file


def _put(store: Store, tmp_path, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    src = tmp_path / f"src-{sha[:8]}"
    src.write_bytes(data)
    assert store.promote(src, sha) is True
    assert not src.exists()
    return sha


def test_sharded_layout_and_dedupe(tmp_path) -> None:
    store = Store(tmp_path / "store")
    sha = _put(store, tmp_path, b"abc")
    assert store.object_path(sha) == tmp_path / "store" / sha[:2] / sha
    dup = tmp_path / "dup"
    dup.write_bytes(b"abc")
    assert store.promote(dup, sha) is False  # already there: the duplicate is dropped
    assert not dup.exists() and store.has(sha)


def test_materialize_hardlinks_once_and_is_idempotent(tmp_path) -> None:
    """Placing again where the object's own inode already is reports ``hardlink`` (placed by
    an earlier run, so provably dltui's), no longer ``present``, which now means a file
    found holding the bytes that the job adopts."""
    store = Store(tmp_path / "store")
    sha = _put(store, tmp_path, b"payload")
    a, b = tmp_path / "out" / "a.bin", tmp_path / "out" / "b.bin"
    assert store.materialize(sha, a, mode="hardlink") == "hardlink"
    # One destination shares the object's inode at most: an edit of one copy never
    # reaches another.
    assert store.materialize(sha, b, mode="hardlink") == "copy"
    assert store.materialize(sha, a, mode="hardlink") == "hardlink"
    theirs = tmp_path / "out" / "theirs.bin"
    theirs.write_bytes(b"payload")  # the user fetched the same bytes themselves
    assert store.materialize(sha, theirs, mode="hardlink") == "present"
    assert os.stat(a).st_ino == os.stat(store.object_path(sha)).st_ino != os.stat(b).st_ino
    assert store.is_materialized(sha, a)
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_materialize_copies_across_devices(tmp_path, monkeypatch) -> None:
    store = Store(tmp_path / "store")
    sha = _put(store, tmp_path, b"x" * 5000)

    real_link = os.link
    store_root = str(tmp_path / "store")

    def no_cross_device_links(src, dst):
        # The store is "another filesystem": links out of it fail, links within a dir work.
        if str(src).startswith(store_root):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", no_cross_device_links)
    dest = tmp_path / "other" / "copy.bin"
    assert store.materialize(sha, dest) == "copy"
    assert sha256_file(dest) == sha
    assert os.stat(dest).st_ino != os.stat(store.object_path(sha)).st_ino
    assert store.is_materialized(sha, dest)
    assert not list(dest.parent.glob(".*tmp"))


def test_materialize_missing_object(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        Store(tmp_path).materialize("0" * 64, tmp_path / "x")


def test_is_materialized_detects_other_content(tmp_path) -> None:
    store = Store(tmp_path / "store")
    sha = _put(store, tmp_path, b"one")
    other = tmp_path / "other"
    other.write_bytes(b"two")
    assert not store.is_materialized(sha, other)


def test_materialize_never_clobbers(tmp_path) -> None:
    store = Store(tmp_path / "store")
    sha = _put(store, tmp_path, b"mine")
    dest = tmp_path / "taken.bin"
    dest.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        store.materialize(sha, dest)
    assert dest.read_bytes() == b"someone else's"
    link = tmp_path / "link.bin"
    link.symlink_to(store.object_path(sha))
    with pytest.raises(FileExistsError):  # a symlink is never taken for our file
        store.materialize(sha, link)


def test_place_part_replay_finds_our_file_by_content(tmp_path) -> None:
    from dltui.engine.finalize import place_part

    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "f.bin").write_bytes(b"the operator's own file")
    data = b"our download"
    sha = hashlib.sha256(data).hexdigest()
    part = tmp_path / "1.part"
    part.write_bytes(data)
    first = place_part(part, sha, dest, "f.bin", fsync=False)
    assert first.dest == str(dest / "f (1).bin") and first.applied
    # A crash after the move: the replay finds the part gone and must find our file, not theirs.
    again = place_part(part, sha, dest, "f.bin", fsync=False)
    assert (again.applied, again.how, again.dest) == (False, "present", str(dest / "f (1).bin"))
    assert again.dest_identity is not None
    assert again.dest_identity.ino == os.stat(dest / "f (1).bin").st_ino


def test_directory_fsyncs_are_group_committed(tmp_path, monkeypatch) -> None:
    import os
    import threading
    import time

    from dltui import store

    calls: list[float] = []
    real = os.fsync

    def slow_fsync(fd: int) -> None:
        calls.append(time.monotonic())
        time.sleep(0.05)  # a disk that takes its time: callers pile up meanwhile
        real(fd)

    monkeypatch.setattr(store.os, "fsync", slow_fsync)
    returned: list[float] = []
    barrier = threading.Barrier(16)

    def caller() -> None:
        barrier.wait()
        store.fsync_dir(tmp_path)
        returned.append(time.monotonic())

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(returned) == 16
    # Everyone is covered by an fsync that started after they asked; far fewer than 16 ran.
    assert 1 <= len(calls) <= 3
    assert max(returned) >= calls[-1]


def test_sweep_takes_only_dead_placements_temp_files(tmp_path) -> None:
    import fcntl
    import time

    from dltui.store import sweep_temps

    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 3600
    dead = out / ".big.iso.dltui-0123456789ab.tmp"  # a copy killed before its link
    dead.write_bytes(b"x" * 10_000)
    busy = out / ".other.bin.dltui-abcdef012345.tmp"  # a copy being written right now
    busy.write_bytes(b"y" * 100)
    fresh = out / ".new.bin.dltui-00000000aaaa.tmp"  # just created, not locked yet
    fresh.write_bytes(b"z")
    linked = out / ".kept.bin.dltui-bbbbbbbbbbbb.tmp"  # linked into place: the file's
    linked.write_bytes(b"k")
    os.link(linked, out / "kept.bin")
    users = out / ".notes.dltui-backup.tmp"  # not dltui's pattern
    users.write_bytes(b"u")
    for p in (dead, busy, linked, users):
        os.utime(p, (old, old))
    fd = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert sweep_temps(out) >= 10_000
    finally:
        os.close(fd)
    assert not dead.exists()
    assert busy.exists() and fresh.exists() and linked.exists() and users.exists()
