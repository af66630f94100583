"""PostgreSQL behind the ledger's connection interface (psycopg 3).

The ledger's modules speak a small part of the sqlite3 DB-API: ``conn.execute(sql, params)``
with ``?`` and ``:name`` placeholders, ``executemany``, rows read by index or by column name,
``rowcount``, ``in_transaction``, and errors from the sqlite3 tree. :class:`PgConnection`
offers the same over psycopg, so one body of SQL (kept to what both engines take: RETURNING,
ON CONFLICT, COALESCE, CASE) serves both backends. A psycopg error arrives as a
:class:`PgError`: an ``sqlite3.OperationalError`` carrying the SQLite result code of the same
meaning (a full disk is ``SQLITE_FULL``, a lock timeout ``SQLITE_BUSY``), so every handler of
ledger failures words both backends alike.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus


class PgError(sqlite3.OperationalError):
    """A PostgreSQL failure, classified as the SQLite result code of the same meaning."""


#: SQLSTATE (or its class, the first two characters) -> the SQLite result code name.
_KINDS = {"53100": "SQLITE_FULL", "53": "SQLITE_FULL", "40001": "SQLITE_BUSY",
          "40P01": "SQLITE_BUSY", "55P03": "SQLITE_BUSY", "57014": "SQLITE_BUSY",
          "25006": "SQLITE_READONLY", "XX001": "SQLITE_CORRUPT", "XX002": "SQLITE_CORRUPT",
          "08": "SQLITE_CANTOPEN", "57P01": "SQLITE_CANTOPEN", "3D000": "SQLITE_CANTOPEN",
          "28": "SQLITE_AUTH"}


def pg_error(exc: psycopg.Error) -> PgError:
    """``exc`` as a :class:`PgError` with its message and kind."""
    state = exc.sqlstate or ""
    kind = _KINDS.get(state) or _KINDS.get(state[:2]) or \
        ("SQLITE_CANTOPEN" if isinstance(exc, psycopg.OperationalError) and not state
         else "SQLITE_ERROR")
    detail = (exc.diag.message_primary if exc.diag and exc.diag.message_primary
              else str(exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    out = PgError(detail)
    out.sqlite_errorname = kind  # as sqlite3 sets it
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
    description = cursor.description
    if description is None:
        return lambda values: values
    index = {col.name: i for i, col in enumerate(description)}
    return lambda values: Row(values, index)


class PgConnection:
    """A psycopg connection in autocommit mode that takes the ledger's sqlite3-style SQL."""

    pg = True  # what :func:`dltui.ledger._db.is_pg` asks

    def __init__(self, url: str, *, connect_timeout: float = 10.0,
                 setup: Sequence[str] = ()) -> None:
        self._url, self._timeout, self._setup = url, connect_timeout, tuple(setup)
        self._conn = self._open()
        self._in_tx = False  # between our BEGIN and its COMMIT or ROLLBACK

    def _open(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._url, autocommit=True, row_factory=_rows,
                                   connect_timeout=max(1, int(self._timeout)))
            for statement in self._setup:
                conn.execute(statement)
        except psycopg.Error as exc:
            raise pg_error(exc) from None
        return conn

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """Run one statement; the cursor (``fetchone``, ``fetchall``, ``rowcount``, rows).

        When the server drops the connection (a restart), what cannot run twice runs on a new
        one, once the server is back (within the connect timeout): a transaction's ``BEGIN``
        (nothing of it has run yet) and a read outside a transaction. A ``ROLLBACK`` of a
        transaction the server dropped has nothing left to do. Anything else fails as it
        happened: its transaction is gone.
        """
        word = sql.lstrip().split(None, 1)[0].upper()
        if word == "ROLLBACK" and self.broken:
            self._in_tx = False
            return None
        again = word == "BEGIN" or (word == "SELECT" and not self._in_tx)
        if again and self.broken:
            self._reopen(None)
        try:
            cur = self._conn.execute(translate(sql), params)
        except psycopg.Error as exc:
            if not (again and self.broken):
                raise pg_error(exc) from None
            self._reopen(exc)
            try:
                cur = self._conn.execute(translate(sql), params)
            except psycopg.Error as retry:
                raise pg_error(retry) from None
        if word == "BEGIN":
            self._in_tx = True
        elif word in ("COMMIT", "ROLLBACK"):
            self._in_tx = False
        return cur

    def _reopen(self, cause: psycopg.Error | None) -> None:
        """A new connection, retried with backoff until the connect timeout runs out."""
        deadline = time.monotonic() + self._timeout
        delay = 0.1
        while True:
            try:
                self._conn = self._open()
                return
            except PgError as failed:
                if time.monotonic() + delay > deadline:
                    raise (failed if cause is None else pg_error(cause)) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any] | dict[str, Any]]) -> Any:
        """Run one statement for each parameter set; the cursor (``rowcount`` is the total)."""
        cur = self._conn.cursor()
        try:
            cur.executemany(translate(sql), list(seq))
        except psycopg.Error as exc:
            raise pg_error(exc) from None
        return cur

    @property
    def broken(self) -> bool:
        """True once the server went away (a restart, a dropped network): reconnect."""
        return bool(self._conn.broken or self._conn.closed)

    @property
    def in_transaction(self) -> bool:
        """True inside an explicit transaction (as sqlite3's attribute)."""
        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
