"""The dltui Textual app: reads everything from the ledger, writes operator intent back to it.

It never speaks HTTP. A poll thread reads only rows whose ``rev`` moved and posts them as a
message; in-process workers (if any) are a :class:`~dltui.worker.WorkerPool` that, like every
other worker, talks to the app only through the ledger.

Why this module is long (about 490 lines): Textual binds each key to an ``action_*`` method of
the App, so the app keeps one short method per key. What those actions need lives elsewhere:
the poll and its messages (``messages.py``), ledger writes off the UI thread
(``background.py``), the book of jobs (``model.py``), the screens and widgets.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.widgets import Footer, Input, Tab, Tabs
from textual.worker import get_current_worker

from dltui import paths
from dltui.config import Settings, format_size
from dltui.disk import DiskUse
from dltui.errors import DltuiError
from dltui.ledger import (
    Ledger,
    actions,
    hosts,
    jobs,
    ledger_errors,
    reconcile,
    removal,
)
from dltui.ledger.notify import ChangeWaiter
from dltui.ledger.reconcile import ReconcileReport
from dltui.model import ACTION_STATES, JobState
from dltui.requests import DownloadRequest
from dltui.shown import shown
from dltui.tui.background import LedgerRunner
from dltui.tui.messages import (
    JobDetail,
    Notice,
    Polled,
    read_detail,
    read_disks,
    read_poll,
)
from dltui.tui.model import JobBook, SideTables, SortKey
from dltui.tui.model import Tab as BookTab
from dltui.tui.screens.add import AddScreen
from dltui.tui.screens.confirm import ConfirmScreen
from dltui.tui.screens.flags import FlagsScreen
from dltui.tui.screens.fleet import FleetScreen
from dltui.tui.screens.help import HelpScreen
from dltui.tui.screens.hosts import HostsScreen, step_bandwidth
from dltui.tui.screens.reconcile import ReconcileScreen, summary
from dltui.tui.screens.workers import WorkersScreen
from dltui.tui.themes import DEFAULT_THEME, load_themes
from dltui.tui.widgets.detail import DetailPane
from dltui.tui.widgets.job_table import JobTable
from dltui.tui.widgets.summary import Summary
from dltui.urls import redact

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from dltui.worker import WorkerPool

_T = TypeVar("_T")
TAB_IDS = {tab: f"tab-{tab.value.lower()}" for tab in BookTab}
#: After a change is announced, how long to let the rest of its burst land before reading.
NOTIFY_SETTLE = 0.05
#: Seconds between automatic heals of stale jobs (setting ``auto_reconcile``).
AUTO_RECONCILE_EVERY = 5.0


class DltuiApp(App[None]):
    """Watch and steer every download under one dltui home."""

    CSS_PATH = "dltui.tcss"
    TITLE = "dltui"
    # The footer shows these in order and cuts the rest at narrow widths: help and quit first.
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit_app", "Quit"),
        Binding("a", "add", "Add"),
        Binding("p", "pause_resume", "Pause/Resume"),
        Binding("r", "retry", "Retry"),
        Binding("x", "cancel", "Cancel"),
        Binding("D", "remove", "Remove", show=False),
        Binding("R", "reconcile", "Reconcile"),
        Binding("f", "flags", "Flags"),
        Binding("w", "workers", "Workers"),
        Binding("h", "hosts", "Hosts"),
        Binding("F", "fleet", "Fleet", show=False),
        Binding("plus", "bandwidth(1)", "Faster", show=False),
        Binding("minus", "bandwidth(-1)", "Slower", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("d", "toggle_detail", "Detail", show=False),
        *[Binding(str(i + 1), f"tab('{tab.value}')", tab.value, show=False)
          for i, tab in enumerate(BookTab)],
    ]

    def __init__(
        self,
        home: Path,
        settings: Settings | None = None,
        *,
        workers: int | None = None,
        theme: str | None = None,
        poll_interval: float | None = 0.5,
        clock: Callable[[], float] = time.time,
        display_path: str | None = None,
        default_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.home = Path(home)
        self.settings = settings or Settings()
        self.worker_count = self.settings.workers if workers is None else workers
        self.theme_name = theme or self.settings.theme or DEFAULT_THEME
        self.poll_interval = poll_interval
        self.clock = clock
        self.display_path = display_path or redact(paths.ledger_location(self.home))
        self.default_dir = default_dir
        self.book = JobBook(clock=clock)
        self.ledger: Ledger | None = None
        self.pool: WorkerPool | None = None
        self.runner: LedgerRunner | None = None
        self.side = SideTables()
        #: How the poll thread surveys the disks (snapshots give a fixed one).
        self.disk_reader: Callable[[Ledger], tuple[DiskUse, ...]] = read_disks
        self._disks: tuple[DiskUse, ...] = ()
        self._disks_at = -1e9
        self._ledger_problem = ""
        #: The global bandwidth last read from the ledger or set by +/- (None: the setting),
        #: and how many of those +/- writes are still on their way.
        self._bandwidth: int | None = None
        self._bandwidth_pending = 0
        self._stop = threading.Event()
        self._detail_job: int | None = None
        self._detail_shown: JobDetail | None = None
        self._stale_told = False  # said that R heals the stale jobs shown
        self._healed_at = 0.0
        # Where _poll_once reads on from: the job changes and the events (removed rows).
        self._cursor: jobs.Cursor | None = None
        self._event_id: int | None = None
        self._labelled = False
        self.show_detail = True

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Summary(self.display_path, str(os.getpid()), insecure=self.settings.insecure)
        yield Tabs(*[Tab(tab.value, id=TAB_IDS[tab]) for tab in BookTab], id="tabs")
        yield JobTable(self.book, id="job-table", clock=self.clock)
        yield DetailPane(clock=self.clock)
        yield Input(placeholder="filter: text in the name or URL, or a job id; Esc clears",
                    id="filter")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        # App.query_one searches the screen on top; modals must not hide the main widgets.
        self.table = self.query_one(JobTable)
        self.summary = self.query_one(Summary)
        self.tabs = self.query_one(Tabs)
        self.detail = self.query_one(DetailPane)
        self.filter_box = self.query_one("#filter", Input)
        loaded = load_themes()
        for theme in loaded.themes.values():
            self.register_theme(theme)
        for problem in loaded.errors:
            self.notify(problem, title="Theme not loaded", severity="warning", timeout=10)
        if self.theme_name in self.available_themes:
            self.theme = self.theme_name
        else:
            self.notify(f"unknown theme {self.theme_name!r}; using {DEFAULT_THEME}",
                        severity="warning")
            self.theme = DEFAULT_THEME if DEFAULT_THEME in self.available_themes \
                else "textual-dark"
        # With a poll thread, that thread opens (and if need be migrates) the ledger first:
        # the UI thread only makes the handle. Without one (pictures, tests), all is in step.
        self.ledger = Ledger(self.home, migrate=self.poll_interval is None)
        self.runner = LedgerRunner(self, self.home, self._ledger_failed)
        self.sub_title = self.display_path
        if self.worker_count > 0:
            self._boot_pool(self.worker_count)
        self.table.focus()
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self.poll_interval is None:
            self._poll_once()
        else:
            self._poll_loop()

    # -- the poll ---------------------------------------------------------------------------
    #: Seconds between two surveys of the disks (each stats the store: not every poll).
    DISK_EVERY = 5.0

    def _read(self, ledger: Ledger, cursor: jobs.Cursor | None, detail_job: int | None,
              event_id: int | None) -> Polled:
        now = time.monotonic()
        if now - self._disks_at >= self.DISK_EVERY:
            self._disks_at = now
            # A filesystem that cannot be read now: the last survey stays.
            with contextlib.suppress(OSError):
                self._disks = self.disk_reader(ledger)
        return read_poll(ledger, cursor, detail_job, self.clock(), event_id, self._disks)

    def _poll_once(self) -> None:
        assert self.ledger is not None
        message = self._read(self.ledger, self._cursor, self._detail_job, self._event_id)
        self._cursor, self._event_id = message.cursor, message.event_id
        self._apply(message, tick=False)

    @work(thread=True, exclusive=True, group="poll")
    def _poll_loop(self) -> None:
        try:
            with ledger_errors(self.display_path):
                ledger = Ledger(self.home)
        except DltuiError as exc:
            problem = str(exc)
            if self.is_running:
                with contextlib.suppress(RuntimeError):
                    self.call_from_thread(self._ledger_failed, problem)
            return
        cursor: jobs.Cursor | None = None  # the first poll reads every row
        event_id: int | None = None
        me = get_current_worker()
        # On PostgreSQL each commit wakes this thread at once; polling stays the fallback.
        changes = ChangeWaiter(ledger)
        try:
            while not self._stop.is_set() and not me.is_cancelled:
                try:
                    with ledger_errors(ledger.path):
                        ledger.check_file()
                        if self.pool is not None and self.pool.fatal is not None:
                            raise self.pool.fatal
                        message = self._read(ledger, cursor, self._detail_job, event_id)
                except DltuiError as exc:
                    problem = str(exc)
                    if self.is_running:
                        with contextlib.suppress(RuntimeError):  # it is closing just now
                            self.call_from_thread(self._ledger_failed, problem)
                else:
                    cursor, event_id = message.cursor, message.event_id
                    self.post_message(message)
                if changes.wait(self.poll_interval or 0.5, self._stop):
                    self._stop.wait(NOTIFY_SETTLE)  # a burst of commits: one poll for them
        finally:
            changes.close()
            ledger.close()

    def on_polled(self, message: Polled) -> None:
        if self._stop.is_set() or not self.table.is_mounted:
            return  # shutting down
        self._ledger_problem = ""  # readable again: a new problem is news
        self._apply(message, tick=True)

    def _apply(self, message: Polled, *, tick: bool) -> None:
        self.side = message.side
        if self._bandwidth_pending == 0:  # else a +/- the ledger has not seen yet is newer
            self._bandwidth = message.side.global_bandwidth
        book = self.book
        gone = book.forget(message.removed)
        book.apply(message.changed, message.now)
        if tick:
            book.tick(message.now)
        if message.changed or gone or not self._labelled:
            self._labelled = True
            self.table.reload()
            # Setting a tab's label restarts the underline animation: only when counts move.
            for tab, tab_id in TAB_IDS.items():
                label = f"{tab.value} {book.tab_count(tab)}"
                found = self.tabs.query(f"#{tab_id}").results(Tab)
                widget = next(found, None)
                if widget is None:  # the tabs are still mounting: label them next poll
                    self._labelled = False
                elif widget.label_text != label:
                    widget.label = label
        elif book.rates_active():
            self.table.refresh()  # rates and ETAs move even when no row changed
        self.summary.update_from(book, self._own_workers(), self._limit(),
                                 disk=self.side.tightest)
        self._show_detail(message.detail)
        if tick:
            self._watch_stale(message.now)

    def _watch_stale(self, now: float) -> None:
        """Jobs no live worker holds: heal them (``auto_reconcile``), else say once that R
        does, when they first appear."""
        stale = len(self.book.stale)
        if not stale:
            self._stale_told = False
            return
        if not self.settings.auto_reconcile:
            if not self._stale_told:
                self._stale_told = True
                self.notify(f"{stale} job(s) have no live worker (lease ran out or its process "
                            "is gone): R shows what healing them does", severity="warning")
            return
        if now - self._healed_at < AUTO_RECONCILE_EVERY or self.runner is None:
            return
        # Queued on the writer thread, in order with the operator's writes; a heal that
        # overlaps the next finds nothing left to do.
        self._healed_at = now
        link_mode = self.settings.link_mode

        def heal(ledger: Ledger) -> ReconcileReport:
            return reconcile.reconcile(ledger, by="tui-auto", link_mode=link_mode,
                                       kinds=reconcile.LEASE_KINDS)

        def healed(report: ReconcileReport) -> None:
            if report.total:
                self.notify(f"auto_reconcile: {summary(report)}", timeout=4)

        self.runner.write(heal, healed)

    def _theme_changed(self, theme: object) -> None:
        # The header and detail hold text styled with the old theme's state colours.
        self.summary.update_from(self.book, self._own_workers(), self._limit(),
                                 disk=self.side.tightest)
        self._show_detail(self._detail_shown)

    def _show_detail(self, detail: JobDetail | None) -> None:
        self._detail_shown = detail
        pane = self.detail
        job_id = self.table.current
        if job_id is None:
            pane.show(None, [], [], [])
            return
        job = self.book.jobs.get(job_id)
        if detail is None or detail.job_id != job_id:
            detail = JobDetail(job_id, [], [], [])
        pane.show(job, detail.ops, detail.events, self.book.job_history(job_id),
                  detail.segments)

    def on_job_table_highlighted(self, message: JobTable.Highlighted) -> None:
        self._detail_job = message.job_id
        if message.job_id is not None:
            # The row's facts show at once from the book; its ops and events follow.
            job_id = message.job_id
            if self.poll_interval is None and self.ledger is not None:
                # No poll thread (pictures, tests): everything is read in step, on purpose.
                self._show_detail(read_detail(self.ledger, job_id))
            elif self.runner is not None:
                self._show_detail(None)
                # One reader for details: a cursor running down the table reads only where
                # it stops, on one thread and connection (not one per row passed).
                self.runner.read_latest("detail", lambda ledger: read_detail(ledger, job_id),
                                        self._detail_read)

    def _detail_read(self, detail: JobDetail) -> None:
        if detail.job_id == self.table.current:
            self._show_detail(detail)

    def _ledger_failed(self, problem: str) -> None:
        """Say what is wrong with the ledger, once, whichever reader or writer found it."""
        if problem != self._ledger_problem:
            self._ledger_problem = problem
            self.notify(f"ledger: {problem}", severity="error")

    def on_job_table_activated(self, message: JobTable.Activated) -> None:
        self.action_toggle_detail()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification is plain text through the output boundary: its words often
        hold a server's, a file's or an operator's text, never markup (``markup`` is
        ignored; the screens' own ``notify`` passes it through here)."""
        del markup
        super().notify(shown(message), title=shown(title), severity=severity,
                       timeout=timeout, markup=False)

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity=message.severity)

    # -- workers in this process ------------------------------------------------------------
    def _limit(self) -> int:
        """The global bandwidth limit in force (0: none): the ledger's, else the setting."""
        return self.settings.max_bandwidth if self._bandwidth is None else self._bandwidth

    def _own_workers(self) -> int:
        return self.pool.size if self.pool is not None else 0

    @work(thread=True, exclusive=True, group="pool")
    def _boot_pool(self, count: int) -> None:
        """Start the in-process workers (their start-up reconcile writes to the ledger)."""
        try:
            with ledger_errors(self.display_path):
                self._start_pool(count)
        except DltuiError as exc:
            self.post_message(Notice(f"workers not started: {exc}", "error"))

    def _start_pool(self, count: int) -> None:
        from dltui.worker import WorkerPool

        assert self.ledger is not None
        reconcile.reconcile(self.ledger, by="tui", link_mode=self.settings.link_mode)
        self.pool = WorkerPool(self.ledger, self.settings, workers=count)
        self.pool.start()

    @work(thread=True, exclusive=True, group="pool")
    def _resize_pool(self, count: int) -> None:
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
        if count > 0:
            self._start_pool(count)
        self.post_message(Notice(f"{count} worker(s) running in this process"
                                 if count else "in-process workers stopped"))

    # -- operator actions -------------------------------------------------------------------
    @work(thread=True, group="actions")
    def _act(self, verb: str, ids: list[int]) -> None:
        ledger = Ledger(self.home, migrate=False)
        done, refused = [], []
        try:
            for job_id in ids:
                job = jobs.find(ledger, job_id)
                if job is None:
                    continue
                try:
                    if verb == "toggle":
                        action = actions.resume if job.state is JobState.PAUSED or \
                            job.control.value == "pause" else actions.pause
                    else:
                        action = {"retry": actions.retry, "cancel": actions.cancel}[verb]
                    done.append(f"#{job_id} {action(ledger, job_id, by='tui')}")
                except DltuiError as exc:
                    refused.append(str(exc))
        finally:
            ledger.close()
        if done:
            self.post_message(Notice("; ".join(done[:4]) + (" …" if len(done) > 4 else "")))
        for text in refused[:3]:
            self.post_message(Notice(text, "warning"))

    def _targets(self) -> list[int]:
        table = self.table
        ids = table.targets()
        if not ids:
            self.notify("no job selected", severity="warning")
        return ids

    def action_pause_resume(self) -> None:
        ids = self._targets()
        if not ids:
            return
        # Pausing a download its server cannot resume throws its bytes away: ask first.
        costs = [cost for i in ids if (j := self.book.jobs.get(i)) is not None
                 and (cost := j.lost_on_stop()) is not None]
        if not costs:
            self._act("toggle", ids)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._act("toggle", ids)

        more = f" (and {len(costs) - 1} more like it)" if len(costs) > 1 else ""
        self.push_screen(ConfirmScreen(f"Pause anyway? {costs[0]}{more}.", yes="Pause"),
                         answered)

    def action_retry(self) -> None:
        if ids := self._targets():
            self._act("retry", ids)

    def action_cancel(self) -> None:
        targets = self._targets()
        if not targets:
            return
        # Ask only about jobs a cancel applies to (as the last poll saw them); say so if none.
        allowed = ACTION_STATES["cancel"]
        ids = [i for i in targets if (j := self.book.jobs.get(i)) is None or j.state in allowed]
        if not ids:
            job = self.book.jobs[targets[0]]
            self.notify(f"job #{job.id} is {job.state.value}: nothing to cancel (cancel applies "
                        f"to {', '.join(sorted(s.value for s in allowed))})",
                        severity="warning")
            return
        what = f"job #{ids[0]}" if len(ids) == 1 else f"{len(ids)} jobs"
        if len(ids) < len(targets):
            what += f" ({len(targets) - len(ids)} selected are over already)"

        def answered(yes: bool | None) -> None:
            if yes:
                self._act("cancel", ids)
                self.table.selected.clear()

        self.push_screen(ConfirmScreen(f"Cancel {what} and delete the partial data?",
                                       yes="Cancel jobs"), answered)

    def action_remove(self) -> None:
        """Remove the rows of the selected jobs that are over (files stay: `dltui remove
        --delete-files` is the command for those)."""
        targets = self._targets()
        if not targets:
            return
        ids = [i for i in targets if (j := self.book.jobs.get(i)) is not None
               and j.state in removal.REMOVABLE]
        if not ids:
            self.notify("nothing to remove: only finished, failed or cancelled jobs can be "
                        "removed", severity="warning")
            return
        what = f"job #{ids[0]}" if len(ids) == 1 else f"{len(ids)} jobs"

        def answered(yes: bool | None) -> None:
            if yes:
                self._remove(ids)
                self.table.selected.difference_update(ids)

        self.push_screen(ConfirmScreen(
            f"Remove {what} from the ledger? Downloaded files stay where they are.",
            yes="Remove"), answered)

    def _in_thread(self, fn: Callable[[Ledger], _T], severity: SeverityLevel) -> _T | None:
        """``fn`` on a ledger of this worker thread's own; a refusal becomes a notice."""
        ledger = Ledger(self.home, migrate=False)
        try:
            with ledger_errors(ledger.path):
                return fn(ledger)
        except DltuiError as exc:
            self.post_message(Notice(str(exc), severity))
            return None
        finally:
            ledger.close()

    @work(thread=True, group="actions")
    def _remove(self, ids: list[int]) -> None:
        gone = self._in_thread(lambda ledger: removal.remove(ledger, ids, by="tui"), "warning")
        if gone is not None:
            self.post_message(Notice(f"removed {len(gone)} job"
                                     f"{'s' if len(gone) != 1 else ''}"))

    def action_add(self) -> None:
        def added(specs: list[DownloadRequest] | None) -> None:
            if specs:
                self._add(specs)

        self.push_screen(AddScreen(self.default_dir or os.getcwd()), added)

    @work(thread=True, group="actions")
    def _add(self, specs: list[DownloadRequest]) -> None:
        results = self._in_thread(lambda ledger: jobs.add(ledger, specs, by="tui"), "error")
        if results is None:
            return
        new = sum(r.created for r in results)
        old = len(results) - new
        tail = f", {old} already queued" if old else ""
        self.post_message(Notice(f"added {new} job(s){tail}"))

    def action_reconcile(self) -> None:
        assert self.ledger is not None

        def finished(report: ReconcileReport | None) -> None:
            if report is not None:
                self.notify(f"reconciled: {summary(report)}")

        self.push_screen(ReconcileScreen(self.ledger, self.settings.link_mode), finished)

    def action_flags(self) -> None:
        assert self.ledger is not None
        assert self.runner is not None
        self.push_screen(FlagsScreen(self.runner, self.side.flags))

    def action_workers(self) -> None:
        def chosen(count: int | None) -> None:
            if count is not None and count != self._own_workers():
                self._resize_pool(count)

        self.push_screen(WorkersScreen(self._own_workers()), chosen)

    def action_fleet(self) -> None:
        self.push_screen(FleetScreen(lambda: self.side.processes, self.book,
                                     self.settings.lease_ttl, self.clock))

    def action_hosts(self) -> None:
        assert self.ledger is not None
        assert self.runner is not None
        self.push_screen(HostsScreen(self.runner, lambda: self.side, self.book, self.settings,
                                     self.clock))

    def action_bandwidth(self, direction: int) -> None:
        # From the value last read (or last set here): the screen answers at once, and the
        # write follows in order whatever holds the ledger.
        current = self._limit()
        new = step_bandwidth(current, direction)
        self._bandwidth = new
        self._bandwidth_pending += 1
        self.summary.update_from(self.book, self._own_workers(), self._limit(),
                                 disk=self.side.tightest)

        def saved(_: object) -> None:
            self._bandwidth_pending -= 1

        if self.runner is not None:
            self.runner.write(lambda ledger: hosts.set_global_bandwidth(ledger, new, by="tui"),
                              saved)
        self.notify(f"global bandwidth: {'unlimited' if not new else format_size(new) + '/s'}",
                    timeout=2)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_tab(self, name: str) -> None:
        self.tabs.active = TAB_IDS[BookTab(name)]

    @on(Tabs.TabActivated)
    def _tab_changed(self, event: Tabs.TabActivated) -> None:
        for tab, tab_id in TAB_IDS.items():
            if event.tab.id == tab_id:
                self.book.set_view(tab=tab)
        self.table.reload()
        self.table.focus()

    def action_sort(self) -> None:
        keys = list(SortKey)
        nxt = keys[(keys.index(self.book.sort) + 1) % len(keys)]
        self.book.set_view(sort=nxt)
        self.table.reload()
        self.notify(f"sorted by {nxt.value}" + (" (reversed)" if self.book.reverse else ""),
                    timeout=2)

    def action_reverse(self) -> None:
        self.book.set_view(reverse=not self.book.reverse)
        self.table.reload()

    def action_filter(self) -> None:
        box = self.filter_box
        box.add_class("visible")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.book.set_view(text=event.value)
        self.table.reload()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.remove_class("visible")
        self.table.focus()

    def on_key(self, event: object) -> None:
        box = self.filter_box
        # Esc clears the filter wherever the focus is on the main screen, not only in its box.
        if getattr(event, "key", None) == "escape" and (box.has_focus or box.value) \
                and len(self.screen_stack) == 1:
            box.value = ""
            box.remove_class("visible")
            self.table.focus()

    def action_toggle_detail(self) -> None:
        self.show_detail = not self.show_detail
        self.detail.display = self.show_detail

    async def action_quit(self) -> None:
        """ctrl+q: the same question as ``q``, never a silent stop of running downloads."""
        self.action_quit_app()

    def action_quit_app(self) -> None:
        runs = self.pool.active() if self.pool is not None else []
        if not runs:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        # A server without ranges cannot resume: what those jobs have so far is lost. One
        # that has not said (no Accept-Ranges yet) may not resume either: never "nothing".
        restart = sum(1 for run in runs if run.job.accept_ranges is False)
        unsure = sum(1 for run in runs if run.job.accept_ranges is None)
        lost = [f"{restart} of them start over next time (their server takes no byte "
                "ranges)"] if restart else []
        if unsure:
            lost.append(f"{unsure} may start over (their server has not said it takes byte "
                        "ranges)")
        kept = "; ".join(lost) or "nothing is lost"
        self.push_screen(ConfirmScreen(
            f"{len(runs)} download(s) run in this process. Quit? They stop at a checkpoint and "
            f"go back to the queue; {kept}.", yes="Quit"), answered)

    def on_unmount(self) -> None:
        self._stop.set()
        if self.runner is not None:
            self.runner.close()
        if self.pool is not None:
            self.pool.stop()
        if self.ledger is not None:
            self.ledger.close()
