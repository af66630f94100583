"""Every shipped theme is readable: WCAG AA (4.5:1) for text, footer keys, the cursor row and
every state's colour, computed from the theme files as Textual derives the colours; without
colour (NO_COLOR), states stay apart by their attributes."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.color import Color

from dltui.model import JobState
from dltui.tui import format as fmt
from dltui.tui.themes import parse_theme

THEMES = sorted((Path(__file__).resolve().parents[2] / "src" / "dltui" / "tui"
                 / "shipped_themes").glob("*.toml"))
AA = 4.5


def _luminance(c: Color) -> float:
    def channel(v: int) -> float:
        s = v / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)


def contrast(a: Color, b: Color) -> float:
    """The WCAG 2 contrast ratio of two opaque colours."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


class Palette:
    """A theme's colours as the app sees them, translucent ones blended over what is below."""

    def __init__(self, path: Path) -> None:
        theme = parse_theme(path)
        # As App.get_css_variables builds them: the colour system, then the theme's variables.
        self.vars = {**theme.to_color_system().generate(), **theme.variables}

    def color(self, name: str, over: str = "background") -> Color:
        raw = self.vars.get(name, name)
        below = self.color(over) if over != name and over != "background" else \
            Color.parse(self.vars["background"])
        if raw.startswith("auto"):  # Textual's contrasting text, at some opacity
            alpha = float(raw.split()[1].rstrip("%")) / 100 if " " in raw else 1.0
            return below.blend(below.get_contrast_text(alpha), alpha)
        color = Color.parse(raw)
        return below.blend(color.with_alpha(1.0), color.a) if color.a < 1 else color


PAIRS = [  # (text, background): what the TUI draws on what
    ("foreground", "background"), ("foreground", "surface"), ("foreground", "panel"),
    ("footer-key-foreground", "footer-background"),
    ("footer-description-foreground", "footer-background"),
    ("block-cursor-foreground", "block-cursor-background"),
    ("block-cursor-blurred-foreground", "block-cursor-blurred-background"),
    ("warning", "surface"),  # selected rows
    ("error", "panel"),  # dialog errors
    ("primary", "panel"),  # dialog titles
]


@pytest.mark.parametrize("path", THEMES, ids=[p.stem for p in THEMES])
def test_text_footer_and_cursor_reach_aa(path) -> None:
    pal = Palette(path)
    low = {f"{fg} on {bg}": round(contrast(pal.color(fg, bg), pal.color(bg)), 2)
           for fg, bg in PAIRS}
    assert {k: v for k, v in low.items() if v < AA} == {}


@pytest.mark.parametrize("path", THEMES, ids=[p.stem for p in THEMES])
def test_every_state_colour_reaches_aa_where_it_is_drawn(path) -> None:
    pal = Palette(path)
    low = {}
    for state in JobState:
        color = Color.parse(fmt.state_color(state, pal.vars))
        for bg in ("surface", "panel"):  # the job table; the header's counts and the detail
            ratio = contrast(pal.color(bg).blend(color.with_alpha(1.0), color.a), pal.color(bg))
            if ratio < AA:
                low[f"{state.value} on {bg}"] = round(ratio, 2)
    assert low == {}


def test_theme_states_are_their_own() -> None:
    # Shipped themes set every state colour, so none falls back to a colour chosen for
    # something else.
    for path in THEMES:
        pal = Palette(path)
        missing = {own for own, _ in fmt.STATE_COLOR.values() if own not in pal.vars}
        assert missing == set(), path.name


def test_states_differ_without_colour() -> None:
    attrs = {}
    for state, text in fmt.STATE_ATTRS.items():
        attrs.setdefault(frozenset(text.split()), set()).add(state)
    # Only LEASED and PRECHECKED share a look: both are a worker starting the job.
    assert sorted(sorted(s.value for s in group) for group in attrs.values()
                  if len(group) > 1) == [["LEASED", "PRECHECKED"]]
    assert not any("dim" in text for text in fmt.STATE_ATTRS.values())  # nothing fades
    assert "bold" in fmt.STATE_ATTRS[JobState.STREAMING]
