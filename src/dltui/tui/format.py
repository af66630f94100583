"""Formatting for the TUI: sizes, rates, durations, progress bars, state colours."""

from __future__ import annotations

from dltui.model import JobState
from dltui.units import human_size

STATE_STYLE: dict[JobState, str] = {
    JobState.PLANNED: "dim",
    JobState.LEASED: "cyan",
    JobState.PRECHECKED: "cyan",
    JobState.STREAMING: "bold blue",
    JobState.FINALIZING: "magenta",
    JobState.FINALIZED: "green",
    JobState.FAILED: "bold red",
    JobState.PAUSED: "yellow",
    JobState.CANCELLED: "dim strike",
}

_BLOCKS = " ▏▎▍▌▋▊▉█"


def size(n: int | None) -> str:
    """``1536`` -> ``1.5K``: compact, at most 6 characters."""
    return human_size(n, compact=True)


def rate(bps: float) -> str:
    """Bytes per second, or a dash when idle."""
    return "-" if bps <= 0 else f"{size(int(bps))}/s"


def duration(seconds: float | None) -> str:
    """``3725`` -> ``1h02m``; a dash when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def bar(done: int, total: int | None, width: int) -> str:
    """A progress bar of ``width`` cells with eighth-block resolution."""
    if width <= 0:
        return ""
    if not total:
        return "·" * width
    frac = min(max(done / total, 0.0), 1.0)
    eighths = int(frac * width * 8)
    full, part = divmod(eighths, 8)
    out = "█" * full
    if full < width:
        out += _BLOCKS[part] if part else " "
        out += " " * (width - full - 1)
    return out


def percent(done: int, total: int | None) -> str:
    """``42%`` or ``?``."""
    if not total:
        return "100%" if total == 0 else "?"
    return f"{min(100, int(100 * done / total))}%"


def owner_short(owner: str | None) -> str:
    """``host:1234:…:dltui-worker-2`` -> ``1234/w2``."""
    if not owner:
        return "-"
    parts = owner.split(":", 3)
    if len(parts) != 4:
        return owner[:12]
    thread = parts[3].replace("dltui-worker-", "w")
    return f"{parts[1]}/{thread}"[:12]
