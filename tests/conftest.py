from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dltui.ledger import Ledger, jobs
from dltui.model import JobState
from tests.support.settings import TEST_ENV, TEST_SETTINGS, settings_env  # noqa: F401
from tests.support.waiting import until, wait_for  # noqa: F401


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ledger(home: Path) -> Iterator[Ledger]:
    led = Ledger(home)
    yield led
    led.close()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "downloads"
    d.mkdir()
    return d


def add_job(ledger: Ledger, dest: Path, url: str = "http://example.com/file.bin", **kw) -> int:
    return jobs.add(ledger, [jobs.JobSpec(url, dest, **kw)])[0].job.id




class MovableClock:
    """A ledger clock a test moves by hand (see the ``clock`` fixture)."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Iterator[MovableClock]:
    """The ledger's clock, frozen and moved only by ``clock.advance``: lease tests step past
    a TTL instead of sleeping through it."""
    from dltui.ledger import clock as ledger_clock

    moving = MovableClock()
    with ledger_clock.use(moving):
        yield moving


def force_state(ledger: Ledger, job_id: int, state: JobState | str, **cols) -> None:
    """Test set-up only: put a job in a state without going through the state machine."""
    sets = {"state": JobState(state).value, **cols}
    with ledger.write() as conn:
        conn.execute(
            f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
            [*sets.values(), job_id],
        )


def assert_placed_once(store_root: Path, finished: list) -> None:
    """Each finished job's file holds its digest's bytes, and each store object shares its
    inode with at most one destination (the others are independent copies)."""
    from dltui.store import Store, sha256_file

    store = Store(store_root)
    sharing: dict[str, int] = {}
    for job in finished:
        target = Path(job.final_path)
        assert sha256_file(target) == job.sha256, job.id
        if os.stat(target).st_ino == os.stat(store.object_path(job.sha256)).st_ino:
            sharing[job.sha256] = sharing.get(job.sha256, 0) + 1
    assert all(n == 1 for n in sharing.values()), sharing


def dump(path: Path | str) -> list[tuple]:
    """Every row of every table of a ledger (a SQLite file, or a PostgreSQL URL), for
    before/after comparisons."""
    conn: Any
    if str(path).startswith("postgresql://"):
        import psycopg

        conn = psycopg.connect(str(path))
        tables_sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    else:
        conn = sqlite3.connect(path)
        tables_sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    try:
        tables = [r[0] for r in conn.execute(tables_sql)]
        return [(t, *row) for t in tables
                for row in conn.execute(f'SELECT * FROM "{t}" ORDER BY 1')]
    finally:
        conn.close()


# -- engine fixtures ---------------------------------------------------------------------------
from dltui.config import Settings  # noqa: E402
from dltui.origin import Origin  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster():
    """A throw-away PostgreSQL cluster for the whole run (see tests/pg.py)."""
    from tests.pg import Cluster

    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh, empty database on the throw-away cluster."""
    return pg_cluster.database()


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as o:
        yield o


@pytest.fixture
def settings() -> Settings:
    return TEST_SETTINGS


# -- CLI fixture ------------------------------------------------------------------------------
@pytest.fixture
def run(home, monkeypatch, capsys):
    monkeypatch.setenv("DLTUI_HOME", str(home))
    for var in list(os.environ):
        if var.startswith("DLTUI_FLAG_"):
            monkeypatch.delenv(var)

    def _run(*argv: str) -> tuple[int, str, str]:
        try:
            from dltui.cli import main

            code = main(list(argv))
        except SystemExit as exc:  # argparse's own errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return _run
