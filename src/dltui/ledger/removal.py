"""Housekeeping: removing the rows of jobs that are over (FINALIZED, FAILED, CANCELLED).

A row goes with its ops and segments in one transaction; the event log keeps its history and
gains a ``removed`` event. Files are the caller's business, after the commit: a crash in
between leaves a file (or a part, which the reconciler clears) but never a row that points at
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from dltui import files
from dltui.errors import NotApplicable, UnknownJob
from dltui.ledger import events, jobs, storegc
from dltui.ledger.jobs import _COLUMNS
from dltui.model import Job, JobState
from dltui.store import Store, alone_bytes, file_identity

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

#: States whose rows may be removed: nothing works on these jobs any more.
REMOVABLE: frozenset[JobState] = frozenset(
    {JobState.FINALIZED, JobState.FAILED, JobState.CANCELLED})
_CHUNK = 500  # ids per statement: SQLite's limit on host parameters is far above this


def select(ledger: Ledger, states: Collection[JobState], *,
           finished_before: float | None = None) -> list[int]:
    """Ids of jobs in ``states`` (each removable), finished before ``finished_before``."""
    wanted = [s.value for s in states if s in REMOVABLE]
    if not wanted:
        return []
    sql = f"SELECT id FROM jobs WHERE state IN ({','.join('?' * len(wanted))})"
    params: list[object] = list(wanted)
    if finished_before is not None:
        sql += " AND COALESCE(finished_at, updated_at) < ?"
        params.append(finished_before)
    return [int(r[0]) for r in ledger.conn.execute(sql + " ORDER BY id", params)]


def remove(ledger: Ledger, ids: Sequence[int], *, by: str = "cli") -> list[Job]:
    """Remove the rows of ``ids`` (with their ops and segments), then their parts, and return
    the jobs as they were.

    All or nothing: an unknown id, or a job still queued, running or paused, refuses the whole
    call (UnknownJob / NotApplicable) and changes nothing.
    """
    removed: list[Job] = []
    with ledger.write() as conn:
        for at in range(0, len(ids), _CHUNK):
            chunk = list(ids[at:at + _CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = {int(r["id"]): Job.from_row(r) for r in conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE id IN ({marks})", chunk)}
            for job_id in chunk:
                job = rows.get(job_id)
                if job is None:
                    raise UnknownJob(job_id)
                if job.state not in REMOVABLE:
                    raise NotApplicable(job_id, job.state.value, "remove",
                                        sorted(s.value for s in REMOVABLE))
                removed.append(job)
            for table in ("ops", "segments"):
                conn.execute(f"DELETE FROM {table} WHERE job_id IN ({marks})", chunk)
            conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)
        events.append_many(conn, (("removed", job.id, {"state": job.state.value, "by": by})
                                  for job in removed))
    for job in removed:  # after the commit: a crash before this leaves orphans, which the
        files.delete_parts(ledger.home, job.id)  # reconciler clears; never a dangling row
    return removed


@dataclass(slots=True)
class FilesReport:
    """What ``remove --delete-files`` gave back."""

    files: int = 0
    freed: int = 0  #: bytes given back: the files, their store objects
    kept: list[tuple[str, str]] = field(default_factory=list)  #: (path, why)


def delete_files(ledger: Ledger, removed: Sequence[Job], store: Store) -> FilesReport:
    """After :func:`remove`: delete each finished job's file where provably the one it
    placed, then the store objects no remaining job keeps (the budget does not keep them:
    the operator asked for the bytes back). Adopted files and files not provably dltui's
    are kept and named."""
    report = FilesReport()
    finished = [j for j in removed if j.state is JobState.FINALIZED and j.final_path]
    proofs = {j.id: files.Proof.of(j) for j in finished}
    # An inode a job still in the ledger claims is not provably the removed job's.
    claimed = jobs.claimed_inodes(ledger, [p.inode for p in proofs.values()
                                           if p.inode is not None])
    for job in finished:
        dest, proof = Path(cast(str, job.final_path)), proofs[job.id]
        if not os.path.lexists(dest):
            continue
        if proof.adopted:
            report.kept.append((str(dest), "it was there before the job finished (adopted), "
                                           "so it is not dltui's to delete"))
            continue
        ident = file_identity(dest)
        if ident is not None and proof.inode not in claimed and \
                files.placed_by_us(dest, proof, store):
            freed = alone_bytes(dest)
            if files.remove_placed(dest, ident):
                report.files += 1
                report.freed += freed
                continue
        report.kept.append((str(dest), "not provably the file dltui placed (edited, replaced "
                                       "or not a plain file)"))
    digests = {j.sha256 for j in removed if j.sha256}
    if digests:
        report.freed += storegc.collect(ledger, store, only=digests, by="remove").freed
    return report


def removed_since(ledger: Ledger, after: int) -> tuple[list[int], int]:
    """Job ids removed after event id ``after``, and the newest event id now: how a watcher
    that caches rows (the TUI) learns of rows that are gone."""
    newest = int(ledger.conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
    if newest <= after:
        return [], newest
    rows = ledger.conn.execute(
        "SELECT job_id FROM events WHERE id > ? AND id <= ? AND kind = 'removed'",
        (after, newest))
    return [int(r[0]) for r in rows if r[0] is not None], newest
