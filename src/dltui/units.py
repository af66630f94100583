"""Human-readable sizes, shared by the CLI and the TUI (stdlib only)."""

from __future__ import annotations

_UNITS = ("B", "K", "M", "G", "T")


def human_size(n: int | None, *, compact: bool = True) -> str:
    """``1536`` -> ``1.5K`` (compact, for tables) or ``1.5 KiB``; ``?`` when unknown."""
    if n is None:
        return "?"
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)}B" if compact else f"{int(value)} B"
            return f"{value:.1f}{unit}" if compact else f"{value:.1f} {unit}iB"
        value /= 1024
    raise AssertionError("unreachable")
