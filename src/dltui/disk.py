"""Where dltui's bytes are on disk: free space per filesystem, and what dltui holds there.

Stdlib only (with the store's and the parts' layout), so the engine's free-space guard, the
CLI and the TUI's poll thread count alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dltui import paths
from dltui.files import part_bytes
from dltui.store import Store
from dltui.units import human_size


def existing(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (what `df` would name)."""
    path = existing(Path(os.path.abspath(path)))
    dev = os.stat(path).st_dev
    while path != path.parent and os.stat(path.parent).st_dev == dev:
        path = path.parent
    return path


@dataclass(frozen=True, slots=True)
class Held:
    """What dltui itself occupies on one filesystem: parts of unfinished jobs, and store
    objects no finished file shares."""

    parts: int = 0
    store: int = 0

    @property
    def total(self) -> int:
        """Both together."""
        return self.parts + self.store

    def describe(self) -> str:
        """``; dltui holds 1.2 GiB there (parts …, store …)``, or "" when it holds nothing."""
        if not self.total:
            return ""
        gc = ": `dltui store gc` gives the store's back" if self.store else ""
        return (f"; dltui holds {human_size(self.total, compact=False)} there (parts "
                f"{human_size(self.parts, compact=False)}, store "
                f"{human_size(self.store, compact=False)}{gc})")


def held_on(home: Path, where: Path) -> Held:
    """:class:`Held` on the filesystem of ``where`` (nothing when the home is elsewhere)."""
    try:
        dev = os.stat(existing(where)).st_dev
    except OSError:
        return Held()
    parts = 0
    with contextlib.suppress(OSError):
        if os.stat(paths.parts_dir(home)).st_dev == dev:
            parts = sum(part_bytes(home).values())
    kept = 0
    sdir = paths.store_dir(home)
    with contextlib.suppress(OSError):
        if os.stat(sdir).st_dev == dev:
            kept = store_bytes(sdir)
    return Held(parts, kept)


#: A store is weighed at most this often (seconds): a store of many small files takes an
#: ``lstat`` each, and the TUI surveys the disks every few seconds.
STORE_EVERY = 30.0
_weighed: dict[str, tuple[float, int]] = {}


def store_bytes(root: Path) -> int:
    """Bytes only the store at ``root`` holds (its objects' costs), weighed at most every
    :data:`STORE_EVERY` seconds per process."""
    key = os.fspath(root)
    now = time.monotonic()
    last = _weighed.get(key)
    if last is not None and now - last[0] < STORE_EVERY:
        return last[1]
    total = sum(o.cost for o in Store(root).scan())
    _weighed[key] = (now, total)
    return total


@dataclass(frozen=True, slots=True)
class DiskUse:
    """One filesystem dltui works on now."""

    mount: str
    free: int
    total: int
    #: Bytes dltui holds there: parts of unfinished jobs, store objects no file shares.
    held: Held
    #: Active jobs whose destination is there.
    jobs: int
    #: The dltui home (ledger, parts, store) is there.
    home: bool


def survey(home: Path, destinations: Iterable[tuple[str, int]]) -> tuple[DiskUse, ...]:
    """The home's filesystem and each filesystem of ``destinations`` (directory, active
    jobs), one entry per filesystem, the home's first."""
    found: dict[int, tuple[Path, int, bool]] = {}
    for directory, count, is_home in [(str(home), 0, True),
                                      *((d, n, False) for d, n in destinations)]:
        try:
            where = existing(Path(os.path.abspath(directory)))
            dev = os.stat(where).st_dev
        except OSError:
            continue
        mount, jobs, was_home = found.get(dev, (where, 0, False))
        found[dev] = (mount, jobs + count, was_home or is_home)
    out = []
    for mount, jobs, is_home in found.values():
        try:
            usage = shutil.disk_usage(mount)
            point = mount_point(mount)
        except OSError:
            continue
        out.append(DiskUse(str(point), usage.free, usage.total,
                           held_on(home, point) if is_home else Held(), jobs, is_home))
    return tuple(out)
