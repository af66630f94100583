"""Waiting for the ledger to change: PostgreSQL tells (LISTEN/NOTIFY), SQLite is polled.

Every PostgreSQL write transaction raises a notification on the channel ``dltui`` when it
takes the write lock; PostgreSQL delivers it at commit (never for a rollback, and once per
transaction). A :class:`ChangeWaiter` wakes a reader at once; on SQLite, or when the listening
connection fails, it simply waits out the poll interval, so polling stays the fallback.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

CHANNEL = "dltui"


class ChangeWaiter:
    """``wait(timeout)`` returns early when another process committed a change."""

    def __init__(self, ledger: Ledger) -> None:
        self._conn: Any = None
        if ledger.pg:
            import psycopg

            try:
                self._conn = psycopg.connect(ledger.location, autocommit=True,
                                             connect_timeout=10)
                self._conn.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error:  # no listening: the poll interval still applies
                self.close()

    @property
    def listening(self) -> bool:
        """True while changes are announced (PostgreSQL); False: polling only."""
        return self._conn is not None

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Wait up to ``timeout`` seconds; True as soon as a change was announced."""
        if self._conn is None:
            stop.wait(timeout)
            return False
        import psycopg  # there is a listening connection: psycopg is installed

        try:
            # Short slices, so that ``stop`` is seen within a fifth of a second.
            remaining = timeout
            while remaining > 0 and not stop.is_set():
                step = min(0.2, remaining)
                for _ in self._conn.notifies(timeout=step, stop_after=1):
                    return True
                remaining -= step
        except (OSError, psycopg.Error):
            self.close()  # the server went away: poll from now on
            stop.wait(timeout)
        return False

    def close(self) -> None:
        """Stop listening."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
