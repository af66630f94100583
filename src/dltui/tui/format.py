"""Formatting for the TUI: sizes, rates, durations, progress bars, state colours."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from rich.style import Style
from rich.text import Text

from dltui.model import JobState
from dltui.shown import shown
from dltui.units import human_size

#: Each state's colour: the theme variable ``state-<name>``, else the theme colour beside it.
#: Themes set the variables to reach 4.5:1 on their surface and panel (tests/tui/test_contrast).
STATE_COLOR: dict[JobState, tuple[str, str]] = {
    JobState.PLANNED: ("state-planned", "foreground"),
    JobState.LEASED: ("state-leased", "secondary"),
    JobState.PRECHECKED: ("state-leased", "secondary"),
    JobState.STREAMING: ("state-streaming", "primary"),
    JobState.FINALIZING: ("state-finalizing", "secondary"),
    JobState.FINALIZED: ("state-finalized", "success"),
    JobState.FAILED: ("state-failed", "error"),
    JobState.PAUSED: ("state-paused", "warning"),
    JobState.CANCELLED: ("state-cancelled", "foreground-muted"),
}
#: Each state's text attributes: apart from its colour, so that states stay apart without
#: colour (NO_COLOR, monochrome terminals) and on the cursor row, which drops the colour.
STATE_ATTRS: dict[JobState, str] = {
    JobState.PLANNED: "",
    JobState.LEASED: "underline",
    JobState.PRECHECKED: "underline",
    JobState.STREAMING: "bold",
    JobState.FINALIZING: "bold underline",
    JobState.FINALIZED: "italic",
    JobState.FAILED: "bold reverse",
    JobState.PAUSED: "reverse",
    JobState.CANCELLED: "strike",
}


def state_color(state: JobState, variables: Mapping[str, str]) -> str:
    """The colour a theme gives ``state`` (a CSS colour), from the app's theme variables."""
    own, fallback = STATE_COLOR[state]
    return variables.get(own) or variables.get(fallback) or "default"


def state_styles(variables: Mapping[str, str]) -> dict[JobState, Style]:
    """Every state's full style (colour and attributes) under the current theme."""
    return _styles(tuple(state_color(s, variables) for s in JobState))


@lru_cache(maxsize=16)
def _styles(colors: tuple[str, ...]) -> dict[JobState, Style]:
    from textual.color import Color, ColorParseError

    out = {}
    for state, color in zip(JobState, colors, strict=True):
        try:
            rich = Color.parse(color).rich_color
        except ColorParseError:
            rich = None
        out[state] = Style.parse(STATE_ATTRS[state] or "none") + Style(color=rich)
    return out

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


def plain(value: object, style: str | Style = "") -> Text:
    """Text from outside (a server, a file, an operator) as it is: never read as markup,
    every control character shown escaped (:func:`dltui.shown.shown`)."""
    return Text(shown(value), style=style)


def plain_lines(text: object, style: str | Style = "") -> Text:
    """:func:`plain` for several lines: the line breaks stay, everything else is escaped."""
    return Text("\n".join(shown(line) for line in str(text).split("\n")), style=style)
