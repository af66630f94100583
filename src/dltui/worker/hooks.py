"""The stream hooks of a JobRun: checkpoints into the ledger, progress, the free-space guard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dltui import durability, paths
from dltui.engine import quota, resume
from dltui.engine.transfer import Checkpoint
from dltui.ledger import segments
from dltui.model import Segment
from dltui.worker.base import RunBase


class StreamHooks(RunBase):
    """What ``stream.fetch`` calls back while a body streams into the part."""

    def checkpoint(self, cp: Checkpoint) -> None:
        v = cp.validators
        fields = dict(bytes_committed=cp.bytes_committed, prefix_hash=cp.prefix_hash,
                      bytes_durable=cp.bytes_durable, boot_id=durability.boot_id(),
                      etag=v.etag, last_modified=v.last_modified, content_length=v.length,
                      accept_ranges=None if v.accept_ranges is None else int(v.accept_ranges),
                      bytes_total=v.length, rate=round(self.meter.rate, 1))
        self.flags = self.pool.flags
        if cp.complete:
            # Recorded with the STREAM op's completion, one transaction fewer per file. Should
            # that never commit, the ledger keeps the previous (smaller) offset: safe.
            self._complete_cp = (fields, cp.segments)
            return
        with self.ledger.write(shared=True) as conn:
            self._record_checkpoint(conn, fields, cp.segments)
        # After the record: what is on disk so far stays resumable when the disk fills up.
        quota.check_streaming(self.part.parent, self.pool.settings,
                              paths.reserve_path(self.ledger.home), self.ledger.home)

    def _record_checkpoint(self, conn: Any, fields: dict[str, Any],
                           segs: tuple[Segment, ...] | None) -> None:
        self._write_in(conn, fields)
        if segs is not None:
            segments.save_in(conn, self.job.id, segs)
            self.segmented = True
        elif self.segmented:  # a single stream (or a reset) replaces the segments
            segments.clear_in(conn, self.job.id)
            self.segmented = False

    def progress(self, done: int, total: int | None) -> None:
        self.pool.stats.bytes += done - self.bytes_now
        self.bytes_now = done
        self.total = total
        self.meter.add(time.monotonic(), done)

    def wire(self, decision: resume.ResumeDecision) -> None:
        self._record_decision(decision)

    def before_body(self, total: int | None) -> None:
        # The quota check with the length the GET announced (HEAD may have been skipped).
        quota.check_free_space([self.part.parent, Path(self.job.dest_dir)], total,
                               self.pool.settings, paths.reserve_path(self.ledger.home),
                               self.ledger.home)
