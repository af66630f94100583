"""``dltui ledger copy``: a SQLite ledger's rows into an empty PostgreSQL ledger, ids kept."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dltui.errors import LedgerError
from dltui.ledger import events
from dltui.ledger._db import db_error, mark_moved, sqlite_error_kind
from dltui.ledger.liveness import hostname

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

#: The tables a copy carries, parents first; ``migrations`` is the destination's own.
TABLES = ("meta", "flags", "host_limits", "host_status", "objects", "jobs", "ops", "segments",
          "events")  # not ``processes``: the workers of a one-host ledger are not the fleet's
#: Tables whose ``id`` comes from an identity column the copy moves past the copied ids.
_IDENTITIES = {"jobs": "id", "events": "id"}


@dataclass(slots=True)
class CopyReport:
    """Rows copied per table."""

    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Every row copied."""
        return sum(self.rows.values())


def copy_ledger(source: Ledger, dest: Ledger) -> CopyReport:
    """Copy every row of ``source`` into ``dest``, which must hold no jobs yet.

    The source is held under its write lock for the whole copy, so no worker changes it
    half-way; the destination commits all or nothing. Jobs with bytes on this host's disk
    get this host as their part's host, so the fleet leaves their parts to it.
    """
    if source.pg or not dest.pg:
        raise LedgerError("ledger copy goes from this home's SQLite ledger to a PostgreSQL one")
    report = CopyReport()
    try:
        with source.write(moved_ok=True) as src, dest.write() as dst:
            if dst.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]:
                raise LedgerError(f"ledger {dest.path} already holds jobs; copy only into an empty "
                                  "ledger (a new database)")
            dst.execute("DELETE FROM meta")
            dst.execute("DELETE FROM flags")
            for table in TABLES:
                columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
                if not columns:
                    continue
                names = ", ".join(f'"{c}"' for c in columns)
                # A copied ledger's own mark stays behind: the copy is no moved ledger.
                where = " WHERE key <> 'moved_to'" if table == "meta" else ""
                rows = src.execute(f"SELECT {names} FROM {table}{where}").fetchall()
                if rows:
                    dst.executemany(
                        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})",
                        [tuple(r) for r in rows])
                report.rows[table] = len(rows)
            for table, column in _IDENTITIES.items():
                dst.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                            f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")
            # SQLite's rev counter becomes the sequence's position (PostgreSQL has no meta rev).
            dst.execute("SELECT setval('jobs_rev', GREATEST(COALESCE((SELECT MAX(value) FROM meta "
                        "WHERE key = 'rev'), 0), COALESCE((SELECT MAX(rev) FROM jobs), 0), 1))")
            dst.execute("DELETE FROM meta WHERE key = 'rev'")
            dst.execute("UPDATE jobs SET part_host = ? WHERE bytes_committed > 0 "
                        "AND part_host IS NULL", (hostname(),))
            # Committed with the copy (after it, in the same source transaction): from now on a
            # job added or run here would be lost to the fleet.
            mark_moved(src, str(dest.path))
            events.append(src, "ledger_copied", None, to=str(dest.path), jobs=report.rows["jobs"])
    except sqlite3.Error as exc:
        # Either transaction failing rolls both back: nothing was copied, nothing marked.
        if dest.pg and hasattr(exc, "sqlstate"):  # the server's error, not the file's
            gone = sqlite_error_kind(exc) == "SQLITE_CANTOPEN"
            raise LedgerError(f"ledger copy to {dest.path} failed, nothing was copied "
                              f"({str(exc) or type(exc).__name__})"
                              + ("; run it again once the server is reachable" if gone else "")
                              ) from None
        raise db_error(source.path, exc) from None
    return report
