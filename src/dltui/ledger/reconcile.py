"""The reconciler: heals every state a crash, SIGKILL or a vanished file can leave behind.

It plans first and applies second; each action re-checks its precondition under the write lock,
so it is safe to run while workers are live (a job a live worker holds is never touched).

Actions, by ``kind``:

- ``lease_expired``  active job whose lease expired or whose local owner died -> PLANNED
- ``paused`` / ``cancelled``  the same, when the operator had asked for pause / cancel
- ``op_completed``  op left ``started`` whose effect is verifiably on disk -> done
- ``op_reset``      op left ``started`` without a verifiable effect -> failed, runs again
- ``relinked``      after a reboot, a file finished without fsync is gone: re-made from a
                    verified store object
- ``requeued``      the same, with no usable store object -> PLANNED (downloaded again)
- ``reverified``    after a reboot, a file finished without fsync still has its SHA-256
- ``corrupt``       after a reboot, a file dltui placed without fsync lost bytes -> PLANNED
- ``dest_changed``  after a reboot, a file finished without fsync was edited, replaced or
                    turned into something else by someone else: left alone, recorded, never
                    deleted or re-downloaded over
- ``dest_removed``  a finished file is gone and no reboot can have cost it: someone removed
                    it. Recorded once and left gone (the user's deletion stands)
- ``part_deleted``  part file with no job, or whose job is finished or cancelled

Nothing at a destination is removed unless it is provably the file dltui placed there (see
:func:`dltui.files.placed_by_us`), and never a file a job adopted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dltui import files, paths
from dltui.durability import boot_id
from dltui.ledger import actions, events, jobs, objects, ops
from dltui.ledger.clock import now
from dltui.ledger.liveness import lease_is_live
from dltui.model import ACTIVE_STATES, FINAL_STATES, Control, JobState, LinkMode, Placed, Promoted
from dltui.records import as_record
from dltui.store import Store, file_identity, placed_earlier, sha256_file

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

ACTION_KINDS = (
    "lease_expired", "paused", "cancelled", "op_completed", "op_reset",
    "relinked", "requeued", "reverified", "corrupt", "dest_changed", "dest_removed",
    "part_deleted",
)
#: What healing expired leases takes (setting ``auto_reconcile``): jobs no live worker holds
#: go back to the queue (or to the pause or cancel asked for) and their interrupted ops are
#: settled. Nothing touches a file; a worker taking the lease over would do the same.
LEASE_KINDS = frozenset({"lease_expired", "paused", "cancelled", "op_completed", "op_reset"})


@dataclass(frozen=True, slots=True)
class Action:
    """One healing step."""

    kind: str
    job_id: int | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ReconcileReport:
    """What the reconciler did (or, with ``dry_run``, would do)."""

    dry_run: bool
    actions: list[Action]
    skipped: list[Action] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Number of actions of each kind (every kind present, zero included)."""
        out = dict.fromkeys(ACTION_KINDS, 0)
        for action in self.actions:
            out[action.kind] += 1
        return out

    @property
    def total(self) -> int:
        """Number of actions."""
        return len(self.actions)


def _verify_op(store: Store, op: ops.Op) -> tuple[bool, Any]:
    """Whether a ``started`` op's effect is on disk, and the result to record if so."""
    sha = op.args.get("sha256")
    if op.kind == ops.OpKind.FINALIZE and sha and store.has(sha):
        return True, as_record(Promoted(str(store.object_path(sha)), sha, verified=True))
    if op.kind == ops.OpKind.LINK and sha and op.args.get("dest"):
        dest = Path(op.args["dest"])
        if store.has(sha) and store.is_materialized(sha, dest):
            # Provably placed by that op only when it is the object's inode or a temp of
            # dltui's still shares it; else it may be the user's: adopted.
            how = placed_earlier(store.object_path(sha), dest)
            return True, as_record(Placed(str(dest), how or "present", sha, verified=True,
                                          dest_identity=file_identity(dest),
                                          adopted=how is None))
    return False, None


def _claimed(ledger: Ledger, job_id: int, proof: files.Proof) -> bool:
    """True when another job records the same device and inode as placed by it."""
    inode = proof.inode
    return inode is not None and bool(jobs.claimed_inodes(ledger, [inode], besides=[job_id]))


def placed_by_us(ledger: Ledger, row: Any, dest: Path, store: Store) -> bool:
    """True when ``dest`` is provably the file this job placed (:func:`files.placed_by_us`)
    and no other job of the ledger claims its inode."""
    proof = files.Proof.of(row)
    return files.placed_by_us(dest, proof, store) and not _claimed(ledger, row["id"], proof)


def plan(ledger: Ledger) -> list[Action]:
    """Every action the reconciler would take now."""
    store = Store(paths.store_dir(ledger.home))
    at = now()
    actions: list[Action] = []
    end_state: dict[int, JobState] = {}
    live: set[int] = set()
    dead: dict[str, bool] = {}

    active = [s.value for s in ACTIVE_STATES]
    rows = ledger.conn.execute(
        f"SELECT id, state, control, lease_owner, lease_until FROM jobs "
        f"WHERE state IN ({','.join('?' * len(active))}) ORDER BY id",
        active,
    ).fetchall()
    for row in rows:
        if lease_is_live(row["lease_owner"], row["lease_until"], at, dead):
            live.add(row["id"])
            continue
        control = row["control"]
        kind, target = "lease_expired", JobState.PLANNED
        if control == Control.PAUSE.value:
            kind, target = "paused", JobState.PAUSED
        elif control == Control.CANCEL.value:
            kind, target = "cancelled", JobState.CANCELLED
        end_state[row["id"]] = target
        actions.append(Action(kind, row["id"], f"{row['state']} -> {target} "
                              f"(owner {row['lease_owner'] or 'none'} gone or expired)",
                              {"owner": row["lease_owner"], "from": row["state"]}))

    for op in ops.started(ledger):
        if op.job_id in live:
            continue
        done, result = _verify_op(store, op)
        if done:
            actions.append(Action("op_completed", op.job_id, f"{op.kind} effect verified",
                                  {"key": op.key, "result": result}))
        else:
            actions.append(Action("op_reset", op.job_id, f"{op.kind} interrupted; will run again",
                                  {"key": op.key, "dest": op.args.get("dest")
                                   if op.kind == ops.OpKind.LINK else None}))

    this_boot = boot_id()
    for row in ledger.conn.execute(
        "SELECT id, sha256, final_path, boot_id, bytes_durable, bytes_committed, final_dev, "
        "final_ino, final_mtime_ns, final_size, final_ctime_ns, adopted, final_removed_at "
        "FROM jobs WHERE state = 'FINALIZED' AND final_path IS NOT NULL"
    ):
        dest = Path(row["final_path"])
        # Finished without fsync, then the host went down: the page cache may have died with
        # the bytes. (An adopted file was never dltui's to write.)
        lost = (this_boot is not None and row["boot_id"] not in (None, this_boot)
                and (row["bytes_durable"] or 0) < row["bytes_committed"]
                and not row["adopted"])
        if os.path.lexists(dest):
            if lost:
                # Whatever the file holds now is on disk: check it.
                regular = file_identity(dest) is not None
                if regular and row["sha256"] and sha256_file(dest) == row["sha256"]:
                    actions.append(Action("reverified", row["id"],
                                          f"{dest} survived the reboot intact",
                                          {"size": row["bytes_committed"]}))
                elif placed_by_us(ledger, row, dest, store):
                    end_state[row["id"]] = JobState.PLANNED
                    actions.append(Action("corrupt", row["id"],
                                          f"{dest} lost bytes in a reboot; downloading again",
                                          {"dest": str(dest), "sha256": row["sha256"],
                                           "identity": file_identity(dest)}))
                else:
                    # Not provably ours: someone edited or replaced it. Theirs stays; the
                    # download is made again beside it (as "name (1).ext").
                    end_state[row["id"]] = JobState.PLANNED
                    actions.append(Action("dest_changed", row["id"],
                                          f"{dest} was changed by someone else; left as it "
                                          "is, downloading again beside it",
                                          {"dest": str(dest)}))
            continue
        sha = row["sha256"]
        if not lost:
            # Gone without a reboot that could have cost it: someone removed it. That stands.
            if row["final_removed_at"] is None:
                actions.append(Action("dest_removed", row["id"],
                                      f"{dest} was removed by someone; left gone",
                                      {"dest": str(dest), "sha256": sha}))
        elif sha and store.has(sha):
            actions.append(Action("relinked", row["id"],
                                  f"{dest} was lost in a reboot; re-made from the store",
                                  {"sha256": sha, "dest": str(dest),
                                   "size": row["bytes_committed"]}))
        else:
            end_state[row["id"]] = JobState.PLANNED
            actions.append(Action("requeued", row["id"],
                                  f"{dest} was lost in a reboot and is not stored; "
                                  "downloading again", {"dest": str(dest)}))

    parts_dir = paths.parts_dir(ledger.home)
    if parts_dir.is_dir():
        for part in sorted(parts_dir.iterdir()):
            job_id = paths.part_job_id(part.name)
            if job_id is None or not part.is_file():
                continue
            state = end_state.get(job_id)
            if state is None:
                row = ledger.conn.execute(
                    "SELECT state FROM jobs WHERE id = ?", (job_id,)
                ).fetchone()
                state = JobState(row[0]) if row else None
            if state is None or state in FINAL_STATES:
                why = "no such job" if state is None else f"job is {state}"
                actions.append(Action("part_deleted", job_id, f"{part.name}: {why}",
                                      {"path": str(part)}))
    return actions


def _apply(ledger: Ledger, store: Store, action: Action, by: str,
           link_mode: LinkMode = "auto") -> bool:
    """Carry out one action; False when its precondition no longer holds."""
    kind, job_id = action.kind, action.job_id
    if kind in ("lease_expired", "paused", "cancelled"):
        assert job_id is not None
        target = {"lease_expired": JobState.PLANNED, "paused": JobState.PAUSED,
                  "cancelled": JobState.CANCELLED}[kind]
        with ledger.write() as conn:
            row = conn.execute(
                "SELECT state, lease_owner, lease_until FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if (row is None or JobState(row["state"]) not in ACTIVE_STATES
                    or row["lease_owner"] != action.data.get("owner")
                    or lease_is_live(row["lease_owner"], row["lease_until"])):
                return False
            jobs.transition_in(conn, job_id, target, reason="reconciler: lease expired",
                               fields=dict(jobs.CLEAR_LEASE), previous_owner=row["lease_owner"],
                               by=by)
        return True
    if kind == "op_completed":
        ops.settle(ledger, action.data["key"], done=True, result=action.data["result"])
        return True
    if kind == "op_reset":
        ops.settle(ledger, action.data["key"], done=False,
                   error="interrupted; reset by the reconciler")
        if action.data.get("dest"):  # a LINK that died mid-copy leaves a hidden temp file
            files.sweep_temps(Path(action.data["dest"]).parent)
        return True
    if kind == "relinked":
        assert job_id is not None
        dest, sha = Path(action.data["dest"]), action.data["sha256"]
        if os.path.lexists(dest):
            return False
        if not objects.verify(ledger, store, sha, job_id=job_id, by=by):
            # Gone, or edited through a hard link: never re-made from it.
            return _apply(ledger, store, Action("requeued", job_id, action.detail), by)
        how = files.remake(store, sha, dest, link_mode)
        if how is None:
            return False  # someone put a file there meanwhile (theirs), or the object went
        placed = file_identity(dest)
        with ledger.write() as conn:
            # materialize fsyncs the file and its directory: it is durable in this boot.
            jobs.write_row(conn, job_id, {**jobs.dest_fields(placed), "boot_id": boot_id(),
                                          "bytes_durable": action.data.get("size")},
                           "AND state = 'FINALIZED'", ())
            after = store.identity(sha)
            if after is not None:
                objects.record_in(conn, [(sha, after)])
        events.record(ledger, "relinked", job_id, dest=str(dest), how=how, by=by)
        return True
    if kind == "requeued":
        assert job_id is not None
        return actions.download_again(ledger, job_id, reason="reconciler: file lost",
                                      by=by)
    if kind == "dest_removed":
        assert job_id is not None
        with ledger.write() as conn:
            row = conn.execute("SELECT state, final_path FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
            if row is None or row[0] != JobState.FINALIZED.value or \
                    row[1] != action.data["dest"] or os.path.lexists(action.data["dest"]):
                return False
            jobs.write_row(conn, job_id, {"final_removed_at": now()},
                           "AND state = 'FINALIZED'", ())
            events.append(conn, "dest_removed", job_id, dest=action.data["dest"], by=by,
                          detail="the finished file was removed by someone; left gone")
        return True
    if kind == "reverified":
        assert job_id is not None
        with ledger.write() as conn:
            jobs.write_row(conn, job_id, {"bytes_durable": action.data["size"],
                                          "boot_id": boot_id()},
                           "AND state = 'FINALIZED'", ())
        return True
    if kind == "corrupt":
        assert job_id is not None
        dest, sha = Path(action.data["dest"]), action.data["sha256"]
        # Proven ours when planned; if it changed since, it is someone's now: left alone.
        if not files.remove_placed(dest, action.data["identity"]):
            return False
        if sha:  # the store object may have lost the same bytes: quarantined if so
            objects.verify(ledger, store, sha, rehash=True, job_id=job_id, by=by)
        return _apply(ledger, store, Action("requeued", job_id, action.detail), by)
    if kind == "dest_changed":
        assert job_id is not None
        events.record(ledger, "dest_changed", job_id, dest=action.data["dest"], by=by,
                      detail="destination changed by someone else; left as it is")
        return _apply(ledger, store, Action("requeued", job_id, action.detail), by)
    if kind == "part_deleted":
        return files.delete_orphan_part(ledger.home, Path(action.data["path"]))
    raise ValueError(f"unknown reconcile action {kind!r}")


def reconcile(ledger: Ledger, *, dry_run: bool = False, by: str = "reconciler",
              link_mode: LinkMode = "auto",
              kinds: frozenset[str] | None = None) -> ReconcileReport:
    """Plan and (unless ``dry_run``) apply every healing action; records a ``reconcile`` event.

    ``link_mode`` is how a vanished file is re-made from the store (the setting); ``kinds``
    keeps only those actions (e.g. :data:`LEASE_KINDS`).
    """
    actions = [a for a in plan(ledger) if kinds is None or a.kind in kinds]
    report = ReconcileReport(dry_run=dry_run, actions=[])
    store = Store(paths.store_dir(ledger.home))
    for action in actions:
        if dry_run or _apply(ledger, store, action, by, link_mode):
            report.actions.append(action)
        else:
            report.skipped.append(action)
    events.record(ledger, "reconcile", None, dry_run=dry_run, by=by,
                  counts={k: v for k, v in report.counts.items() if v})
    return report
