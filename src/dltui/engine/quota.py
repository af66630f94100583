"""The free-space guard: a download does not start unless it can finish."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dltui.config import RESERVE_BYTES, Settings, format_size
from dltui.disk import existing, held_on, mount_point
from dltui.errors import QuotaError

__all__ = ["check_free_space", "check_streaming", "floor", "floor_at", "mount_point",
           "needed", "no_space"]


def no_space(directory: Path, need: int | None, home: Path | None = None) -> QuotaError:
    """The error for a full filesystem: which one, what was needed, what is left, and what
    dltui itself holds there (``home``: the dltui home whose parts and store count)."""
    where = mount_point(directory)
    have = shutil.disk_usage(where).free
    wanted = "more" if need is None else f"{need} bytes"
    held = held_on(home, where).describe() if home is not None else ""
    return QuotaError(f"no space on {where}: need {wanted}, have {have} bytes free{held}; "
                      "free space there, then retry the job (it resumes)")


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
        same = os.stat(existing(reserve.parent)).st_dev == os.stat(existing(where)).st_dev
    except OSError:
        return base
    return base + RESERVE_BYTES if same else base


def check_streaming(directory: Path, settings: Settings, reserve: Path | None = None,
                    home: Path | None = None) -> None:
    """While a body streams in: stop before free space on its filesystem falls under
    :func:`floor_at` (the ledger, the store and everything else there need room too)."""
    free = shutil.disk_usage(existing(directory)).free
    need = floor_at(directory, settings, reserve)
    if free < need:
        raise no_space(directory, need, home)


def needed(remaining: int | None, settings: Settings, at_least: int) -> int:
    """Bytes that must be free: the remaining download times the margin, at least
    ``at_least`` (the filesystem's :func:`floor_at`)."""
    return max(at_least, int((remaining or 0) * settings.free_margin))


def check_free_space(directories: list[Path], remaining: int | None, settings: Settings,
                     reserve: Path | None = None, home: Path | None = None) -> None:
    """Raise QuotaError naming the numbers when any filesystem involved lacks the space
    (``reserve``: the ledger's ballast file, see :func:`floor_at`; ``home``: whose parts
    and store the error counts)."""
    seen: set[int] = set()
    for directory in directories:
        where = existing(directory)
        dev = os.stat(where).st_dev
        if dev in seen:
            continue
        seen.add(dev)
        low = floor_at(where, settings, reserve)
        need = needed(remaining, settings, low)
        free = shutil.disk_usage(where).free
        if free < need:
            todo = "unknown size" if remaining is None else f"{format_size(remaining)} to go"
            held = held_on(home, where).describe() if home is not None else ""
            raise QuotaError(
                f"not enough free space on {mount_point(where)}: {free} bytes free, {need} "
                f"needed ({todo} x {settings.free_margin}, minimum {format_size(low)}){held}; "
                "free space or lower min_free"
            )
