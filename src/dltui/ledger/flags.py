"""Feature flags: defaults in code, overrides in the ledger, every change an audited event."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from dltui.errors import UnknownFlag
from dltui.ledger import events
from dltui.ledger.clock import now

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

ENV_PREFIX = "DLTUI_FLAG_"

def _flag(default: bool, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class Flags:
    """Every feature flag's value, as workers read them; the defaults are the field defaults."""

    batch: bool = _flag(True, "carry small fresh downloads in batches (batch_jobs, "
                              "batch_max_size)")
    circuit_breaker: bool = _flag(True, "stop sending to a host after repeated failures, for "
                                        "a cool-down")
    dedupe: bool = _flag(True, "store identical content once and link or copy it into each "
                               "destination")
    fsync: bool = _flag(True, "fsync parts every fsync_interval, finished files with "
                              "fsync_on_finish")
    preallocate: bool = _flag(True, "preallocate large part files with posix_fallocate")
    rate_limit: bool = _flag(True, "apply per-host request and bandwidth limits")
    resume: bool = _flag(True, "resume partial downloads instead of starting again")
    retries: bool = _flag(True, "retry transport errors, timeouts, 408/429/5xx with backoff")
    segmented: bool = _flag(True, "split large files into ranged connections "
                                  "(connections_per_file)")
    verify_prefix: bool = _flag(True, "allow resume without validators when the first 64 KiB "
                                      "match")


#: name -> (default, what it switches), from :class:`Flags`.
FLAGS: dict[str, tuple[bool, str]] = {
    f.name: (bool(f.default), f.metadata["doc"]) for f in fields(Flags)}

_TRUE = {"1", "on", "true", "yes"}
_FALSE = {"0", "off", "false", "no"}


@dataclass(frozen=True, slots=True)
class FlagState:
    """A flag's effective value and who set it last (None when it is at its default)."""

    name: str
    value: bool
    default: bool
    description: str
    updated_at: float | None
    updated_by: str | None


def check_name(name: str) -> str:
    """Return the normalised flag name or raise :class:`UnknownFlag`."""
    key = name.strip().lower().replace("-", "_")
    if key not in FLAGS:
        raise UnknownFlag(f"unknown flag {name!r}; known flags: {', '.join(sorted(FLAGS))}")
    return key


def parse_value(text: str, *, what: str) -> bool:
    """Parse on/off, 1/0, true/false, yes/no."""
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise UnknownFlag(f"{what}: {text!r} is not a flag value; use on or off (1 or 0)")


def all_flags(ledger: Ledger) -> list[FlagState]:
    """Every flag with its effective value, in name order."""
    rows = {r["name"]: r for r in ledger.conn.execute("SELECT * FROM flags").fetchall()}
    out = []
    for name in sorted(FLAGS):
        default, description = FLAGS[name]
        row = rows.get(name)
        out.append(
            FlagState(
                name=name,
                value=bool(row["value"]) if row else default,
                default=default,
                description=description,
                updated_at=row["updated_at"] if row else None,
                updated_by=row["updated_by"] if row else None,
            )
        )
    return out


def values(ledger: Ledger) -> dict[str, bool]:
    """``{name: value}`` for every flag."""
    return {f.name: f.value for f in all_flags(ledger)}


def current(ledger: Ledger) -> Flags:
    """Every flag's effective value: what workers read at job start and checkpoints."""
    return Flags(**values(ledger))


def get(ledger: Ledger, name: str) -> bool:
    """One flag's effective value."""
    key = check_name(name)
    row = ledger.conn.execute("SELECT value FROM flags WHERE name = ?", (key,)).fetchone()
    return bool(row[0]) if row else FLAGS[key][0]


def set_flag(ledger: Ledger, name: str, value: bool, *, by: str) -> bool:
    """Set a flag; returns True when its value changed. Each change appends a ``flag`` event."""
    key = check_name(name)
    with ledger.write() as conn:
        row = conn.execute("SELECT value FROM flags WHERE name = ?", (key,)).fetchone()
        old = bool(row[0]) if row else FLAGS[key][0]
        conn.execute(
            "INSERT INTO flags (name, value, updated_at, updated_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (key, int(value), now(), by),
        )
        if old != value:
            events.append(conn, "flag", None, name=key, old=old, new=value, by=by)
    return old != value


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, bool]:
    """Parse every ``DLTUI_FLAG_<NAME>`` variable; a bad name or value raises UnknownFlag."""
    env = os.environ if environ is None else environ
    out: dict[str, bool] = {}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        suffix = var[len(ENV_PREFIX):]
        if suffix.lower() not in FLAGS:
            raise UnknownFlag(
                f"environment variable {var} names no flag; known flags: "
                + ", ".join(f"{ENV_PREFIX}{n.upper()}" for n in sorted(FLAGS))
            )
        out[suffix.lower()] = parse_value(text, what=var)
    return out


def apply_env(ledger: Ledger, environ: Mapping[str, str] | None = None) -> dict[str, bool]:
    """Store the environment's overrides in the ledger (audited as ``by="env"``)."""
    overrides = env_overrides(environ)
    for name, value in overrides.items():
        set_flag(ledger, name, value, by="env")
    return overrides
