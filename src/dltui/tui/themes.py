"""Themes from TOML files: the ones shipped in the package (``shipped_themes/``) and the
user's; bad files are reported."""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass, field, fields
from importlib.resources.abc import Traversable
from pathlib import Path

import platformdirs
from textual.color import Color, ColorParseError
from textual.theme import Theme

DEFAULT_THEME = "dltui-dark"
_COLOR_KEYS = {"primary", "secondary", "warning", "error", "success", "accent", "foreground",
               "background", "surface", "panel", "boost"}
_ALLOWED = {f.name for f in fields(Theme)}


def theme_dirs() -> list[Traversable]:
    """Where themes are looked for, later folders overriding earlier ones: the package's own
    (package data, wherever it is installed), then the user's."""
    return [
        importlib.resources.files("dltui.tui") / "shipped_themes",
        Path(platformdirs.user_config_dir("dltui", appauthor=False)) / "themes",
    ]


@dataclass
class ThemeLoad:
    """Themes that loaded, and one message per file that did not."""

    themes: dict[str, Theme] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def parse_theme(path: Traversable) -> Theme:
    """One theme file; raises ValueError naming the file and the problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"theme {path.name}: {exc}") from None
    unknown = set(data) - _ALLOWED
    if unknown:
        raise ValueError(f"theme {path.name}: unknown keys {', '.join(sorted(unknown))}")
    if not isinstance(data.get("name"), str) or not data.get("name"):
        raise ValueError(f"theme {path.name}: needs a name")
    if "primary" not in data:
        raise ValueError(f"theme {path.name}: needs a primary colour")
    for key in _COLOR_KEYS & set(data):
        try:
            if not isinstance(data[key], str):
                raise TypeError
            Color.parse(data[key])
        except (ColorParseError, TypeError, ValueError):
            raise ValueError(f"theme {path.name}: {key} = {data[key]!r} is not a colour") from None
    if "dark" in data and not isinstance(data["dark"], bool):
        raise ValueError(f"theme {path.name}: dark = {data['dark']!r} is not true or false")
    for key in ("luminosity_spread", "text_alpha"):
        if key in data and (isinstance(data[key], bool)
                            or not isinstance(data[key], int | float)):
            raise ValueError(f"theme {path.name}: {key} = {data[key]!r} is not a number")
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ValueError(f"theme {path.name}: variables = {variables!r} is not a table "
                         "([variables] with name = \"value\" lines)")
    for name, value in variables.items():
        if not isinstance(value, str):
            raise ValueError(f"theme {path.name}: variables.{name} = {value!r} is not a "
                             "string (quote it: \"#4EA8DE\")")
        if name.startswith("state-"):
            try:
                Color.parse(value)
            except ColorParseError:
                raise ValueError(f"theme {path.name}: variables.{name} = {value!r} is not a "
                                 "colour") from None
    try:
        return Theme(**data)
    except (TypeError, ValueError) as exc:  # anything Textual itself refuses
        raise ValueError(f"theme {path.name}: {exc}") from None


def load_themes(dirs: list[Path] | list[Traversable] | None = None) -> ThemeLoad:
    """Every ``*.toml`` theme in ``dirs``."""
    out = ThemeLoad()
    for directory in dirs if dirs is not None else theme_dirs():
        if not directory.is_dir():
            continue
        for path in sorted((p for p in directory.iterdir() if p.name.endswith(".toml")),
                           key=lambda p: p.name):
            try:
                theme = parse_theme(path)
            except ValueError as exc:
                out.errors.append(str(exc))
                continue
            out.themes[theme.name] = theme
    return out
