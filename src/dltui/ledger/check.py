"""The ledger's self-check: SQLite's integrity check, the ledger's invariants, and (deep) every
stored object re-hashed. It reads only: each problem names what heals it (the reconciler, a
deep check, or the operator)."""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dltui import files, paths
from dltui.ledger import objects
from dltui.ledger.migrations import SCHEMA_VERSION, schema_version
from dltui.model import ACTIVE_STATES, FINAL_STATES, JobState
from dltui.store import Store, sha256_file

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing found wrong: a short ``kind``, the job it concerns, and what to do."""

    kind: str
    job_id: int | None
    detail: str
    #: What heals it: "reconcile", "deep" (a deep check decides), or None (the operator).
    remedy: str | None = None
    #: Worth knowing, not wrong: a user's change to their own files (a removed or edited
    #: download) that dltui leaves as it is.
    note: bool = False


def check(ledger: Ledger, *, deep: bool = False) -> list[Problem]:
    """Every problem found; an empty list means the ledger and the store are consistent."""
    conn = ledger.conn
    if not ledger.pg:  # a PostgreSQL server checks its own pages
        try:
            rows = [r[0] for r in conn.execute("PRAGMA integrity_check(100)")]
        except sqlite3.DatabaseError as exc:
            return [Problem("sqlite", None, f"{ledger.path}: {exc}")]
        if rows != ["ok"]:
            return [Problem("sqlite", None, f"{ledger.path}: {r}") for r in rows]
    version = schema_version(ledger)
    if version != SCHEMA_VERSION:
        return [Problem("schema", None, f"schema version {version}, this dltui uses "
                        f"{SCHEMA_VERSION}; any other dltui command migrates it")]
    out: list[Problem] = []
    active = {s.value for s in ACTIVE_STATES}
    states: dict[int, str] = {}
    store = Store(paths.store_dir(ledger.home))
    for r in conn.execute("SELECT id, state, lease_owner, sha256, final_path, final_dev, "
                          "final_ino, final_mtime_ns, final_size, final_ctime_ns, adopted, "
                          "final_removed_at FROM jobs"):
        job_id, state = r["id"], r["state"]
        states[job_id] = state
        if state in active and r["lease_owner"] is None:
            out.append(Problem("no_lease", job_id, f"{state} without a lease holder",
                               "reconcile"))
        if state not in active and r["lease_owner"] is not None:
            out.append(Problem("stray_lease", job_id, f"{state} but leased by "
                               f"{r['lease_owner']}"))
        if state == JobState.FINALIZED.value:
            if not r["sha256"] or not r["final_path"]:
                out.append(Problem("finalized_incomplete", job_id,
                                   "FINALIZED without a digest or a file path"))
            elif not os.path.lexists(r["final_path"]):
                # The user's deletion stands: a note, not a problem (after a reboot that may
                # have cost the file, the reconciler makes it again).
                out.append(Problem("file_removed", job_id, f"{r['final_path']} was removed; "
                                   "`dltui get` of its URL downloads it again", note=True))
            elif r["adopted"]:
                pass  # the user's file, found holding the bytes: nothing to prove
            elif r["final_ino"] is not None and not files.placed_by_us(
                    Path(r["final_path"]), files.Proof.of(r), store):
                out.append(Problem("file_changed", job_id, f"{r['final_path']} is not the "
                                   "file dltui placed (edited or replaced by someone else)",
                                   note=True))
    for r in conn.execute("SELECT key, job_id, kind FROM ops WHERE status = 'started'"):
        if states.get(r["job_id"]) not in active:
            out.append(Problem("op_open", r["job_id"], f"{r['kind']} op still started for a "
                               f"{states.get(r['job_id'], 'missing')} job", "reconcile"))
    parts = paths.parts_dir(ledger.home)
    if parts.is_dir():
        finished = {s.value for s in FINAL_STATES}
        for part in sorted(parts.iterdir()):
            owner = paths.part_job_id(part.name)
            if owner is not None and (owner not in states or states[owner] in finished):
                out.append(Problem("orphan_part", owner, f"{part} belongs to no running job",
                                   "reconcile"))
    recorded = objects.all_records(ledger)
    needed = {r[0] for r in conn.execute(
        "SELECT DISTINCT sha256 FROM jobs WHERE sha256 IS NOT NULL "
        "AND state NOT IN ('FINALIZED', 'CANCELLED')")}
    for sha, ident in sorted(recorded.items()):
        now_ident = store.identity(sha)
        if now_ident is None:
            # Only a problem while an unfinished job needs it; else a stale record (a
            # collection cut short) that the next collection drops.
            out.append(Problem("object_missing", None, f"store object {sha} is gone",
                               note=sha not in needed))
        elif not now_ident.same_file(ident) and not deep:
            out.append(Problem("object_changed", None, f"store object {sha} changed since it "
                               "was recorded", "deep"))
    if deep and store.root.is_dir():
        for shard in sorted(store.root.iterdir()):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for obj in sorted(shard.iterdir()):
                if _SHA.match(obj.name) and sha256_file(obj) != obj.name:
                    out.append(Problem("object_corrupt", None, f"store object {obj} does not "
                                       "hash to its name; it will be quarantined when next "
                                       "used"))
    return out
