"""The free-space guard: a download does not start unless it can finish."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dltui.config import RESERVE_BYTES, Settings, format_size
from dltui.errors import QuotaError


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (what `df` would name)."""
    path = _existing(Path(os.path.abspath(path)))
    dev = os.stat(path).st_dev
    while path != path.parent and os.stat(path.parent).st_dev == dev:
        path = path.parent
    return path


def no_space(directory: Path, need: int | None) -> QuotaError:
    """The error for a full filesystem: which one, what was needed, what is left."""
    where = mount_point(directory)
    have = shutil.disk_usage(where).free
    wanted = "more" if need is None else f"{need} bytes"
    return QuotaError(f"no space on {where}: need {wanted}, have {have} bytes free; free "
                      "space there, then retry the job (it resumes)")


def floor(settings: Settings) -> int:
    """Free space never given to a download: ``min_free``, at least the ledger's reserve."""
    return max(settings.min_free, RESERVE_BYTES)


def floor_at(where: Path, settings: Settings, reserve: Path | None = None) -> int:
    """:func:`floor` on the filesystem of ``where``, plus the ledger's reserve when ``reserve``
    (the ledger's ballast file) was given up there: that room is the ledger's, to record the
    failures of a full disk, and a download that took it would leave the ledger unwritable."""
    base = floor(settings)
    if reserve is None or reserve.exists():
        return base
    try:
        same = os.stat(_existing(reserve.parent)).st_dev == os.stat(_existing(where)).st_dev
    except OSError:
        return base
    return base + RESERVE_BYTES if same else base


def check_streaming(directory: Path, settings: Settings, reserve: Path | None = None) -> None:
    """While a body streams in: stop before free space on its filesystem falls under
    :func:`floor_at` (the ledger, the store and everything else there need room too)."""
    free = shutil.disk_usage(_existing(directory)).free
    need = floor_at(directory, settings, reserve)
    if free < need:
        raise no_space(directory, need)


def needed(remaining: int | None, settings: Settings, at_least: int) -> int:
    """Bytes that must be free: the remaining download times the margin, at least
    ``at_least`` (the filesystem's :func:`floor_at`)."""
    return max(at_least, int((remaining or 0) * settings.free_margin))


def check_free_space(directories: list[Path], remaining: int | None, settings: Settings,
                     reserve: Path | None = None) -> None:
    """Raise QuotaError naming the numbers when any filesystem involved lacks the space
    (``reserve``: the ledger's ballast file, see :func:`floor_at`)."""
    seen: set[int] = set()
    for directory in directories:
        where = _existing(directory)
        dev = os.stat(where).st_dev
        if dev in seen:
            continue
        seen.add(dev)
        low = floor_at(where, settings, reserve)
        need = needed(remaining, settings, low)
        free = shutil.disk_usage(where).free
        if free < need:
            todo = "unknown size" if remaining is None else f"{format_size(remaining)} to go"
            raise QuotaError(
                f"not enough free space on {where}: {free} bytes free, {need} needed "
                f"({todo} x {settings.free_margin}, minimum {format_size(low)}); "
                "free space or lower min_free"
            )
