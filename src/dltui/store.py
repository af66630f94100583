"""The content-addressed store: ``<home>/store/ab/<sha256>``, materialised into destinations.

Stdlib only, so the engine (which fills the store) and the reconciler (which heals destinations
from it) share one implementation.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
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


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or link in it survives power loss."""
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


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name[:200]}.dltui-{uuid.uuid4().hex[:12]}.tmp")


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
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
        if fsync:
            fsync_dir(target.parent)
        return True

    def is_materialized(self, sha256: str, dest: Path) -> bool:
        """True when ``dest`` holds this object: the same inode, or the same bytes."""
        obj = self.object_path(sha256)
        try:
            d = dest.stat()
            o = obj.stat()
        except FileNotFoundError:
            return dest.is_file() and sha256_file(dest) == sha256
        if (d.st_dev, d.st_ino) == (o.st_dev, o.st_ino):
            return True
        return d.st_size == o.st_size and sha256_file(dest) == sha256

    def materialize(self, sha256: str, dest: Path, *, fsync: bool = True) -> Materialized:
        """Make ``dest`` hold the object: hardlink, or copy when links cannot cross devices.

        Both go through a temp file in ``dest``'s directory and an atomic rename, so ``dest``
        is never seen half-written. The caller picks a ``dest`` that is free or already ours.
        """
        obj = self.object_path(sha256)
        if not obj.is_file():
            raise FileNotFoundError(f"store object {sha256} is missing from {self.root}")
        if dest.exists() and self.is_materialized(sha256, dest):
            return "present"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(dest)
        how: Materialized = "hardlink"
        try:
            try:
                os.link(obj, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                how = "copy"
                with open(obj, "rb") as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, HASH_CHUNK)
                    out.flush()
                    if fsync:
                        os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if fsync:
            fsync_dir(dest.parent)
        return how
