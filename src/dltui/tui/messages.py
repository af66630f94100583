"""What the TUI reads from the ledger (on its poll thread) and the messages that carry it."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message
from textual.notifications import SeverityLevel

from dltui.disk import DiskUse, survey
from dltui.ledger import Ledger, events, flags, fleet, hosts, jobs, ops, removal, segments
from dltui.ledger.events import Event
from dltui.ledger.ops import Op
from dltui.model import Job, Segment
from dltui.tui.model import SideTables


@dataclass(frozen=True)
class JobDetail:
    """What the detail pane shows beyond the job row, read in the same poll."""

    job_id: int
    ops: list[Op]
    events: list[Event]
    segments: list[Segment]


def read_detail(ledger: Ledger, job_id: int) -> JobDetail:
    """The selected job's ops, latest events and segments."""
    return JobDetail(job_id, ops.for_job(ledger, job_id), events.for_job(ledger, job_id, limit=20),
                     segments.for_job(ledger, job_id))


@dataclass
class Polled(Message):
    """Rows that changed since the last poll, plus the selected job's detail."""

    changed: list[Job]
    now: float
    detail: JobDetail | None = None
    #: Where the next poll reads on from (:func:`dltui.ledger.jobs.changes`).
    cursor: jobs.Cursor | None = None
    side: SideTables = field(default_factory=SideTables)
    #: Jobs whose rows were removed since the last poll, and the event id read up to.
    removed: list[int] = field(default_factory=list)
    event_id: int = 0


@dataclass
class Notice(Message):
    """A line for the operator from a background action."""

    text: str
    severity: SeverityLevel = "information"
    extra: dict[str, object] = field(default_factory=dict)


def read_poll(ledger: Ledger, cursor: jobs.Cursor | None, detail_job: int | None, now: float,
              event_id: int | None = None,
              disks: tuple[DiskUse, ...] = ()) -> Polled:
    """One poll: the jobs changed since ``cursor`` and those removed since ``event_id`` (None:
    the first poll, which reads every row), the selected job's detail, the side tables
    (``disks`` as the caller last surveyed them)."""
    removed, newest = removal.removed_since(ledger, event_id if event_id is not None
                                            else 1 << 62)
    changed, cursor = jobs.changes(ledger, cursor)
    detail = None if detail_job is None else read_detail(ledger, detail_job)
    side = SideTables(tuple(flags.all_flags(ledger)), hosts.limits(ledger),
                      hosts.statuses(ledger), tuple(fleet.processes(ledger)), disks)
    return Polled(changed, now, detail, cursor, side, removed, newest)


def read_disks(ledger: Ledger) -> tuple[DiskUse, ...]:
    """Free space where the home is and where active jobs write, and dltui's share of it."""
    return survey(ledger.home, jobs.active_destinations(ledger))
