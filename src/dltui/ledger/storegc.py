"""The store's collector: which objects keep bytes of their own, and which of those go.

An object costs nothing while a finished file shares its inode (a hard link) or all its
extents (a reflink); deleting it would free nothing. Every other object holds bytes only the
store holds. The budget (setting ``store_size``) keeps the most recently used of those as a
cache; the rest are deleted, except the objects an unfinished job names (its digest is set
while FINALIZE or LINK is still to come, or while a ``cached`` decision uses the object).

The decision is taken and carried out under the ledger's write lock: a job records its hold
in a write of its own, so either that write came first and the object stays, or the job
finds the object gone after it and downloads instead. Each deletion is ``Store.discard``,
which re-checks the link count under the object's flock; the object's record goes in the
same transaction. A crash after an unlink and before the commit leaves a record without a
file, which every reader treats as "not stored" and the next whole-store collection drops.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dltui import paths
from dltui.ledger import events
from dltui.store import Store, StoredObject

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

#: Quarantined files (bytes that failed their digest) are kept this long for inspection.
QUARANTINE_DAYS = 7
_CHUNK = 500


@dataclass(slots=True)
class Survey:
    """What the store holds now (``dltui store``)."""

    objects: int = 0
    bytes: int = 0  #: the objects' sizes, shared or not
    alone: int = 0  #: bytes only the store holds (freed by deleting them)
    alone_objects: int = 0
    held: int = 0  #: objects an unfinished job still needs
    budget: int = 0
    quarantined: int = 0
    quarantined_bytes: int = 0


@dataclass(slots=True)
class GcReport:
    """What one collection deleted (or, with ``dry_run``, would delete)."""

    dry_run: bool
    deleted: list[tuple[str, int]] = field(default_factory=list)  #: (digest, bytes freed)
    quarantine: list[tuple[str, int]] = field(default_factory=list)  #: (path, bytes freed)
    kept: int = 0  #: objects with bytes of their own that the budget keeps

    @property
    def freed(self) -> int:
        """Bytes given back to the filesystems."""
        return sum(n for _, n in self.deleted) + sum(n for _, n in self.quarantine)


def _held(ledger: Ledger, digests: Collection[str] | None) -> set[str]:
    """Digests an unfinished job names: FINALIZE or LINK to come, or a ``cached`` reuse."""
    sql = ("SELECT DISTINCT sha256 FROM jobs WHERE sha256 IS NOT NULL "
           "AND state NOT IN ('FINALIZED', 'CANCELLED')")
    if digests is None:
        return {r[0] for r in ledger.conn.execute(sql)}
    wanted, out = sorted(digests), set[str]()
    for at in range(0, len(wanted), _CHUNK):
        chunk = wanted[at:at + _CHUNK]
        out.update(r[0] for r in ledger.conn.execute(
            f"{sql} AND sha256 IN ({','.join('?' * len(chunk))})", chunk))
    return out


def _recorded(ledger: Ledger) -> list[str]:
    return [r[0] for r in ledger.conn.execute("SELECT sha256 FROM objects")]


def _used_at(ledger: Ledger) -> dict[str, float]:
    return {r[0]: r[1] or r[2] or 0.0 for r in ledger.conn.execute(
        "SELECT sha256, used_at, recorded_at FROM objects")}


def _objects(store: Store, only: Collection[str] | None) -> list[StoredObject]:
    if only is None:
        return list(store.scan())
    return [o for o in (store.stat_object(sha) for sha in sorted(set(only))) if o is not None]


def survey(ledger: Ledger, store: Store | None = None, *, budget: int = 0) -> Survey:
    """Count what the store holds, for people."""
    store = store or Store(paths.store_dir(ledger.home))
    held = _held(ledger, None)
    out = Survey(budget=budget)
    for obj in store.scan():
        out.objects += 1
        out.bytes += obj.size
        if obj.cost:
            out.alone += obj.cost
            out.alone_objects += 1
        if obj.sha256 in held:
            out.held += 1
    for _, cost in store.quarantined():
        out.quarantined += 1
        out.quarantined_bytes += cost
    return out


def _plan(ledger: Ledger, objs: list[StoredObject], held: set[str],
          budget: int) -> tuple[list[StoredObject], int]:
    """The objects to delete, most recently used kept first while they fit the budget; and
    how many the budget keeps."""
    costly = [o for o in objs if o.cost > 0 and o.sha256 not in held]
    if budget <= 0:
        return costly, 0
    used = _used_at(ledger)
    costly.sort(key=lambda o: used.get(o.sha256) or o.mtime, reverse=True)
    room, kept, doomed = budget, 0, []
    for obj in costly:
        if obj.cost <= room:
            room -= obj.cost
            kept += 1
        else:
            doomed.append(obj)
            room = -1  # least recently used past the first that does not fit: all go
    return doomed, kept


def collect(ledger: Ledger, store: Store | None = None, *, budget: int = 0,
            only: Collection[str] | None = None, dry_run: bool = False,
            by: str = "gc") -> GcReport:
    """Delete every object that holds bytes of its own and that neither an unfinished job
    nor the budget keeps. ``only`` limits it to those digests (after a job finishes: with a
    budget the whole store is weighed, so ``only`` is then ignored)."""
    store = store or Store(paths.store_dir(ledger.home))
    if budget > 0:
        only = None
    report = GcReport(dry_run=dry_run)
    objs = _objects(store, only)
    old = _old_quarantine(store) if only is None else []
    if not objs and not old and (only is not None or not _recorded(ledger)):
        return report
    if dry_run:
        doomed, report.kept = _plan(ledger, objs, _held(ledger, only), budget)
        report.deleted = [(o.sha256, o.cost) for o in doomed]
        report.quarantine = old
        return report
    with ledger.write() as conn:
        doomed, report.kept = _plan(ledger, objs, _held(ledger, only), budget)
        for obj in doomed:
            freed = store.discard(obj.sha256)
            if freed is not None:
                report.deleted.append((obj.sha256, freed))
        gone = [sha for sha, _ in report.deleted]
        if only is None:
            # Records of objects that are gone (a collection killed between its unlink and
            # its commit, a hand-made deletion): nothing to verify any more.
            present = {o.sha256 for o in objs}
            gone += [sha for sha in _recorded(ledger) if sha not in present]
        for at in range(0, len(gone), _CHUNK):
            chunk = gone[at:at + _CHUNK]
            conn.execute(f"DELETE FROM objects WHERE sha256 IN ({','.join('?' * len(chunk))})",
                         chunk)
        for path, cost in old:
            if store.drop_quarantined(path):
                report.quarantine.append((path, cost))
        if report.deleted or report.quarantine:
            events.append_many(conn, [("store_gc", None, {
                "by": by, "objects": len(report.deleted), "freed": report.freed,
                "quarantined": len(report.quarantine)})])
    return report


def _old_quarantine(store: Store) -> list[tuple[str, int]]:
    """Quarantined files past :data:`QUARANTINE_DAYS` (named ``<digest>.<time_ns>``)."""
    cutoff = time.time_ns() - QUARANTINE_DAYS * 86400 * 10**9
    out = []
    for path, cost in store.quarantined():
        stamp = path.name.rpartition(".")[2]
        if stamp.isdigit() and int(stamp) < cutoff:
            out.append((str(path), cost))
    return out
