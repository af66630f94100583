"""The content-addressed store: ``<home>/store/ab/<sha256>``, materialised into destinations.

Stdlib only, so the engine (which fills the store) and the reconciler (which heals destinations
from it) share one implementation.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import threading
import uuid
from pathlib import Path
from typing import Literal

HASH_CHUNK = 1 << 20
Materialized = Literal["hardlink", "copy", "present"]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _DirSync:
    """Group commit for one directory: callers that arrive while an fsync runs share the next.

    Each caller takes a ticket; an fsync that *starts* after a ticket was taken covers it (the
    caller's rename or link happened before it asked). With many small files finishing into one
    destination, N workers then pay for about one fsync per round instead of one each.
    """

    __slots__ = ("cond", "covered", "running", "tickets")

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.tickets = 0
        self.covered = 0
        self.running = False


_DIRS: dict[str, _DirSync] = {}
_DIRS_LOCK = threading.Lock()


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or link in it survives power loss (group-committed)."""
    key = os.fspath(path)
    with _DIRS_LOCK:
        state = _DIRS.get(key)
        if state is None:
            state = _DIRS[key] = _DirSync()
    with state.cond:
        state.tickets += 1
        ticket = state.tickets
        while state.covered < ticket:
            if not state.running:
                state.running = True
                target = state.tickets
                break
            state.cond.wait()
        else:
            return  # an fsync that started after this call covered it
    try:
        _fsync_path(path)
    finally:
        with state.cond:
            state.running = False
            state.covered = max(state.covered, target)
            state.cond.notify_all()


def _temp_beside(path: Path) -> Path:
    # Cut by bytes: 200 non-ASCII characters can be 800 bytes, past every filesystem's 255.
    stem = path.name.encode()[:200].decode("utf-8", errors="ignore")
    return path.with_name(f".{stem}.dltui-{uuid.uuid4().hex[:12]}.tmp")


class Store:
    """Objects named by their SHA-256, sharded by the first two hex digits."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def object_path(self, sha256: str) -> Path:
        """Where the object with this digest lives (whether or not it exists)."""
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """True when the object is present."""
        return self.object_path(sha256).is_file()

    def promote(self, src: Path, sha256: str, *, fsync: bool = True) -> bool:
        """Move a verified file into the store; True if new, False if deduped (``src`` removed).

        The caller has already checked ``src`` hashes to ``sha256``.
        """
        target = self.object_path(sha256)
        if target.is_file():
            src.unlink(missing_ok=True)
            return False
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # link(2) fails on an existing name: of two jobs finishing the same bytes at once,
        # exactly one creates the object and the other counts as a duplicate.
        try:
            os.link(src, target)
        except FileExistsError:
            src.unlink(missing_ok=True)
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            os.replace(src, target)
        else:
            src.unlink()
        if fsync:
            fsync_dir(target.parent)
        return True

    def is_materialized(self, sha256: str, dest: Path) -> bool:
        """True when ``dest`` holds this object: the same inode, or the same bytes."""
        return holds(dest, sha256, self.object_path(sha256))

    def materialize(self, sha256: str, dest: Path, *, fsync: bool = True) -> Materialized:
        """Make ``dest`` hold the object: hardlink, or copy when links cannot cross devices.

        Never overwrites: ``dest`` holding other content raises FileExistsError, so two
        finishing jobs can race for one name and the loser simply picks the next. A copy is
        written to a temp file first, so ``dest`` is never seen half-written.
        """
        obj = self.object_path(sha256)
        if not obj.is_file():
            raise FileNotFoundError(f"store object {sha256} is missing from {self.root}")
        how = place(obj, dest, sha256, keep_source=True, fsync=fsync)
        if how == "taken":
            raise FileExistsError(f"{dest} exists with other content")
        return how


def holds(dest: Path, sha256: str, source: Path | None = None) -> bool:
    """True when ``dest`` (not a symlink) already holds these bytes."""
    try:
        d = os.lstat(dest)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(d.st_mode):
        return False
    if source is not None:
        try:
            s = os.stat(source)
        except FileNotFoundError:
            s = None
        if s is not None and (s.st_dev, s.st_ino) == (d.st_dev, d.st_ino):
            return True
        if s is not None and s.st_size != d.st_size:
            return False
    return sha256_file(dest) == sha256


def place(
    source: Path, dest: Path, sha256: str, *, keep_source: bool, fsync: bool = True
) -> Materialized | Literal["taken"]:
    """Put ``source``'s bytes at ``dest`` without ever clobbering it.

    Hardlinks when possible, else copies through a temp file; the final step is always
    ``link(2)``, which fails on an existing name. Returns ``present`` when ``dest`` already
    holds the bytes, ``taken`` when it holds something else (or is not a regular file).
    Without ``keep_source`` the source is removed once ``dest`` holds the bytes.
    """
    if os.path.lexists(dest):
        if holds(dest, sha256, source):
            if not keep_source:
                source.unlink(missing_ok=True)
            return "present"
        return "taken"
    dest.parent.mkdir(parents=True, exist_ok=True)
    how: Materialized = "hardlink"
    try:
        os.link(source, dest)
    except FileExistsError:
        return place(source, dest, sha256, keep_source=keep_source, fsync=fsync)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        how = "copy"
        tmp = _temp_beside(dest)
        try:
            with open(source, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, HASH_CHUNK)
                out.flush()
                if fsync:
                    os.fsync(out.fileno())
            try:
                os.link(tmp, dest)
            except FileExistsError:
                return place(source, dest, sha256, keep_source=keep_source, fsync=fsync)
        finally:
            tmp.unlink(missing_ok=True)
    if not keep_source:
        source.unlink(missing_ok=True)
    if fsync:
        fsync_dir(dest.parent)
    return how
