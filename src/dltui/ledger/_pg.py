"""PostgreSQL behind the ledger's connection interface (psycopg 3).

The ledger's modules speak a small part of the sqlite3 DB-API: ``conn.execute(sql, params)``
with ``?`` and ``:name`` placeholders, ``executemany``, rows read by index or by column name,
``rowcount``, ``in_transaction``, and errors from the sqlite3 tree. :class:`PgConnection`
offers the same to each thread over the process's :class:`PgPool` of psycopg connections, so
one body of SQL (kept to what both engines take: RETURNING, ON CONFLICT, COALESCE, CASE)
serves both backends. A psycopg error arrives as a
:class:`PgError`: an ``sqlite3.OperationalError`` carrying the SQLite result code of the same
meaning (a full disk is ``SQLITE_FULL``, a lock timeout ``SQLITE_BUSY``), so every handler of
ledger failures words both backends alike.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

# The pool logs what it replaces at WARNING; with no handler Python would print that over the
# TUI. What matters reaches the caller as a PgError.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


class PgError(sqlite3.OperationalError):
    """A PostgreSQL failure, classified as the SQLite result code of the same meaning."""

    #: PostgreSQL's own code (SQLSTATE), "" when there was none (a connection that failed).
    sqlstate = ""
    #: True when the server could not be reached at all (not merely a connection dropped).
    server_gone = False


#: SQLSTATE (or its class, the first two characters) -> the SQLite result code name.
_KINDS = {"53100": "SQLITE_FULL", "53300": "SQLITE_CANTOPEN", "40001": "SQLITE_BUSY",
          "40P01": "SQLITE_BUSY", "55P03": "SQLITE_BUSY", "57014": "SQLITE_BUSY",
          "25006": "SQLITE_READONLY", "XX001": "SQLITE_CORRUPT", "XX002": "SQLITE_CORRUPT",
          "08": "SQLITE_CANTOPEN", "57P01": "SQLITE_CANTOPEN", "3D000": "SQLITE_CANTOPEN",
          "28": "SQLITE_AUTH"}


#: How a server words a connection refused for want of a slot (too_many_connections).
_NO_SLOT = ("too many connections", "too many clients", "connection slots are reserved")


def pg_error(exc: psycopg.Error) -> PgError:
    """``exc`` as a :class:`PgError` with its message and kind."""
    state = exc.sqlstate or ""
    if not state and any(words in str(exc) for words in _NO_SLOT):
        state = "53300"  # refused at connect time, when libpq passes on no SQLSTATE
    kind = _KINDS.get(state) or _KINDS.get(state[:2]) or \
        ("SQLITE_CANTOPEN" if isinstance(exc, psycopg.OperationalError) and not state
         else "SQLITE_ERROR")
    detail = (exc.diag.message_primary if exc.diag and exc.diag.message_primary
              else str(exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    out = PgError(detail)
    out.sqlite_errorname = kind  # as sqlite3 sets it
    out.sqlstate = state
    return out


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """sqlite3's placeholders as psycopg's: ``?`` -> ``%s``, ``:name`` -> ``%(name)s``, and
    a literal ``%`` doubled; quoted text is left alone."""
    out: list[str] = []
    i, n, quote = 0, len(sql), ""
    while i < n:
        c = sql[i]
        if quote:
            out.append("%%" if c == "%" else c)
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            out.append(c)
        elif c == "?":
            out.append("%s")
        elif c == "%":
            out.append("%%")
        elif c == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_") \
                and (i == 0 or sql[i - 1] != ":"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(f"%({sql[i + 1:j]})s")
            i = j
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


class Row(Sequence[Any]):
    """One result row, read by position or by column name (as ``sqlite3.Row``)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = tuple(values)
        self._index = index

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _rows(cursor: Any) -> Any:
    # The names from the result itself: ``cursor.description`` builds a Column object per
    # column per statement, a sixth of a worker's time on PostgreSQL.
    result = cursor.pgresult
    if result is None or not result.nfields:
        return lambda values: values
    index = _index(tuple(result.fname(i) for i in range(result.nfields)))
    return lambda values: Row(values, index)


@lru_cache(maxsize=256)
def _index(names: tuple[bytes, ...]) -> dict[str, int]:
    return {name.decode(): i for i, name in enumerate(names)}


def _materialized(cursor: Any) -> _Result:
    rows = cursor.fetchall() if cursor.description is not None else []
    return _Result(rows, cursor.rowcount)


class _Result:
    """A statement's rows, read before its connection went back to the pool."""

    __slots__ = ("_at", "_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self._at, self.rowcount = rows, 0, rowcount

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        """The rows not read yet."""
        rest, self._at = self._rows[self._at:], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _first_word(sql: str) -> str:
    """The statement's verb (``BEGIN`` of ``BEGIN; SELECT …`` too), upper-case."""
    match = _VERB.match(sql)
    return match.group(1).upper() if match else ""


_VERB = re.compile(r"\s*([A-Za-z]+)")


def _broken(conn: psycopg.Connection[Any]) -> bool:
    return bool(conn.broken or conn.closed)


class PgPool:
    """The connections one process keeps to a PostgreSQL ledger (psycopg_pool): at most
    ``size``, shared by its threads, each holding one only for a transaction or a statement.

    Opening makes one connection first, so a wrong URL, password or database fails at once
    with the server's words instead of as a pool timeout.
    """

    def __init__(self, url: str, *, size: int, timeout: float, setup: Sequence[str] = (),
                 application_name: str = "dltui") -> None:
        self._url, self._timeout, self._setup = url, timeout, tuple(setup)
        self._kwargs: dict[str, Any] = {
            "autocommit": True, "row_factory": _rows, "application_name": application_name,
            "connect_timeout": max(1, int(timeout))}
        self._direct().close()
        self.size = size
        self._down = False  # the server was found gone: see take()
        self._lock = threading.Lock()
        self._lent: dict[int, ConnectionPool] = {}  # id(connection) -> the pool it came from
        self._pool = self._new_pool()

    def _new_pool(self) -> ConnectionPool:
        return ConnectionPool(self._url, min_size=1, max_size=self.size, kwargs=self._kwargs,
                              configure=self._configure, timeout=self._timeout, open=True,
                              name="dltui-ledger")

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        for statement in self._setup:
            conn.execute(statement)

    def _direct(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._url, **self._kwargs)
            self._configure(conn)
        except psycopg.Error as exc:
            raise pg_error(exc) from None
        return conn

    def _probe(self) -> None:
        """Reach the server with a connection of our own, or raise why not (server_gone)."""
        try:
            self._direct().close()
        except PgError as exc:
            exc.server_gone = True
            raise

    def _lend(self) -> psycopg.Connection[Any] | None:
        pool = self._pool
        try:
            conn = pool.getconn()
        except PoolTimeout:
            return None
        with self._lock:
            self._lent[id(conn)] = pool
        return conn

    def _renew(self, seen: ConnectionPool) -> None:
        """A fresh pool in place of ``seen``, which after an outage may wait out a growing
        reconnect backoff (psycopg_pool doubles it each try) while the server is back."""
        with self._lock:
            if self._pool is not seen:
                return  # another thread renewed it
            self._pool = self._new_pool()
        seen.close(timeout=1.0)  # connections still lent close as they come back

    def take(self) -> psycopg.Connection[Any]:
        """A connection for this thread, waiting up to the timeout for a free one (or for
        the server, after a restart).

        Once the server was found gone, each later call asks it directly first and fails at
        once while it stays gone, so a process stopping on that error (releasing its leases,
        saying goodbye) is not held for another timeout at each step.
        """
        if self._down:
            self._probe()  # raises while the server is still gone
            self._down = False
            self._renew(self._pool)
        pool = self._pool
        conn = self._lend()
        if conn is not None:
            return conn
        # Say why: the server refuses (its words), or every connection is in use.
        try:
            self._probe()
        except PgError:
            self._down = True
            raise
        with self._lock:
            in_use = sum(1 for origin in self._lent.values() if origin is pool)
        if in_use < self.size:  # room for more, yet none came: backing off, not busy
            self._renew(pool)
            conn = self._lend()
            if conn is not None:
                return conn
        busy = PgError(f"all {self.size} ledger connections of this process stayed in use "
                       f"for {self._timeout:g} s; more: setting ledger_connections")
        busy.sqlite_errorname = "SQLITE_BUSY"
        raise busy

    def give(self, conn: psycopg.Connection[Any]) -> None:
        """Hand ``conn`` back to the pool it came from, which replaces one the server
        dropped (or, closed since, closes it)."""
        with self._lock:
            origin = self._lent.pop(id(conn), self._pool)
        origin.putconn(conn)

    def run(self, fn: Callable[[psycopg.Connection[Any]], Any], *, again: bool,
            keep: bool) -> tuple[psycopg.Connection[Any] | None, Any]:
        """``fn`` on a pooled connection: (the connection when ``keep``, else None; its result).

        With ``again``, a statement that met a connection the server dropped (a restart)
        runs again on the next one, until the timeout: only what cannot run twice is given
        ``again`` (a transaction's BEGIN, a read outside a transaction).
        """
        deadline = time.monotonic() + self._timeout
        while True:
            conn = self.take()
            try:
                result = fn(conn)
            except psycopg.Error as exc:
                dropped = _broken(conn)
                self.give(conn)
                if again and dropped and time.monotonic() < deadline:
                    continue
                raise pg_error(exc) from None
            except BaseException:
                self.give(conn)
                raise
            if keep:
                return conn, result
            self.give(conn)
            return None, result

    def close(self) -> None:
        """Close every connection of the pool."""
        self._pool.close()
        self._lent.clear()


class PgConnection:
    """One thread's handle on a :class:`PgPool` that takes the ledger's sqlite3-style SQL.

    It holds a pooled connection from ``BEGIN`` to ``COMMIT`` or ``ROLLBACK``; a statement
    outside a transaction borrows one for itself (its rows read before it goes back).
    """

    pg = True  # what :func:`dltui.ledger._db.is_pg` asks

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self._held: psycopg.Connection[Any] | None = None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """Run one statement; a cursor (``fetchone``, ``fetchall``, ``rowcount``, rows).

        After a server restart, what cannot run twice runs on a new connection (see
        :meth:`PgPool.run`); a ``ROLLBACK`` of a transaction the server dropped has nothing
        left to do. Anything else fails as it happened: its transaction is gone.
        """
        word = _first_word(sql)
        query = translate(sql)
        held = self._held
        if held is None:
            if word in ("ROLLBACK", "COMMIT"):
                return None  # no transaction here: its connection went with an error
            if word == "BEGIN":
                self._held, cur = self._pool.run(lambda c: c.execute(query, params),
                                                 again=True, keep=True)
                return cur
            _, result = self._pool.run(lambda c: _materialized(c.execute(query, params)),
                                       again=word == "SELECT", keep=False)
            return result
        if word in ("COMMIT", "ROLLBACK"):
            self._held = None
            try:
                if word == "ROLLBACK" and _broken(held):
                    return None
                return held.execute(query)
            except psycopg.Error as exc:
                raise pg_error(exc) from None
            finally:
                self._pool.give(held)
        try:
            return held.execute(query, params)
        except psycopg.Error as exc:
            raise pg_error(exc) from None

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | dict[str, Any]]) -> Any:
        """Run one statement for each parameter set; the cursor (``rowcount`` is the total)."""
        query, rows = translate(sql), list(seq)

        def many(conn: psycopg.Connection[Any]) -> Any:
            cur = conn.cursor()
            cur.executemany(query, rows)
            return cur

        if self._held is not None:
            try:
                return many(self._held)
            except psycopg.Error as exc:
                raise pg_error(exc) from None
        return self._pool.run(many, again=False, keep=False)[1]

    @property
    def in_transaction(self) -> bool:
        """True between BEGIN and its end (as sqlite3's attribute)."""
        return self._held is not None

    def close(self) -> None:
        """Give back a connection still held (its transaction rolled back)."""
        if self._held is not None:
            self.execute("ROLLBACK")
