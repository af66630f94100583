"""Store objects' recorded identities: what each object looked like when dltui last vouched
for its bytes (at promotion, after each link, after a re-hash)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dltui.ledger import events
from dltui.ledger.clock import now
from dltui.model import FileIdentity
from dltui.store import Store

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

_UPSERT = (
    "INSERT INTO objects (sha256, size, dev, ino, mtime_ns, ctime_ns, recorded_at, used_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET size = excluded.size, "
    "dev = excluded.dev, ino = excluded.ino, mtime_ns = excluded.mtime_ns, "
    "ctime_ns = excluded.ctime_ns, recorded_at = excluded.recorded_at, "
    "used_at = excluded.used_at"
)


def record_in(conn: sqlite3.Connection, items: Iterable[tuple[str, FileIdentity]]) -> None:
    """Record (or refresh) objects' identities inside the caller's transaction; each counts
    as used now (the store's budget keeps the most recently used)."""
    at = now()
    # In digest order: two shared writers recording the same objects lock them alike.
    conn.executemany(_UPSERT, [(sha, i.size, i.dev, i.ino, i.mtime_ns, i.ctime_ns, at, at)
                               for sha, i in sorted(items, key=lambda item: item[0])])


def record(ledger: Ledger, sha256: str, identity: FileIdentity) -> None:
    """:func:`record_in` in a transaction of its own."""
    with ledger.write(shared=True) as conn:
        record_in(conn, [(sha256, identity)])


def get(ledger: Ledger, sha256: str) -> FileIdentity | None:
    """The recorded identity of an object, or None when none was recorded."""
    row = ledger.conn.execute(
        "SELECT size, dev, ino, mtime_ns, ctime_ns FROM objects WHERE sha256 = ?", (sha256,)
    ).fetchone()
    return FileIdentity(*row) if row else None


def get_many(ledger: Ledger, digests: Iterable[str]) -> dict[str, FileIdentity]:
    """:func:`get` for many objects at once (those with no record are left out)."""
    wanted = sorted(set(digests))
    out: dict[str, FileIdentity] = {}
    for at in range(0, len(wanted), 500):
        chunk = wanted[at:at + 500]
        out.update((r[0], FileIdentity(*r[1:])) for r in ledger.conn.execute(
            "SELECT sha256, size, dev, ino, mtime_ns, ctime_ns FROM objects "
            f"WHERE sha256 IN ({','.join('?' * len(chunk))})", chunk))
    return out


def forget(ledger: Ledger, sha256: str) -> None:
    """Drop an object's record (it was quarantined or vanished)."""
    with ledger.write() as conn:
        conn.execute("DELETE FROM objects WHERE sha256 = ?", (sha256,))


def all_records(ledger: Ledger) -> dict[str, FileIdentity]:
    """Every recorded object, for `dltui check`."""
    return {r[0]: FileIdentity(*r[1:]) for r in ledger.conn.execute(
        "SELECT sha256, size, dev, ino, mtime_ns, ctime_ns FROM objects")}


def verify(ledger: Ledger, store: Store, sha256: str, *, rehash: bool = False,
           job_id: int | None = None, by: str | None = None) -> bool:
    """True when the stored object may be reused: present, and its bytes still its digest.

    The object's identity is compared with the record (see :meth:`Store.check`). One that
    changed is re-hashed and, if good, re-recorded; a bad one is quarantined, its record
    dropped and a ``store_tampered`` event written, and the caller fetches the content again.
    """
    recorded = get(ledger, sha256)
    current, moved = store.check(sha256, recorded, rehash=rehash)
    if current is None:
        if moved is not None:
            events.record(ledger, "store_tampered", job_id, sha256=sha256,
                          quarantined=str(moved), by=by,
                          detail="the stored object no longer has its SHA-256 (edited "
                                 "through a hard link?); downloading again")
        if recorded is not None:
            forget(ledger, sha256)
        return False
    if current != recorded:
        record(ledger, sha256, current)
    return True
