"""The job table: a Line API widget that renders only visible rows, so 100,000 jobs stay fast."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from dltui.errors import COOLING
from dltui.model import Job, JobState
from dltui.shown import shown
from dltui.tui import format as fmt
from dltui.tui.model import JobBook, SortKey


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int
    priority: int  # lower shows first when space is short
    right: bool = False


COLUMNS = [
    Column("id", "ID", 5, 0, right=True),
    Column("state", "STATE", 10, 0),
    Column("progress", "PROGRESS", 13, 1),
    Column("size", "DONE/SIZE", 13, 2, right=True),
    Column("rate", "RATE", 9, 3, right=True),
    Column("eta", "ETA", 6, 4, right=True),
    Column("decision", "DECISION", 9, 5),
    Column("lease", "LEASE", 14, 6),
    Column("attempts", "TRY", 3, 7, right=True),
]
NAME_MIN = 14


def fit_columns(width: int) -> list[Column]:
    """The columns that fit in ``width`` beside a name column of at least NAME_MIN cells."""
    chosen: list[Column] = []
    used = 2 + NAME_MIN  # selection mark + name
    for col in sorted(COLUMNS, key=lambda c: c.priority):
        if used + col.width + 1 <= width:
            chosen.append(col)
            used += col.width + 1
    return [c for c in COLUMNS if c in chosen]


class JobTable(ScrollView, can_focus=True):
    """Jobs of a :class:`JobBook` in its current order, with a cursor and a multi-selection."""

    COMPONENT_CLASSES = {
        "job-table--header",
        "job-table--cursor",
        "job-table--selected",
    }
    DEFAULT_CSS = """
    JobTable { background: $surface; }
    JobTable > .job-table--header { background: $panel; color: $text; text-style: bold; }
    JobTable > .job-table--cursor {
        background: $block-cursor-blurred-background; color: $block-cursor-blurred-foreground;
    }
    JobTable:focus > .job-table--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground;
    }
    JobTable > .job-table--selected { color: $warning; }
    """
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("space", "toggle_select", "Select", show=False),  # in the help; room for ? and q
        Binding("ctrl+a", "select_all", "Select all", show=False),
        Binding("enter", "activate", "Details", show=False),
    ]

    @dataclass
    class Highlighted(Message):
        """The cursor moved to another job (or to none)."""

        job_id: int | None

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, JobTable.Highlighted)

    @dataclass
    class Activated(Message):
        """Enter on a row."""

        job_id: int

    def __init__(self, book: JobBook, *, name: str | None = None, id: str | None = None,
                 clock: object = None) -> None:
        super().__init__(name=name, id=id)
        self.book = book
        self.cursor = 0
        self.cursor_job: int | None = None
        self.selected: set[int] = set()
        self._clock = clock if callable(clock) else time.time

    # -- data -------------------------------------------------------------------------------
    def reload(self) -> None:
        """Recompute the visible rows after the book changed; keep the cursor on its job."""
        order = self.book.order()
        size = Size(self.size.width, len(order) + 1)
        if size != self.virtual_size:
            self.virtual_size = size
        if self.cursor_job is not None and (
            self.cursor >= len(order) or order[self.cursor] != self.cursor_job
        ):
            try:
                self.cursor = order.index(self.cursor_job)
            except ValueError:
                self.cursor = min(self.cursor, max(len(order) - 1, 0))
        self.cursor = min(self.cursor, max(len(order) - 1, 0))
        self._announce()
        self.refresh()

    def refresh_jobs(self, ids: set[int]) -> None:
        """Repaint after some rows changed (cheap: only what is on screen is drawn)."""
        self.refresh()

    @property
    def current(self) -> int | None:
        """The job under the cursor."""
        order = self.book.order()
        return order[self.cursor] if 0 <= self.cursor < len(order) else None

    def targets(self) -> list[int]:
        """The selection if any, else the job under the cursor."""
        if self.selected:
            return sorted(self.selected)
        return [] if self.current is None else [self.current]

    def _announce(self) -> None:
        job = self.current
        if job != self.cursor_job:
            self.cursor_job = job
            self.post_message(self.Highlighted(job))

    # -- actions ----------------------------------------------------------------------------
    def _move_to(self, index: int) -> None:
        rows = len(self.book.order())
        if rows == 0:
            return
        old = self.cursor
        self.cursor = max(0, min(index, rows - 1))
        body = max(self.size.height - 1, 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + body:
            self.scroll_to(y=self.cursor - body + 1, animate=False)
        if old != self.cursor:
            self.refresh()
        self._announce()

    def action_cursor(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(self.size.height - 2, 1))

    def action_jump(self, where: int) -> None:
        self._move_to(0 if where == 0 else len(self.book.order()) - 1)

    def action_toggle_select(self) -> None:
        job = self.current
        if job is None:
            return
        self.selected.symmetric_difference_update({job})
        self._move_to(self.cursor + 1)
        self.refresh()

    def action_select_all(self) -> None:
        """Select every row shown (under the tab and filter); when all are, select none."""
        shown = set(self.book.order())
        if shown and shown <= self.selected:
            self.selected -= shown
        else:
            self.selected |= shown
        self.refresh()

    def action_activate(self) -> None:
        if self.current is not None:
            self.post_message(self.Activated(self.current))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self._move_to(int(self.scroll_y) + event.y - 1)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.book.order()) + 1)

    # -- rendering --------------------------------------------------------------------------
    def _cells(self, job: Job, columns: list[Column],
               states: dict[JobState, Style]) -> list[tuple[str, Column, Style | str]]:
        book = self.book
        now = self._clock()
        out: list[tuple[str, Column, Style | str]] = []
        for col in columns:
            style: Style | str = ""
            if col.key == "id":
                text = str(job.id)
            elif col.key == "state":
                text, style = job.state.value, states[job.state]
            elif col.key == "progress":
                text = f"{fmt.bar(job.bytes_committed, job.bytes_total, col.width - 5)} " \
                       f"{fmt.percent(job.bytes_committed, job.bytes_total):>4}"
                if job.not_before is not None and job.waiting(now) is not None:
                    # Held back: the detail pane and the hosts screen say why at length.
                    cooling = (job.error or "").startswith(COOLING)
                    text = f"{'cooling' if cooling else 'wait'} " \
                           f"{fmt.duration(math.ceil(job.not_before - now))}"
            elif col.key == "size":
                text = f"{fmt.size(job.bytes_committed)}/{fmt.size(job.bytes_total)}"
            elif col.key == "rate":
                text = fmt.rate(book.rate(job.id))
            elif col.key == "eta":
                text = fmt.duration(book.eta(job.id))
            elif col.key == "decision":
                text = job.decision or "-"
            elif col.key == "lease":
                since = book.stale.get(job.id)
                if since is not None:  # no live worker holds it: say so, with its age
                    text = f"stale {max(0, int(self._clock() - since))}s"
                    style = states[JobState.PAUSED] + Style(bold=True, reverse=False)
                elif job.lease_owner and job.lease_until:
                    left = max(0, int(job.lease_until - self._clock()))
                    text = f"{fmt.owner_short(job.lease_owner)} {left}s"
                else:
                    text = "-"
            else:
                text = str(job.attempts)
            out.append((text, col, style))
        return out

    def _line(self, parts: list[tuple[str, Style | str]], width: int, base: Style) -> Strip:
        segments = [Segment(text, base + (Style.parse(style) if isinstance(style, str)
                                          else style) if style else base)
                    for text, style in parts]
        return Strip(segments).crop(0, width).extend_cell_length(width, base)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        columns = fit_columns(width)
        name_width = max(width - 2 - sum(c.width + 1 for c in columns), NAME_MIN)
        if y == 0:
            base = self.get_component_rich_style("job-table--header")
            # The sort order stays in sight on its column (the default, by id, needs no mark).
            book = self.book
            key = None if book.sort is SortKey.ID and not book.reverse else book.sort.value
            arrow = "▼" if book.reverse else "▲"

            def title(name: str, text: str) -> str:
                return text + arrow if name == key else text

            parts: list[tuple[str, Style | str]] = [("  ", "")]
            parts += [(_pad(title(c.key, c.title), c.width, c.right) + " ", "")
                      for c in columns]
            parts.append((_pad(title("name", "NAME"), name_width, False), ""))
            return self._line(parts, width, base)
        order = self.book.order()
        index = int(self.scroll_y) + y - 1
        if index >= len(order):
            return Strip.blank(width, self.rich_style)
        job = self.book.jobs[order[index]]
        base = self.rich_style
        states = fmt.state_styles(self.app.theme_variables)
        on_cursor = index == self.cursor
        if on_cursor:
            base = base + self.get_component_rich_style("job-table--cursor")
        elif job.id in self.selected:
            base = base + self.get_component_rich_style("job-table--selected")
        mark = "● " if job.id in self.selected else "  "
        parts = [(mark, "bold" if job.id in self.selected else "")]
        for text, col, style in self._cells(job, columns, states):
            if on_cursor and isinstance(style, Style):
                # The cursor row keeps one colour pair the theme makes readable; the states
                # keep their attributes, so they stay apart on it.
                style = Style(bold=style.bold, italic=style.italic, underline=style.underline,
                              reverse=style.reverse, strike=style.strike)
            parts.append((_pad(text, col.width, col.right), style))
            parts.append((" ", ""))
        parts.append((_pad(shown(job.display_name), name_width, False), ""))
        return self._line(parts, width, base)


def _pad(text: str, width: int, right: bool) -> str:
    if len(text) > width:
        return text[: max(width - 1, 0)] + "…" if width > 0 else ""
    return text.rjust(width) if right else text.ljust(width)
