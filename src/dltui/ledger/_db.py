"""Opening the ledger: a SQLite connection per thread, WAL, busy timeout, explicit transactions."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dltui import paths
from dltui.errors import LedgerError

if TYPE_CHECKING:
    import sqlite_utils

DEFAULT_BUSY_TIMEOUT = 30.0


def now() -> float:
    """Wall-clock seconds since the epoch; every ledger timestamp uses it."""
    return time.time()


class Ledger:
    """The SQLite ledger under a dltui home directory.

    Each thread gets its own connection (SQLite connections must not be shared across threads
    mid-transaction). Connections run in autocommit mode; :meth:`write` opens ``BEGIN IMMEDIATE``
    so writers queue on SQLite's lock instead of failing with ``database is locked`` on upgrade.
    """

    def __init__(
        self, home: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, migrate: bool = True
    ) -> None:
        self.home = Path(home)
        self.path = paths.ledger_path(self.home)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        # Threads of one process queue here rather than in SQLite's busy handler, which sleeps
        # in growing steps (up to 100 ms) and would stall a pool of workers on every commit.
        self._write_lock = threading.RLock()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"cannot create dltui home {self.home}: {exc.strerror}") from None
        if migrate:
            from dltui.ledger.migrations import migrate as run_migrations

            run_migrations(self)

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode; only power loss can drop the
            # last commits, and the reconciler heals that from the part files.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"cannot open ledger {self.path}: {exc}; check --home / DLTUI_HOME"
            ) from None
        with self._all_lock:
            self._all.append(conn)
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._local.depth = 0
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection wrapped by sqlite-utils (imported on first use: it costs
        ~0.1 s at start-up and only migrations need it)."""
        import sqlite_utils

        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite_utils.Database(self.conn)
        return db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction; nested uses join the outer one."""
        conn = self.conn
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            self._local.depth = 1
            try:
                yield conn
            except BaseException:
                self._local.depth = 0
                if conn.in_transaction:  # some errors make SQLite roll back by itself
                    conn.execute("ROLLBACK")
                raise
            self._local.depth = 0
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several SELECTs."""
        conn = self.conn
        if self._local.depth:
            yield conn
            return
        conn.execute("BEGIN")
        self._local.depth = 1
        try:
            yield conn
        finally:
            self._local.depth = 0
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this ledger opened, in any thread."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def next_revs(conn: sqlite3.Connection, count: int = 1) -> int:
    """Reserve ``count`` consecutive revs and return the last; call inside a write transaction."""
    row = conn.execute(
        "UPDATE meta SET value = value + ? WHERE key = 'rev' RETURNING value", (count,)
    ).fetchone()
    return int(row[0])
