import sqlite3
from pathlib import Path

import pytest

from dltui import paths
from dltui.errors import LedgerError, LedgerTooNew
from dltui.ledger import SCHEMA_VERSION, Ledger
from dltui.ledger.migrations import MIGRATIONS, current_version, migrate


def test_migrates_an_empty_file(home: Path) -> None:
    home.mkdir(parents=True, mode=0o700)  # a home dltui trusts: private to its user
    paths.ledger_path(home).touch()  # a zero-byte file is a valid, empty SQLite database
    with Ledger(home) as led:
        assert current_version(led.conn) == SCHEMA_VERSION
        rows = led.conn.execute("SELECT version, name FROM migrations ORDER BY version").fetchall()
        assert [tuple(r) for r in rows] == [(i + 1, n) for i, (n, _) in enumerate(MIGRATIONS)]
        tables = {r[0] for r in led.conn.execute("SELECT name FROM sqlite_master")}
        assert {"jobs", "ops", "events", "flags", "meta", "migrations"} <= tables
        assert led.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_applies_nothing(home: Path) -> None:
    Ledger(home).close()
    with Ledger(home, migrate=False) as led:
        assert migrate(led) == []


def test_partial_target_then_rest(home: Path) -> None:
    led = Ledger(home, migrate=False)
    assert migrate(led, target=0) == []
    assert current_version(led.conn) == 0
    assert migrate(led) == list(range(1, SCHEMA_VERSION + 1))
    led.close()


def test_refuses_a_newer_ledger(home: Path) -> None:
    Ledger(home).close()
    conn = sqlite3.connect(paths.ledger_path(home))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerTooNew, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade dltui"):
        Ledger(home)


def test_refuses_a_file_that_is_not_sqlite(home: Path) -> None:
    """A file that is no SQLite database at all is someone else's: it is named as not a
    ledger, never advised to be moved aside (`DLTUI_LEDGER=/etc/passwd` was told to
    `mv /etc/passwd /etc/passwd.damaged`); a damaged SQLite file still is."""
    home.mkdir(parents=True, mode=0o700)  # a home dltui trusts: private to its user
    paths.ledger_path(home).write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="is not a dltui ledger \\(not an SQLite database\\)"
                       ) as caught:
        Ledger(home)
    assert "mv " not in str(caught.value)


def test_stored_object_lookup_uses_an_index(ledger) -> None:
    # jobs.find_stored runs at every job start; it must not scan the finished jobs.
    query = ("SELECT id FROM jobs WHERE canonical_url = ? AND state = 'FINALIZED' "
             "AND sha256 IS NOT NULL ORDER BY finished_at DESC LIMIT 1")
    if ledger.pg:  # an empty table is scanned whatever the indexes: ask for the index's plan
        ledger.conn.execute("SET enable_seqscan = off")
        plan = " ".join(r[0] for r in ledger.conn.execute("EXPLAIN " + query, ("x",)))
    else:
        plan = " ".join(r[3] for r in ledger.conn.execute("EXPLAIN QUERY PLAN " + query, ("x",)))
    assert "canonical_url" in plan, plan
