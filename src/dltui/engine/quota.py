"""The free-space guard: a download does not start unless it can finish."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dltui.config import Settings, format_size
from dltui.errors import QuotaError


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def needed(remaining: int | None, settings: Settings) -> int:
    """Bytes that must be free: the remaining download times the margin, at least min_free."""
    return max(settings.min_free, int((remaining or 0) * settings.free_margin))


def check_free_space(directories: list[Path], remaining: int | None, settings: Settings) -> None:
    """Raise QuotaError naming the numbers when any filesystem involved lacks the space."""
    need = needed(remaining, settings)
    seen: set[int] = set()
    for directory in directories:
        where = _existing(directory)
        dev = os.stat(where).st_dev
        if dev in seen:
            continue
        seen.add(dev)
        free = shutil.disk_usage(where).free
        if free < need:
            todo = "unknown size" if remaining is None else f"{format_size(remaining)} to go"
            raise QuotaError(
                f"not enough free space on {where}: {free} bytes free, {need} needed "
                f"({todo} x {settings.free_margin}, minimum {format_size(settings.min_free)}); "
                "free space or lower min_free"
            )
