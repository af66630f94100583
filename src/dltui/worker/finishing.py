"""The finishing steps of a JobRun: FINALIZE (into the store) and LINK (to the destination)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dltui import durability
from dltui.engine import finalize
from dltui.ledger import jobs, objects, ops
from dltui.model import JobState, PartIdentity, Placed, Promoted
from dltui.records import as_record, decode
from dltui.store import sweep_temps
from dltui.worker.base import RunBase


class Finishing(RunBase):
    """Promotes the verified part and places the file, each step an exactly-once op."""

    def _link_and_finish(self, sha: str, name: str,
                         part_identity: PartIdentity | None = None) -> None:
        """FINALIZE and LINK; ``part_identity`` is the part as the download left it (only
        that file is ever stored or placed under ``sha``)."""
        pool, job = self.pool, self.job
        dest_dir = Path(job.dest_dir)
        fsync = self.sync_finished
        store = pool.store
        finalize_key = ops.finalize_key(job.id, sha)
        if finalize_key in self._prestarted or self.flags.dedupe or (
                store.has(sha) and not self.part.exists()):
            part = self.part
            link_key = ops.link_key(job.id, sha, dest_dir)
            link_args = {"sha256": sha, "dest": str(dest_dir / name)}

            def start_link(conn: Any, record: dict[str, Any]) -> None:
                promoted = decode(Promoted, record)
                if promoted.identity is not None:
                    objects.record_in(conn, [(sha, promoted.identity)])
                # LINK is the next effect: mark it started with FINALIZE's completion.
                ops.start_in(conn, link_key, job_id=job.id, kind=ops.OpKind.LINK, owner=self.owner,
                             attempt=job.attempts, args=link_args)
                self._prestarted.add(link_key)

            # A pre-start counts once: a retry after a failed effect starts the op anew.
            fin_started = finalize_key in self._prestarted
            self._prestarted.discard(finalize_key)
            ops.run_effect(
                self.ledger, finalize_key,
                lambda: as_record(finalize.promote(store, part, sha, fsync=fsync,
                                                   keep=objects.get(self.ledger, sha),
                                                   expect=part_identity)),
                job_id=job.id, kind=ops.OpKind.FINALIZE, owner=self.owner, attempt=job.attempts,
                args={"sha256": sha},
                verify=lambda r: store.has(sha) and not part.exists(),
                on_done=start_link, started=fin_started,
            )
            link_started = link_key in self._prestarted
            self._prestarted.discard(link_key)
            if not link_started:
                self._sweep_if_rerun(link_key, dest_dir)
            record = ops.run_effect(
                self.ledger, link_key,
                lambda: as_record(finalize.link(store, sha, dest_dir, name, fsync=fsync,
                                                mode=pool.settings.link_mode)),
                job_id=job.id, kind=ops.OpKind.LINK, owner=self.owner, attempt=job.attempts,
                args=link_args,
                verify=lambda r: store.is_materialized(sha, Path(decode(Placed, r).dest)),
                on_done=lambda conn, r: self._finalized(conn, sha, decode(Placed, r)),
                started=link_started,
            )
        else:
            part = self.part
            self._sweep_if_rerun(ops.link_key(job.id, sha, dest_dir), dest_dir)
            record = ops.run_effect(
                self.ledger, ops.link_key(job.id, sha, dest_dir),
                lambda: as_record(finalize.place_part(part, sha, dest_dir, name, fsync=fsync,
                                                      expect=part_identity)),
                job_id=job.id, kind=ops.OpKind.LINK, owner=self.owner, attempt=job.attempts,
                args={"sha256": sha, "dest": str(dest_dir / name)},
                on_done=lambda conn, r: self._finalized(conn, sha, decode(Placed, r)),
            )
        if self.state is not JobState.FINALIZED:  # the LINK op was already done (a replay)
            with self.ledger.write(shared=True) as conn:
                self._finalized(conn, sha, decode(Placed, record))
        self.part.unlink(missing_ok=True)
        pool.stats.finished += 1

    def _sweep_if_rerun(self, link_key: str, dest_dir: Path) -> None:
        """A LINK that started before and did not finish may have died mid-copy: its temp
        file (hidden beside the destination) goes before the placement runs again."""
        prior = ops.get(self.ledger, link_key)
        if prior is not None and prior.status != ops.OpStatus.DONE:
            sweep_temps(dest_dir)

    def _finalized(self, conn: Any, sha: str, placed: Placed) -> None:
        """LINK done: the job is FINALIZED in the same transaction, its lease cleared."""
        if placed.identity is not None:
            objects.record_in(conn, [(sha, placed.identity)])
        self.job = jobs.transition_in(
            conn, self.job.id, JobState.FINALIZED, owner=self.owner, reason="finished",
            fields={"final_path": placed.dest, "sha256": sha, "error": None,
                    "bytes_committed": self.job.bytes_total or self.job.bytes_committed,
                    # What a reboot would lose: the reconciler re-verifies unsynced files.
                    "boot_id": durability.boot_id(),
                    "bytes_durable": (self.job.bytes_total or self.job.bytes_committed)
                    if self.sync_finished else 0,
                    **jobs.CLEAR_LEASE,
                    **jobs.dest_fields(placed.dest_identity, adopted=placed.adopted)},
            dest=placed.dest, how=placed.how,
        )
        self.segmented = False  # the transition cleared the rows
        self.state = JobState.FINALIZED
        self.released = True
