"""The ledger suite runs on both backends: every test here that takes the ``ledger`` fixture
runs on SQLite and on PostgreSQL (a throw-away cluster), so a behaviour cannot differ silently.
Tests that open the ledger again (``Ledger(home)``, a second process) reach the same database
through ``DLTUI_LEDGER``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        monkeypatch.setenv(paths.LEDGER_ENV, cluster.reused())
    else:
        monkeypatch.delenv(paths.LEDGER_ENV, raising=False)
    return str(request.param)


@pytest.fixture
def ledger(home: Path, backend: str) -> Iterator[Ledger]:
    led = Ledger(home)
    yield led
    led.close()
