"""What a JobRun finds on disk before it asks the server: its part and a stored object to reuse."""

from __future__ import annotations

import dataclasses

from dltui import durability
from dltui.engine import resume
from dltui.ledger import jobs, segments
from dltui.model import Segment, ServerValidators
from dltui.worker.base import RunBase


class PartInspection(RunBase):
    """Reads the part file, its checkpoints and the store to plan the resume decision."""

    def _nothing_to_check(self, cached_sha: str | None) -> bool:
        """True for a fresh job: no committed bytes, no part file, no stored object to reuse."""
        return (self.job.bytes_committed == 0 and cached_sha is None
                and not self.part.exists())

    def _cached_object(self) -> tuple[str | None, ServerValidators | None]:
        """A stored object this job may reuse: its own (after a crash) or its URL's."""
        job = self.job
        # A job that must have particular bytes re-reads the object rather than trust a stat.
        strict = job.expected_sha256 is not None
        if job.sha256 and job.bytes_committed == job.bytes_total and \
                self.pool.trusted(job.sha256, rehash=strict, job_id=job.id):
            return job.sha256, job.validators
        if not self.flags.dedupe:
            return None, None
        other = jobs.find_stored(self.ledger, job.canonical_url)
        if other is not None and other.sha256 and \
                (not strict or other.sha256 == job.expected_sha256) and \
                self.pool.trusted(other.sha256, rehash=strict, job_id=job.id):
            return other.sha256, other.validators
        return None, None

    def _part_state(self, recorded: ServerValidators) -> resume.PartState | None:
        committed = self.job.bytes_committed
        if committed <= 0:
            return None
        try:
            size = self.part.stat().st_size
        except FileNotFoundError:
            size = -1
        durable = self.job.bytes_durable or 0
        saved = segments.for_job(self.ledger, self.job.id)
        self.segmented = bool(saved)  # then the next checkpoint replaces or clears them
        rebooted = self.job.boot_id not in (None, durability.boot_id())
        if not _tiles(saved, committed, self.job.bytes_total):
            saved = []  # rows of an earlier attempt that this checkpoint does not describe
        self.resume_segments = [dataclasses.replace(s, done=s.durable) for s in saved] \
            if rebooted else saved
        if rebooted and committed > durable:
            # Written after the last fsync, before a reboot: those bytes may be lost or garbage.
            self._event("durable_trim", committed=committed, durable=durable,
                        detail=f"the host rebooted; trusting the {durable} fsynced bytes "
                               f"of {committed}")
            committed = durable
            if committed <= 0:
                return None
        if size < committed:
            self._event("decision", mode="fresh", reason="part_missing",
                        detail=f"part has {max(size, 0)} of {committed} committed bytes")
            return None
        return resume.PartState(committed, self.job.prefix_hash, recorded)


def _tiles(saved: list[Segment], committed: int, total: int | None) -> bool:
    """True when segment rows cover ``[0, total)`` without gaps and sum to ``committed``."""
    if not saved or total is None:
        return False
    reach = 0
    for seg in saved:
        if seg.start != reach or not 0 <= seg.done <= seg.length:
            return False
        reach = seg.end
    return reach == total and sum(s.done for s in saved) == committed
