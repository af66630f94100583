"""Operator intent: pause, resume, retry and cancel, each applied to one job in one transaction.

Which states each action accepts is ``model.ACTION_STATES``; a job a live worker holds gets a
request (``control``) the worker honours at its next checkpoint.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from dltui import files
from dltui.errors import NotApplicable
from dltui.ledger import events
from dltui.ledger.clock import now
from dltui.ledger.jobs import CLEAR_LEASE, _current, dest_fields, transition_in, write_row
from dltui.ledger.liveness import lease_is_live
from dltui.model import ACTION_STATES, ACTIVE_STATES, Control, Job, JobState

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

__all__ = ["NotApplicable", "cancel", "check_action", "download_again", "pause", "resume",
           "retry"]


def _lease_live(row: sqlite3.Row, at: float) -> bool:
    return lease_is_live(row["lease_owner"], row["lease_until"], at)


def _refuse(job_id: int, state: JobState, action: str) -> NotApplicable:
    return NotApplicable(job_id, state.value, action, (s.value for s in ACTION_STATES[action]))


def check_action(job: Job, action: str) -> None:
    """Raise NotApplicable when ``action`` does not apply to ``job``'s state now."""
    if job.state not in ACTION_STATES[action]:
        raise _refuse(job.id, job.state, action)


def pause(ledger: Ledger, job_id: int, *, by: str = "cli") -> str:
    """Pause a job: at once when no worker holds it, else at the worker's next checkpoint."""
    with ledger.write() as conn:
        row = _current(conn, job_id)
        state = JobState(row["state"])
        if state is JobState.PAUSED:
            return "already paused"
        if state is JobState.PLANNED or (state in ACTIVE_STATES and not _lease_live(row, now())):
            transition_in(conn, job_id, JobState.PAUSED, reason="operator",
                          fields={"control": Control.PAUSE.value, **CLEAR_LEASE}, by=by)
            return "paused"
        if state in ACTIVE_STATES:
            write_row(conn, job_id, {"control": Control.PAUSE.value})
            events.append(conn, "control", job_id, control="pause", by=by)
            return "pause requested"
        raise _refuse(job_id, state, "pause")


def resume(ledger: Ledger, job_id: int, *, by: str = "cli") -> str:
    """Re-queue a paused job, or withdraw a pause a worker has not acted on yet."""
    with ledger.write() as conn:
        row = _current(conn, job_id)
        state = JobState(row["state"])
        if state is JobState.PAUSED:
            transition_in(conn, job_id, JobState.PLANNED, reason="operator",
                          fields={"control": Control.RUN.value}, by=by)
            return "resumed"
        if state in ACTIVE_STATES or state is JobState.PLANNED:
            if row["control"] == Control.PAUSE.value:
                write_row(conn, job_id, {"control": Control.RUN.value})
                events.append(conn, "control", job_id, control="run", by=by)
                return "pause withdrawn"
            return "already running" if state in ACTIVE_STATES else "already queued"
        raise _refuse(job_id, state, "resume")


def retry(ledger: Ledger, job_id: int, *, by: str = "cli") -> str:
    """Re-queue a failed job with its error cleared (its part, if any, is kept for resume)."""
    with ledger.write() as conn:
        row = _current(conn, job_id)
        state = JobState(row["state"])
        if state not in ACTION_STATES["retry"]:
            raise _refuse(job_id, state, "retry")
        transition_in(conn, job_id, JobState.PLANNED, reason="operator retry",
                      fields={"control": Control.RUN.value, "error": None, "failed_tries": 0,
                              **CLEAR_LEASE},
                      by=by)
        return "queued for retry"


def cancel(ledger: Ledger, job_id: int, *, by: str = "cli") -> str:
    """Cancel a job and delete its part; a running worker stops at its next checkpoint."""
    with ledger.write() as conn:
        row = _current(conn, job_id)
        state = JobState(row["state"])
        if state not in ACTION_STATES["cancel"]:
            raise _refuse(job_id, state, "cancel")
        if state in ACTIVE_STATES and _lease_live(row, now()):
            write_row(conn, job_id, {"control": Control.CANCEL.value})
            events.append(conn, "control", job_id, control="cancel", by=by)
            return "cancel requested"
        transition_in(conn, job_id, JobState.CANCELLED, reason="operator",
                      fields={"control": Control.CANCEL.value, **CLEAR_LEASE}, by=by)
    files.delete_parts(ledger.home, job_id)
    return "cancelled"


def download_again(ledger: Ledger, job_id: int, *, reason: str, by: str = "cli") -> bool:
    """A FINALIZED job goes back to the queue as a fresh download (its file is gone);
    False when it is not FINALIZED any more."""
    with ledger.write() as conn:
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] != JobState.FINALIZED.value:
            return False
        transition_in(
            conn, job_id, JobState.PLANNED, reason=reason,
            fields={"sha256": None, "final_path": None, "bytes_committed": 0,
                    "prefix_hash": None, "decision": None, "decision_reason": None,
                    "error": None, "control": Control.RUN.value, "failed_tries": 0,
                    **dest_fields(None)},
            by=by,
        )
        # The done ops describe effects that are gone; the next run must redo them.
        conn.execute("UPDATE ops SET status = 'failed', error = 'effect vanished; requeued' "
                     "WHERE job_id = ? AND status = 'done'", (job_id,))
    return True
