"""The detail pane: everything the ledger knows about the selected job."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Sparkline, Static

from dltui.ledger.events import Event
from dltui.ledger.ops import Op
from dltui.model import ACTIVE_STATES, Job, JobState, Segment, reason_text
from dltui.shown import shown
from dltui.tui import format as fmt
from dltui.urls import redact


def _clock(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))


def _event_text(event: Event) -> str:
    d = event.data
    if event.kind == "state":
        return f"{d.get('from')} → {d.get('to')}" + (f" ({d['reason']})" if d.get("reason") else "")
    if event.kind == "decision":
        return f"{d.get('mode')}: {d.get('reason')}"
    if event.kind == "retry":
        return f"retry {d.get('attempt')} in {d.get('delay')}s: {d.get('error')}"
    return ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("traceback",))[:120]


def _segment_table(segments: list[Segment]) -> Table:
    """One row per byte range: where it lies, a bar, and how much of it is in."""
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    for name in ("seg", "bytes", "progress", "done", "fsynced"):
        table.add_column(name, no_wrap=True)
    for seg in segments:
        share = seg.done / seg.length if seg.length else 1.0
        table.add_row(
            str(seg.index), f"{fmt.size(seg.start)} - {fmt.size(seg.end)}",
            ProgressBar(total=max(seg.length, 1), completed=seg.done, width=20,
                        complete_style="green" if seg.complete else "cyan"),
            f"{share:4.0%}", fmt.size(seg.durable))
    return table


class DetailPane(VerticalScroll):
    """URL, validators, part, decision, lease, ops, events, error and a rate sparkline."""

    DEFAULT_CSS = """
    DetailPane { height: 45%; border-top: solid $primary; background: $surface; padding: 0 1; }
    DetailPane Sparkline { height: 2; margin: 0 0 1 0; }
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(id="detail")
        self._clock = clock
        self.head = Static(id="detail-head")
        self.spark = Sparkline([0.0], id="detail-spark")
        self.body = Static(id="detail-body")

    def compose(self) -> ComposeResult:
        yield self.head
        yield self.spark
        yield self.body

    def show(self, job: Job | None, ops: list[Op], events: list[Event],
             history: list[float], segments: list[Segment] | None = None) -> None:
        """Render one job (or an empty hint)."""
        head, body = self.head, self.body
        if job is None:
            head.update(Text("No job selected.", style="dim"))
            body.update("")
            return
        now = self._clock()
        state_style = fmt.state_styles(self.app.theme_variables)[job.state]
        title = Text.assemble((f"#{job.id} ", "bold"), (shown(job.display_name), "bold"), "  ",
                              (job.state.value, state_style))
        if job.control.value != "run" and job.state in ACTIVE_STATES:
            # Only while the worker has yet to honour it: a PAUSED job is not "pause requested".
            title.append(f"  ({job.control.value} requested)", "yellow")
        head.update(title)
        self.spark.data = history or [0.0]

        facts = Table.grid(padding=(0, 1))
        facts.add_column(style="dim", no_wrap=True)
        facts.add_column(overflow="fold")
        facts.add_row("URL", fmt.plain(redact(job.url)))
        facts.add_row("Into", fmt.plain(job.final_path or f"{job.dest_dir}/"))
        sent = job.request_options
        if sent:
            facts.add_row("Sends", fmt.plain(sent.describe()))
        v = job.validators
        ranges = {True: "bytes", False: "none", None: "?"}[v.accept_ranges]
        facts.add_row("Server", fmt.plain(
            f"ETag {v.etag or '-'} · Last-Modified {v.last_modified or '-'} "
            f"· length {fmt.size(v.length)} · ranges {ranges}"))
        facts.add_row("Part", f"{job.bytes_committed:,} of "
                              f"{'?' if job.bytes_total is None else f'{job.bytes_total:,}'} "
                              f"bytes committed · prefix {(job.prefix_hash or '-')[:16]}")
        if job.decision:
            reason = reason_text(job.decision_reason)
            decision = Text.assemble((job.decision, "bold"), f": {reason}")
            if job.state not in ACTIVE_STATES and job.state is not JobState.FINALIZED \
                    and job.bytes_committed:
                # The decision is the last run's; the next one decides on the bytes kept.
                decision.append(f" (last run; the next decides on the "
                                f"{fmt.size(job.bytes_committed)} kept)", "dim")
            facts.add_row("Decision", decision)
        if job.lease_owner:
            left = (job.lease_until or now) - now
            beat = "-" if job.heartbeat_at is None else \
                f"{max(0, int(now - job.heartbeat_at))}s ago"
            facts.add_row("Lease", fmt.plain(f"{job.lease_owner} · {max(0, int(left))}s left · "
                                             f"heartbeat {beat}"))
        facts.add_row("Attempts", str(job.attempts))
        if job.sha256:
            facts.add_row("SHA-256", fmt.plain(job.sha256))
        waiting = job.waiting(now)
        if waiting:
            facts.add_row(Text("Waiting", style="bold"), fmt.plain(waiting))
        elif job.error:
            facts.add_row(Text("Error", style="bold red"), fmt.plain(job.error, style="red"))

        op_table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
        for name in ("op", "status", "runs", "started", "took"):
            op_table.add_column(name)
        for op in ops[-8:]:
            took = "-" if op.finished_at is None or op.started_at is None else \
                f"{op.finished_at - op.started_at:.2f}s"
            status = op.status
            if status == "failed" and (op.error or "").startswith("Interrupted"):
                status = "stopped"  # paused, cancelled or shut down: not a failure
            style = {"done": "green", "failed": "red", "started": "yellow",
                     "stopped": "yellow"}.get(status, "")
            op_table.add_row(fmt.plain(op.kind), Text(status, style=style), str(op.runs),
                             _clock(op.started_at), took)

        ev_table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
        ev_table.add_column("time")
        ev_table.add_column("event")
        ev_table.add_column("", overflow="fold")
        for event in events[-10:]:
            ev_table.add_row(_clock(event.ts), fmt.plain(event.kind),
                             fmt.plain(_event_text(event)))

        group = Table.grid()
        group.add_row(facts)
        if segments:
            group.add_row(Text(f"Segments ({len(segments)} connections)",
                               style="bold underline"))
            group.add_row(_segment_table(segments))
        group.add_row(Text("Ops", style="bold underline"))
        group.add_row(op_table if ops else Text("none yet", style="dim"))
        group.add_row(Text("Events", style="bold underline"))
        group.add_row(ev_table if events else Text("none yet", style="dim"))
        body.update(group)
