"""The content-addressed store: ``<home>/store/ab/<sha256>``, materialised into destinations.

Stdlib only, so the engine (which fills the store) and the reconciler (which heals destinations
from it) share one implementation.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import shutil
import stat
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dltui.errors import PartSwapped
from dltui.model import FileIdentity, LinkMode, PartIdentity

HASH_CHUNK = 1 << 20
Materialized = Literal["reflink", "hardlink", "copy", "present"]
_FICLONE = 0x40049409  # ioctl: share the source's extents copy-on-write (btrfs, XFS, bcachefs)
_NO_REFLINK = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
               errno.EPERM)
OBJECT_MODE = 0o444  # an object no destination shares is read-only: an edit must be deliberate
_UMASK_LOCK = threading.Lock()
#: An interrupted copy's temp file beside a destination: ``.<name>.dltui-<12 hex>.tmp``.
_TEMP_INFIX = ".dltui-"


@functools.cache
def current_umask() -> int:
    """The process's umask, read once (it is the user's choice when dltui starts), without
    changing it where Linux says it (4.7 and later)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere it can only be read by setting it, and set back at once
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _regular(path: Path) -> os.stat_result | None:
    """``lstat`` of a regular file (not following a symlink), or None."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def file_identity(path: Path) -> FileIdentity | None:
    """``stat`` of a regular file (not following a symlink), or None."""
    st = _regular(path)
    if st is None:
        return None
    return FileIdentity(st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def user_mode(fd: int) -> None:
    """Give a file the mode a new file of the user's would have (0666 less the umask), as
    curl, wget and aria2c do."""
    os.fchmod(fd, 0o666 & ~current_umask())


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
    return path.with_name(f".{stem}{_TEMP_INFIX}{uuid.uuid4().hex[:12]}.tmp")


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

    def identity(self, sha256: str) -> FileIdentity | None:
        """The object's identity now, or None when it is absent."""
        return file_identity(self.object_path(sha256))

    def promote(self, src: Path, sha256: str, *, fsync: bool = True,
                keep: FileIdentity | None = None, expect: PartIdentity | None = None) -> bool:
        """Move a verified file into the store; True if new, False if an object with that
        name was already there (kept, or replaced by ``src``).

        The caller has already checked ``src`` hashes to ``sha256``; ``expect`` is the part
        that was hashed (see :func:`vet_part`). An object already stored under the name is
        kept only while it is exactly ``keep``, the identity recorded when dltui last vouched
        for its bytes (``src`` is then dropped); anything else is *replaced*, never trusted:
        it may be a user's edited hard link. Keeping it also keeps the ctime of a destination
        that shares its inode, which is that file's proof of being dltui's. A new object is
        made read-only. With ``fsync`` the file and the object's directory reach the disk.
        """
        target = self.object_path(sha256)
        if keep is not None and file_identity(target) == keep:
            src.unlink(missing_ok=True)
            return False
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with vet_part(src, expect) as (fd, vetted):
            if fsync:
                os.fsync(fd)
            os.fchmod(fd, OBJECT_MODE)
            existed = os.path.lexists(target)
            # rename(2) is atomic: readers see the old object or the new one, whole.
            # Destinations hard-linked to the old inode keep it; only the store's name moves
            # to fresh bytes.
            os.replace(src, target)
            moved_as_vetted(target, vetted, src)
        if fsync:
            fsync_dir(target.parent)
        return not existed

    def check(self, sha256: str, recorded: FileIdentity | None, *,
              rehash: bool = False) -> tuple[FileIdentity | None, Path | None]:
        """Whether the object may be reused: ``(identity, None)`` when its bytes are the
        digest's, ``(None, None)`` when it is absent, ``(None, moved_to)`` when it was
        tampered with and has been quarantined.

        An object whose identity matches ``recorded`` is trusted without reading it (unless
        ``rehash``); any difference (an edit through a hard link, a touch, a replacement) is
        settled by re-hashing it.
        """
        current = self.identity(sha256)
        if current is None:
            return None, None
        if not rehash and recorded is not None and current == recorded:
            return current, None
        try:
            if sha256_file(self.object_path(sha256)) == sha256:
                return self.identity(sha256), None
            return None, self.quarantine(sha256)
        except FileNotFoundError:  # another process quarantined it meanwhile
            return None, None

    def quarantine(self, sha256: str) -> Path:
        """Move a damaged object out of the store (kept for inspection, never reused)."""
        qdir = self.root / "quarantine"
        qdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        moved = qdir / f"{sha256}.{time.time_ns()}"
        os.replace(self.object_path(sha256), moved)
        return moved

    def scan(self) -> Iterator[StoredObject]:
        """Every object in the store now (the quarantine left out), in no set order."""
        try:
            shards = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for shard in shards:
            if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):
                continue
            try:
                entries = list(os.scandir(shard.path))
            except FileNotFoundError:
                continue
            for entry in entries:
                if not _is_digest(entry.name) or entry.name[:2] != shard.name:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield StoredObject(entry.name, st.st_size, st.st_nlink,
                                       alone_bytes(Path(entry.path), st), st.st_mtime)

    def stat_object(self, sha256: str) -> StoredObject | None:
        """One object as :meth:`scan` would show it, or None when it is absent."""
        path = self.object_path(sha256)
        st = _regular(path)
        if st is None:
            return None
        return StoredObject(sha256, st.st_size, st.st_nlink, alone_bytes(path, st), st.st_mtime)

    def drop_quarantined(self, path: str) -> bool:
        """Delete a quarantined file (only a file directly inside the quarantine)."""
        p = Path(path)
        if p.parent != self.root / "quarantine":
            return False
        p.unlink(missing_ok=True)
        return True

    def quarantined(self) -> list[tuple[Path, int]]:
        """The quarantined files with the bytes each holds alone (0 while a user's file
        shares its inode)."""
        qdir = self.root / "quarantine"
        out: list[tuple[Path, int]] = []
        try:
            entries = list(os.scandir(qdir))
        except FileNotFoundError:
            return out
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                out.append((Path(entry.path), alone_bytes(Path(entry.path), st)))
        return out

    def discard(self, sha256: str) -> int | None:
        """Delete the object if it still costs bytes of its own and no one is linking it;
        the bytes freed, or None when it was kept (shared, in use, or gone).

        The check and the unlink happen under an exclusive flock on the object: a placement
        in another process (which links under the same lock) cannot take it meanwhile.
        """
        path = self.object_path(sha256)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, or a symlink planted under the name
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # being linked right now
            st = os.fstat(fd)
            if st.st_nlink != 1 or not stat.S_ISREG(st.st_mode):
                return None
            freed = alone_bytes(path, st, fd=fd)
            try:
                now = os.lstat(path)
            except FileNotFoundError:
                return None
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return None  # promoted anew under the name meanwhile
            os.unlink(path)
            return freed
        finally:
            os.close(fd)

    def is_materialized(self, sha256: str, dest: Path) -> bool:
        """True when ``dest`` holds this object: the same inode, or the same bytes."""
        return holds(dest, sha256, self.object_path(sha256))

    def materialize(self, sha256: str, dest: Path, *, fsync: bool = True,
                    mode: LinkMode = "auto") -> Materialized:
        """Make ``dest`` hold the object (see :func:`place` for ``mode``).

        Never overwrites: ``dest`` holding other content raises FileExistsError, so two
        finishing jobs can race for one name and the loser simply picks the next. A copy is
        written to a temp file first, so ``dest`` is never seen half-written.
        """
        obj = self.object_path(sha256)
        if not obj.is_file():
            raise FileNotFoundError(f"store object {sha256} is missing from {self.root}")
        how = place(obj, dest, sha256, keep_source=True, fsync=fsync, mode=mode)
        if how == "taken":
            raise FileExistsError(f"{dest} exists with other content")
        return how


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object as the store's directory shows it."""

    sha256: str
    size: int
    nlink: int
    #: Bytes only the store holds: 0 while a destination shares the inode (a hard link) or
    #: every extent (a reflink), else what the object occupies.
    cost: int
    mtime: float


def _is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_HEADER = struct.Struct("=QQIIII")  # start, length, flags, mapped, count, reserved
_FIEMAP_EXTENT = struct.Struct("=QQQQQIIII")  # logical, physical, length, 2 reserved, flags, 3
_FIEMAP_EXTENT_LAST = 0x1
_FIEMAP_EXTENT_SHARED = 0x2000
_FIEMAP_BATCH = 64


def unshared_bytes(fd: int) -> int | None:
    """Bytes of the file's extents that no other file shares (FIEMAP), or None where the
    filesystem cannot say (tmpfs, NFS, …)."""
    start, alone = 0, 0
    while True:
        buf = bytearray(_FIEMAP_HEADER.size + _FIEMAP_BATCH * _FIEMAP_EXTENT.size)
        _FIEMAP_HEADER.pack_into(buf, 0, start, 0xFFFFFFFFFFFFFFFF, 0, 0, _FIEMAP_BATCH, 0)
        try:
            fcntl.ioctl(fd, _FS_IOC_FIEMAP, buf)
        except OSError:
            return None
        mapped = _FIEMAP_HEADER.unpack_from(buf, 0)[3]
        if mapped == 0:
            return alone
        last = False
        for i in range(mapped):
            logical, _, length, _, _, flags, *_ = _FIEMAP_EXTENT.unpack_from(
                buf, _FIEMAP_HEADER.size + i * _FIEMAP_EXTENT.size)
            if not flags & _FIEMAP_EXTENT_SHARED:
                alone += length
            start = logical + length
            last = last or bool(flags & _FIEMAP_EXTENT_LAST)
        if last:
            return alone


def alone_bytes(path: Path, st: os.stat_result | None = None, *, fd: int | None = None) -> int:
    """Bytes that deleting this name would give back to its filesystem."""
    if st is None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return 0
    if st.st_nlink > 1:
        return 0
    allocated = min(st.st_size, st.st_blocks * 512) if st.st_blocks else st.st_size
    try:
        own = fd if fd is not None else os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return allocated
    try:
        alone = unshared_bytes(own)
    finally:
        if fd is None:
            os.close(own)
    return allocated if alone is None else min(alone, allocated)


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


#: Devices whose filesystem refused FICLONE once: not asked again by this process.
_NO_CLONE: set[int] = set()
_LINK_FALLBACK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)


def _clone_or_copy(source: Path, fd: int, *, reflink: bool, copy: bool,
                   fsync: bool) -> Materialized | None:
    """Write ``source``'s bytes to the new, empty file open as ``fd``: a reflink when
    ``reflink`` and the filesystem can, else (with ``copy``) a copy; None when neither was
    done."""
    with open(source, "rb") as src:
        how: Materialized | None = None
        if reflink:
            try:
                fcntl.ioctl(fd, _FICLONE, src.fileno())
                how = "reflink"
            except OSError as exc:
                if exc.errno not in _NO_REFLINK:
                    raise
                if exc.errno != errno.EXDEV:  # this filesystem never clones
                    _NO_CLONE.add(os.fstat(src.fileno()).st_dev)
        if how is None and copy:
            with open(fd, "wb", closefd=False) as out:
                shutil.copyfileobj(src, out, HASH_CHUNK)
            how = "copy"
        if how is not None and fsync:
            os.fsync(fd)
    return how


def _via_temp(source: Path, dest: Path, *, reflink: bool, copy: bool,
              fsync: bool) -> Materialized | None:
    """Clone (or copy) ``source`` to a temp file beside ``dest``, then link that into place.

    None when ``reflink`` failed and ``copy`` is off; FileExistsError when ``dest`` was taken
    meanwhile. The temp is flocked from its creation until it is gone, so
    :func:`sweep_temps` never takes one that is being written.
    """
    if reflink and not copy:
        dev = os.stat(source).st_dev
        if dev in _NO_CLONE or os.stat(dest.parent).st_dev != dev:
            return None  # no clone possible here: skip making and removing a temp file
    tmp = _temp_beside(dest)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        how = _clone_or_copy(source, fd, reflink=reflink, copy=copy, fsync=fsync)
        if how is not None:
            os.link(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)
    return how


#: A temp file this old that no one holds was left by a placement that died.
STALE_TEMP_SECONDS = 60.0


def sweep_temps(directory: Path) -> int:
    """Delete dltui's temp files in ``directory`` left by placements that died before
    linking them (named ``.<name>.dltui-<12 hex>.tmp``, not flocked, over a minute old,
    linked nowhere else); the bytes freed."""
    freed = 0
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    cutoff = time.time() - STALE_TEMP_SECONDS
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp") and _TEMP_INFIX in name):
            continue
        tag = name[:-4].rpartition(_TEMP_INFIX)[2]
        if len(tag) != 12 or any(c not in "0123456789abcdef" for c in tag):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a placement is writing it
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_mtime > cutoff:
                continue
            size = alone_bytes(Path(entry.path), st, fd=fd)
            os.unlink(entry.path)
            freed += size
        finally:
            os.close(fd)
    return freed


def _link_object(source: Path, dest: Path) -> bool:
    """Hard-link a store object to ``dest`` unless another destination already shares its
    inode (then False: the caller copies, so one user's edit never reaches another copy).

    The check and the link happen under an exclusive flock on the object, so two processes
    placing the same object cannot both take the one hard link.
    """
    fd = os.open(source, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 1:
            return False
        # The inode becomes the user's file: their mode, writable. The object's recorded
        # identity (refreshed after the link) still catches an edit before any reuse.
        user_mode(fd)
        try:
            os.link(source, dest)
        except OSError:
            os.fchmod(fd, OBJECT_MODE)
            raise
        return True
    finally:
        os.close(fd)  # releases the lock


def _materialize(source: Path, dest: Path, *, keep_source: bool, mode: LinkMode,
                 fsync: bool) -> Materialized:
    if not keep_source:  # the part itself moves into place: its own inode, no store involved
        try:
            os.link(source, dest)
            return "hardlink"
        except OSError as exc:
            if isinstance(exc, FileExistsError) or exc.errno not in _LINK_FALLBACK:
                raise
        return _via_temp(source, dest, reflink=False, copy=True, fsync=fsync) or "copy"
    if mode in ("auto", "reflink"):
        how = _via_temp(source, dest, reflink=True, copy=mode == "reflink", fsync=fsync)
        if how is not None:
            return how
    if mode in ("auto", "hardlink"):
        try:
            if _link_object(source, dest):
                return "hardlink"
        except OSError as exc:
            if isinstance(exc, FileExistsError) or exc.errno not in _LINK_FALLBACK:
                raise
    return _via_temp(source, dest, reflink=False, copy=True, fsync=fsync) or "copy"


def placed_earlier(source: Path, dest: Path) -> Materialized | None:
    """How an interrupted earlier run of a placement put ``dest`` there, when it provably
    did: it is ``source``'s own inode (a hard link, or the part itself), or it shares its
    inode with one of dltui's temp files for that name (the copy was linked into place,
    the temp not yet removed, which this removes now)."""
    try:
        d = os.lstat(dest)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(d.st_mode):
        return None
    try:
        s = os.stat(source)
    except FileNotFoundError:
        s = None
    if s is not None and (s.st_dev, s.st_ino) == (d.st_dev, d.st_ino):
        return "hardlink"
    if d.st_nlink < 2:  # a temp still linked to it would make two
        return None
    prefix = _temp_beside(dest).name.rsplit(_TEMP_INFIX, 1)[0] + _TEMP_INFIX
    with os.scandir(dest.parent) as entries:
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            try:
                t = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if (t.st_dev, t.st_ino) == (d.st_dev, d.st_ino):
                os.unlink(entry.path)
                return "copy"
    return None


@contextlib.contextmanager
def vet_part(path: Path, expect: PartIdentity | None) -> Iterator[tuple[int, os.stat_result]]:
    """Open the part at ``path`` (never through a symlink) and check it is the file that was
    downloaded and hashed: a regular file with ``expect``'s device, inode and size. Yields
    its descriptor and stat, for the caller to rename it by name right after; raises
    :class:`PartSwapped` when anything else lies there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PartSwapped(path, "it is a symlink now") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PartSwapped(path, "it is no regular file now")
        if expect is not None and (st.st_dev, st.st_ino, st.st_size) != \
                (expect.dev, expect.ino, expect.size):
            raise PartSwapped(path, "another file lies at its name now (device, inode or "
                                    "size differ from the part that was downloaded)")
        yield fd, st
    finally:
        os.close(fd)


def moved_as_vetted(moved_to: Path, vetted: os.stat_result, src: Path) -> None:
    """After a rename: the file that moved must be the vetted one. A swap in between (the
    name was re-pointed after the check) leaves another inode there: it is taken back out."""
    st = os.lstat(moved_to)
    if (st.st_dev, st.st_ino) != (vetted.st_dev, vetted.st_ino):
        os.unlink(moved_to)
        raise PartSwapped(src, "another file was swapped in at its name while it was moved")


def place(
    source: Path, dest: Path, sha256: str, *, keep_source: bool, fsync: bool = True,
    mode: LinkMode = "auto",
) -> Materialized | Literal["taken"]:
    """Put ``source``'s bytes at ``dest`` without ever clobbering it.

    ``mode``: ``reflink`` clones copy-on-write (a copy where the filesystem cannot); ``copy``
    copies; ``hardlink`` links, but the store keeps at most one hard link per object, so
    further destinations get copies; ``auto`` tries reflink, then hardlink, then copy.
    Copies go through a temp file; the final step is always ``link(2)``, which fails on an
    existing name. A placed file has the user's mode (0666 less the umask). Returns
    ``present`` when ``dest`` already holds the bytes and was not placed by an earlier run of
    this placement, ``taken`` when it holds something else (or is not a regular file).
    Without ``keep_source`` (the part itself moves into place) the source is removed once
    ``dest`` holds the bytes.
    """
    if os.path.lexists(dest):
        earlier = placed_earlier(source, dest)
        if earlier is not None or holds(dest, sha256, source):
            # Placed by an earlier run of this effect, or found holding the bytes already
            # ("present": the caller adopts it, and it never becomes dltui's to delete).
            if not keep_source:
                source.unlink(missing_ok=True)
            return earlier or "present"
        return "taken"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not keep_source:
        # The part becomes the user's file: give it the mode a file of theirs would have.
        fd = os.open(source, os.O_RDONLY)
        try:
            user_mode(fd)
        finally:
            os.close(fd)
    try:
        how = _materialize(source, dest, keep_source=keep_source, mode=mode, fsync=fsync)
    except FileExistsError:  # another job took the name meanwhile
        return place(source, dest, sha256, keep_source=keep_source, fsync=fsync, mode=mode)
    except OSError as exc:
        if exc.filename == os.fspath(source) and exc.filename2 is None:
            raise  # reading the source failed: that is the file to name
        # Name the destination, not the store object of a failed link, a hidden temp file,
        # or nothing (a failed write).
        raise OSError(exc.errno, exc.strerror, str(dest)) from exc
    if not keep_source:
        source.unlink(missing_ok=True)
    if fsync:
        fsync_dir(dest.parent)
    return how
