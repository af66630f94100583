"""Every default path dltui uses, in one place."""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

APP_NAME = "dltui"
HOME_ENV = "DLTUI_HOME"
CONFIG_ENV = "DLTUI_CONFIG"
#: Where the ledger lives when it is not the home's SQLite file: a ``postgresql://`` URL.
LEDGER_ENV = "DLTUI_LEDGER"


def default_home() -> Path:
    """``$DLTUI_HOME`` when set, else the platform's per-user data directory."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def ledger_path(home: Path) -> Path:
    """The SQLite ledger shared by the TUI, the CLI and every worker."""
    return home / "ledger.db"


def is_ledger_url(location: str) -> bool:
    """True for a PostgreSQL ledger (``postgresql://…`` or ``postgres://…``)."""
    return location.startswith(("postgresql://", "postgres://"))


def ledger_location(home: Path) -> str:
    """The ledger of ``home``: ``$DLTUI_LEDGER`` when set (a PostgreSQL URL, or a SQLite file
    path), else the home's own ``ledger.db``."""
    env = os.environ.get(LEDGER_ENV, "").strip()
    if env:
        return env if is_ledger_url(env) else str(Path(env).expanduser())
    return str(ledger_path(home))


def ledger_shown(home: Path) -> Path | str:
    """The ledger of ``home`` as messages name it: its file, or its URL without a password."""
    from dltui.urls import redact

    where = ledger_location(home)
    return redact(where) if is_ledger_url(where) else Path(where)


def reserve_path(home: Path) -> Path:
    """Ballast kept beside the ledger: deleted when the disk fills, so the ledger can still
    record the failures (see ``Ledger.release_reserve``)."""
    return home / "ledger.reserve"


def parts_dir(home: Path) -> Path:
    """Partial downloads, one ``<job_id>.part`` each."""
    return home / "parts"


def part_path(home: Path, job_id: int) -> Path:
    """The part file of one job."""
    return parts_dir(home) / f"{job_id}.part"


_PART_NAME = re.compile(r"^(\d+)\.part(\..*)?$")


def part_job_id(name: str) -> int | None:
    """The job a file in the parts directory belongs to (``12.part``, ``12.part.x``), or
    None for a name that is not a part."""
    m = _PART_NAME.match(name)
    return int(m.group(1)) if m else None


def store_dir(home: Path) -> Path:
    """The content-addressed store (``ab/abcdef…``)."""
    return home / "store"


def default_config_path() -> Path:
    """``$DLTUI_CONFIG`` when set, else ``config.toml`` in the platform's config directory."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"
