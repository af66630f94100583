"""Every key, driven through a real app on a real ledger, checked in the ledger afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dltui import paths
from dltui.engine.resume import OVERLAP_BYTES
from dltui.ledger import Ledger, events, flags, hosts, jobs
from dltui.model import JobState
from dltui.origin import Resource
from dltui.tui import format as fmt
from dltui.tui.app import DltuiApp
from dltui.tui.screens.confirm import ConfirmScreen
from dltui.tui.screens.reconcile import ReconcileScreen
from dltui.tui.widgets.job_table import COLUMNS
from tests.conftest import TEST_ENV, TEST_SETTINGS, force_state, until
from tests.engine.helpers import blob

MiB = 1 << 20


def make(home: Path, workers: int = 0) -> DltuiApp:
    return DltuiApp(home, TEST_SETTINGS, workers=workers, poll_interval=0.1)




def add(home: Path, dest: Path, *urls: str) -> list[int]:
    with Ledger(home) as led:
        return [r.job.id for r in jobs.add(led, [jobs.JobSpec(u, dest) for u in urls])]


def state(home: Path, job_id: int) -> JobState:
    with Ledger(home) as led:
        return jobs.get(led, job_id).state


def job(home: Path, job_id: int):
    with Ledger(home) as led:
        return jobs.get(led, job_id)


async def test_pause_key_keeps_the_part_and_resume_finishes(home, dest, origin) -> None:
    data = blob(6 * MiB)
    [job_id] = add(home, dest, origin.add("/slow.bin", Resource(data=data, rate=2 * MiB)))
    app = make(home, workers=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.book.jobs.get(job_id) is not None
                    and app.book.jobs[job_id].bytes_committed > 0)
        await pilot.press("p")
        await until(pilot, lambda: state(home, job_id) is JobState.PAUSED)
        paused = job(home, job_id)
        assert 0 < paused.bytes_committed < len(data)
        assert paths.part_path(home, job_id).stat().st_size >= paused.bytes_committed
        await pilot.press("p")
        await until(pilot, lambda: state(home, job_id) is JobState.FINALIZED, timeout=30)
    assert Path(job(home, job_id).final_path).read_bytes() == data
    assert origin.requests("/slow.bin", "GET")[-1].headers["range"] == \
        f"bytes={paused.bytes_committed - OVERLAP_BYTES}-"


async def test_retry_key_turns_failed_into_finalized(home, dest, origin) -> None:
    [job_id] = add(home, dest, origin.add("/later.bin", Resource(status=404)))
    app = make(home, workers=1)
    async with app.run_test() as pilot:
        await until(pilot, lambda: state(home, job_id) is JobState.FAILED)
        origin.add("/later.bin", blob(100_000))  # the file appears on the server
        await until(pilot, lambda: getattr(app.book.jobs.get(job_id), "state", None)
                    is JobState.FAILED)
        await pilot.press("r")
        await until(pilot, lambda: state(home, job_id) is JobState.FINALIZED)


async def test_reconcile_key_heals_an_expired_lease(home, dest) -> None:
    [job_id] = add(home, dest, "http://127.0.0.1:9/never")
    with Ledger(home) as led:
        force_state(led, job_id, JobState.STREAMING, lease_owner="gone:1:1:w", lease_until=1.0)
    app = make(home)
    async with app.run_test() as pilot:
        await pilot.press("R")
        screen = app.screen
        assert isinstance(screen, ReconcileScreen)
        apply = screen.query_one("#reconcile-apply")
        await until(pilot, lambda: not apply.disabled)
        await pilot.click("#reconcile-apply")
        await until(pilot, lambda: screen.result is not None)
        assert screen.result.counts["lease_expired"] == 1
        await pilot.press("escape")
    assert state(home, job_id) is JobState.PLANNED
    with Ledger(home) as led:
        logged = events.recent(led, kind="reconcile")
        assert [e.data["dry_run"] for e in logged] == [True, False]


async def test_flag_switch_is_stored_and_audited(home) -> None:
    app = make(home)
    async with app.run_test() as pilot:
        await pilot.press("f")
        await pilot.pause()
        assert app.focused.id == "flag-batch"
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused.id == "flag-circuit_breaker"
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("escape")
    with Ledger(home) as led:
        assert flags.get(led, "circuit_breaker") is False
        assert flags.get(led, "batch") is True
        audit = events.recent(led, kind="flag")[-1].data
        assert audit == {"name": "circuit_breaker", "old": True, "new": False, "by": "tui"}


async def test_add_modal_validates_then_adds(home, tmp_path) -> None:
    app = make(home)
    target = tmp_path / "incoming"
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        await pilot.press(*"ftp://example.org/x")
        dir_input = app.screen.query_one("#add-dir")
        dir_input.value = str(target)
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = str(app.screen.query_one("#add-error").render())
        assert "unsupported scheme 'ftp:'" in error
        area = app.screen.query_one("#add-urls")
        area.text = "https://example.org/a.iso\nhttps://example.org/b.iso\n"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(app.book.jobs) == 2)
    with Ledger(home) as led:
        assert [(j.url, j.dest_dir) for j in jobs.list_jobs(led)] == [
            ("https://example.org/a.iso", str(target)), ("https://example.org/b.iso", str(target))]


async def test_add_modal_takes_hidden_headers(home, tmp_path) -> None:
    app = make(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#add-urls").text = "https://example.org/private.iso"
        app.screen.query_one("#add-dir").value = str(tmp_path)
        app.screen.query_one("#add-headers").focus()
        await pilot.press(*"X-Token: tok-123")  # typed, as an operator would
        app.screen.query_one("#add-headers").value += " | Cookie: sid=9"
        await pilot.pause()
        assert "tok-123" not in app.export_screenshot()  # masked as it is typed
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(app.book.jobs) == 1)
        await until(pilot, lambda: "Sends" in _text(app.detail.body))
        body = _text(app.detail.body)
        assert "headers X-Token, Cookie (values hidden)" in body
        shot = app.export_screenshot()
        assert "tok-123" not in shot and "sid=9" not in shot
    with Ledger(home) as led:
        [job] = jobs.list_jobs(led)
        assert job.request_options.headers == (("X-Token", "tok-123"), ("Cookie", "sid=9"))


async def test_theme_change_keeps_the_selection_and_recolours(home, dest) -> None:
    ids = add(home, dest, *[f"https://example.org/t{n}" for n in range(3)])
    app = make(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 3)
        await pilot.press("space", "space")
        assert app.table.selected == set(ids[:2])
        before = app.summary.line2.content
        app.theme = "dltui-light"
        await pilot.pause(0.3)
        assert app.table.selected == set(ids[:2])
        after = app.summary.line2.content
        planned = [span.style for span in after.spans if "planned" in after.plain[span.start:
                                                                                  span.end]]
        assert planned and planned[0] != next(s.style for s in before.spans)
        assert planned[0].color.triplet.hex.upper() == "#1B2430"  # the light theme's own


async def test_cancel_asks_first(home, dest) -> None:
    [job_id] = add(home, dest, "https://example.org/c.iso")
    app = make(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: job_id in app.book.jobs)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert state(home, job_id) is JobState.PLANNED
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: state(home, job_id) is JobState.CANCELLED)


async def test_cancel_of_a_finished_job_does_not_ask(home, dest) -> None:
    [job_id] = add(home, dest, "https://example.org/done.iso")
    with Ledger(home) as led:
        force_state(led, job_id, JobState.FINALIZED)
    app = make(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: job_id in app.book.jobs)
        await pilot.press("x")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("nothing to cancel" in n.message for n in app._notifications)
    assert state(home, job_id) is JobState.FINALIZED


async def test_multi_select_applies_to_every_selected_job(home, dest) -> None:
    ids = add(home, dest, *[f"https://example.org/{n}" for n in "abcd"])
    app = make(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 4)
        # Space selects and moves down, as in mutt: select 1, step over 2, select 3.
        await pilot.press("space", "down", "space")
        assert app.table.selected == {ids[0], ids[2]}
        await pilot.press("p")
        await until(pilot, lambda: state(home, ids[2]) is JobState.PAUSED)
        assert [state(home, i) for i in ids] == [JobState.PAUSED, JobState.PLANNED,
                                                 JobState.PAUSED, JobState.PLANNED]


async def test_filter_tabs_and_sort(home, dest) -> None:
    ids = add(home, dest, "https://e.org/zeta.iso", "https://e.org/alpha.iso",
              "https://e.org/beta.tar")
    with Ledger(home) as led:
        force_state(led, ids[2], JobState.FAILED, error="boom")
    app = make(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 3)
        await pilot.press("slash", *"iso")
        await pilot.pause()
        assert app.book.order() == [ids[0], ids[1]]
        await pilot.press("enter")
        await pilot.press("s")  # id -> name
        await pilot.pause()
        assert app.book.order() == [ids[1], ids[0]]
        await pilot.press("slash", "escape")
        await pilot.press("5")  # Failed tab
        await pilot.pause()
        assert app.book.order() == [ids[2]]
        await pilot.press("1")
        await pilot.pause()
        assert len(app.book.order()) == 3


async def test_escape_clears_the_filter_from_the_table(home, dest) -> None:
    add(home, dest, "https://e.org/one.iso", "https://e.org/two.tar")
    app = make(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 2)
        await pilot.press("slash", *"iso", "enter")  # filter typed, focus back on the table
        await pilot.pause()
        assert len(app.book.order()) == 1 and not app.filter_box.has_focus
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.book.order()) == 2 and app.filter_box.value == ""


async def test_workers_key_starts_resizes_and_stops(home) -> None:
    app = make(home)
    async with app.run_test() as pilot:
        await pilot.press("w")
        await pilot.press("backspace", "2", "enter")
        await until(pilot, lambda: app.pool is not None and app.pool.size == 2)
        await pilot.press("w")
        await pilot.press("backspace", "0", "enter")
        await until(pilot, lambda: app.pool is None)


async def test_hosts_screen_edits_limits_and_bandwidth_keys(home, dest, origin) -> None:
    add(home, dest, origin.add("/h.bin", Resource(data=blob(8 * MiB), rate=MiB)))
    app = make(home, workers=1)
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: any(j.state is JobState.STREAMING
                                       for j in app.book.jobs.values()))
        await pilot.press("h")
        await until(pilot, lambda: type(app.screen).__name__ == "HostsScreen")
        await until(pilot, lambda: app.screen.table.row_count > 0)
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "LimitScreen"
                    and app.focused is not None and app.focused.id == "limit-rps")
        await pilot.press(*"5", "tab", "ctrl+a", *"2M", "enter")
        await until(pilot, lambda: type(app.screen).__name__ == "HostsScreen")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.press("minus")
        await pilot.pause()
        with Ledger(home) as led:
            stored = hosts.limits(led)
            assert stored["127.0.0.1"].requests_per_second == 5.0
            assert stored["127.0.0.1"].bandwidth == 2 * MiB
            assert hosts.global_bandwidth(led) == 100 * MiB
        # The running worker picks the host limit up within a second.
        await until(pilot, lambda: app.pool.limits.limits_for("127.0.0.1") == (5.0, 2 * MiB),
                    timeout=15)
        await pilot.press("plus")
        await pilot.pause()
        with Ledger(home) as led:
            assert hosts.global_bandwidth(led) == 0


async def test_quit_asks_while_downloads_run_and_requeues_them(home, dest, origin) -> None:
    [job_id] = add(home, dest, origin.add("/q.bin", Resource(data=blob(8 * MiB), rate=MiB)))
    app = make(home, workers=1)
    async with app.run_test() as pilot:
        await until(pilot, lambda: state(home, job_id) is JobState.STREAMING)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
    after = job(home, job_id)
    assert after.state is JobState.PLANNED and after.lease_owner is None
    assert paths.part_path(home, job_id).exists()


async def test_help_screen(home) -> None:
    app = make(home)
    async with app.run_test() as pilot:
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        assert type(app.screen).__name__ == "Screen"


async def test_tui_follows_a_separate_dltui_run(home, dest, origin) -> None:
    [job_id] = add(home, dest, origin.add("/x.bin", Resource(data=blob(6 * MiB), rate=2 * MiB)))
    runner = subprocess.Popen(
        [sys.executable, "-m", "dltui", "run", "--until-idle"],
        env={**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}, stderr=subprocess.DEVNULL,
    )
    try:
        app = make(home, workers=0)
        seen: list[tuple[JobState, int]] = []
        async with app.run_test() as pilot:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                row = app.book.jobs.get(job_id)
                if row is not None:
                    seen.append((row.state, row.bytes_committed))
                    if row.state is JobState.FINALIZED:
                        break
                await pilot.pause(0.1)
            assert app.book.total_history, "no throughput recorded"
            summary = str(app.query_one("#summary-line1").render())
            assert "0 here" in summary
    finally:
        runner.wait(timeout=30)
    states = [s for s, _ in seen]
    progress = sorted({b for _, b in seen})
    assert JobState.STREAMING in states and states[-1] is JobState.FINALIZED
    assert len(progress) >= 3, f"bytes never moved between polls: {progress}"


async def test_broken_theme_file_is_reported_not_fatal(home, tmp_path, monkeypatch) -> None:
    config = tmp_path / "xdg"
    (config / "dltui" / "themes").mkdir(parents=True)
    (config / "dltui" / "themes" / "broken.toml").write_text('name = "broken"\nprimary = 12\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    app = make(home)
    async with app.run_test() as pilot:
        await pilot.pause()
        notes = [n.message for n in app._notifications]
        assert any("broken.toml" in n for n in notes)
        assert app.theme == "dltui-dark"


@pytest.mark.parametrize("theme", ["dltui-light", "dltui-high-contrast", "nord"])
async def test_themes_are_selectable(home, theme) -> None:
    app = DltuiApp(home, TEST_SETTINGS, workers=0, poll_interval=None, theme=theme)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.theme == theme


async def test_unknown_theme_falls_back_with_a_notice(home) -> None:
    app = DltuiApp(home, TEST_SETTINGS, workers=0, poll_interval=None, theme="no-such")
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.theme == "dltui-dark"
        assert any("no-such" in n.message for n in app._notifications)


def test_asyncio_mode_is_auto() -> None:
    assert asyncio.iscoroutinefunction(test_help_screen)


def test_help_lists_every_key() -> None:
    from dltui.tui.screens.help import KEYS

    listed = " ".join(k for k, _ in KEYS)
    names = {"slash": "/", "question_mark": "?", "plus": "+", "minus": "-"}
    for binding in DltuiApp.BINDINGS:
        for key in binding.key.split(","):
            shown = names.get(key, key)
            assert shown in listed, f"help does not mention {shown!r} ({binding.description})"


async def test_no_color_is_honoured(home, monkeypatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = DltuiApp(home, TEST_SETTINGS, workers=0, poll_interval=None)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.no_color
        assert any(type(f).__name__ in ("Monochrome", "NoColor") for f in app._filters)


async def test_detail_toggle_and_reverse_sort(home, dest) -> None:
    ids = add(home, dest, "https://e.org/a", "https://e.org/b")
    app = make(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 2)
        assert app.detail.display
        await pilot.press("d")
        assert not app.detail.display
        await pilot.press("enter")
        assert app.detail.display
        await pilot.press("S")
        await pilot.pause()
        assert app.book.order() == [ids[1], ids[0]]


async def test_detail_pane_never_shows_credentials(home, dest) -> None:
    url = "http://bob:Hunter2@example.com/f.bin?token=TOPSECRET&keep=1"
    [job_id] = add(home, dest, url)
    with Ledger(home) as led:
        force_state(led, job_id, JobState.FAILED)
        jobs.update(led, job_id, owner=None, error=f"HTTP 500 Internal Server Error from {url}")
    app = make(home)
    async with app.run_test(size=(200, 50)) as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 1)
        await pilot.pause(0.3)
        shot = app.export_screenshot()
    assert "example.com" in shot  # the URL, the error and the events are on screen
    for secret in ("Hunter2", "TOPSECRET", "bob:"):
        assert secret not in shot


# A file damaged in place is noticed only when SQLite next reads a damaged page, which its page
# cache may put off indefinitely: the damaged case is tested where the read is certain (the
# CLI, tests/safety/test_disk_and_ledger.py). A deleted or replaced file is checked each poll.
@pytest.mark.parametrize("what", ["deleted", "replaced"])
async def test_a_ledger_lost_under_the_tui_is_reported_not_fatal(home, dest, what) -> None:
    add(home, dest, "https://e.org/a")
    app = make(home)
    said: list[str] = []
    app.notify = lambda text, **kw: said.append(text)  # type: ignore[method-assign]
    async with app.run_test() as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 1)
        ledger = paths.ledger_path(home)
        if what == "deleted":
            ledger.unlink()
        else:
            # Copied by another process: closing a descriptor of the ledger here would drop
            # the POSIX locks this process's connections hold on it.
            copy = ledger.with_name("copy.db")
            subprocess.run(["cp", str(ledger), str(copy)], check=True)
            copy.replace(ledger)
        want = "was deleted or replaced"
        await until(pilot, lambda: any(want in s for s in said))
        await pilot.press("down", "up")  # the app still answers keys
        await pilot.pause(0.3)
        assert app.is_running
    assert len([s for s in said if want in s]) == 1  # said once, not at every poll


async def test_the_screen_answers_while_another_process_holds_the_ledger(home, dest) -> None:
    add(home, dest, "https://e.org/a", "https://e.org/b")
    app = make(home)
    app.animation_level = "none"  # time the app, not the switch's slide
    said: list[str] = []
    app.notify = lambda text, **kw: said.append(text)  # type: ignore[method-assign]
    took: dict[str, float] = {}

    async def press(key: str, visible) -> None:
        start = time.monotonic()
        await pilot.press(key)
        await until(pilot, visible, timeout=5)
        took[key] = time.monotonic() - start

    async with app.run_test() as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 2)
        holder = subprocess.Popen(
            [sys.executable, "-m", "tests.tui.lock_holder", str(paths.ledger_path(home)), "3.5"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            await press("f", lambda: type(app.screen).__name__ == "FlagsScreen")
            switch = app.focused
            assert switch is not None and switch.id == "flag-batch"
            await press("enter", lambda: switch.value is False)  # type: ignore[attr-defined]
            await press("escape", lambda: type(app.screen).__name__ == "Screen")
            await press("plus", lambda: any(s.startswith("global bandwidth") for s in said))
            await press("down", lambda: app.table.current == 2)
            await press("h", lambda: type(app.screen).__name__ == "HostsScreen")
            await press("escape", lambda: type(app.screen).__name__ == "Screen")
            assert holder.poll() is None, "the lock was released before the keys were done"
        finally:
            holder.wait(timeout=30)
        # Each key showed its effect at once, the 3.5 s lock notwithstanding: a screen that
        # waited for SQLite would take the whole 3.5 s. Typically 0.06-0.1 s here (pilot and
        # polling included); opening a dialog costs Textual itself about 0.3 s of layout.
        quick = sorted(took[k] for k in ("enter", "plus", "down", "escape"))
        assert quick[len(quick) // 2] < 0.2 and quick[-1] < 1.0, took
        assert all(took[k] < 2.0 for k in ("f", "h")), took
        # The writes were queued, not lost: they land once the lock is free.
        with Ledger(home) as led:
            await until(pilot, lambda: flags.get(led, "batch") is False, timeout=30)
            await until(pilot, lambda: hosts.global_bandwidth(led) is not None, timeout=30)


@pytest.mark.parametrize("insecure", [False, True])
async def test_header_says_when_tls_is_not_verified(home, insecure) -> None:
    app = DltuiApp(home, TEST_SETTINGS.replace(insecure=insecure), workers=0,
                   poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        line = str(app.query_one("#summary-line1").render())
        assert ("INSECURE" in line) is insecure, line


async def test_removed_rows_leave_a_watching_tui(home, dest) -> None:
    ids = add(home, dest, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    with Ledger(home) as led:
        force_state(led, ids[0], JobState.FAILED)
    app = make(home)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 2)
        with Ledger(home) as led:
            from dltui.ledger import removal

            removal.remove(led, [ids[0]], by="test")
        await until(pilot, lambda: ids[0] not in app.book.jobs)
        assert list(app.book.jobs) == [ids[1]]


def _ranged_job(home: Path, dest: Path, origin, path: str, ranges: bool | None) -> int:
    """A slow 8 MiB job whose server takes ranges (True), takes none (False) or does not say
    (None)."""
    served = Resource(data=blob(8 * MiB), rate=MiB, ranges=ranges is not False,
                      advertise_ranges=ranges is not None)
    [job_id] = add(home, dest, origin.add(path, served))
    return job_id


@pytest.mark.parametrize("ranges", [True, False, None])
async def test_ctrl_q_asks_like_q_and_says_what_is_lost(home, dest, origin, ranges) -> None:
    """None: a server that does not say whether it takes ranges counts as unknown (it was
    taken as yes: "nothing is lost", and the next run started over)."""
    job_id = _ranged_job(home, dest, origin, "/cq.bin", ranges)
    app = make(home, workers=1)
    async with app.run_test() as pilot:
        # Streaming, with what the server said about ranges recorded (at the headers).
        await until(pilot, lambda: state(home, job_id) is JobState.STREAMING
                    and job(home, job_id).accept_ranges is ranges)
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmScreen)
        text = app.screen.question
        assert ("nothing is lost" in text) is (ranges is True), text
        if ranges is None:
            assert "1 may start over (their server has not said it takes byte ranges)" in text
        await pilot.press("y")
        await pilot.pause()
    assert job(home, job_id).state is JobState.PLANNED


def _text(widget) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


async def test_detail_of_a_paused_job_says_what_happened(home, dest, origin) -> None:
    [job_id] = add(home, dest, origin.add("/pd.bin", Resource(data=blob(6 * MiB), rate=2 * MiB)))
    app = make(home, workers=1)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.book.jobs.get(job_id) is not None
                    and app.book.jobs[job_id].bytes_committed > 0)
        await pilot.press("p")
        await until(pilot, lambda: app.book.jobs[job_id].state is JobState.PAUSED)
        await until(pilot, lambda: "STREAM" in _text(app.detail.body))
        head, body = _text(app.detail.head), _text(app.detail.body)
        assert "PAUSED" in head and "requested" not in head
        assert "stopped" in body and "failed" not in body  # a pause is no failure
        assert "(last run; the next decides on the" in body


async def test_ctrl_a_selects_all_shown_then_none(home, dest) -> None:
    ids = add(home, dest, "https://e.org/a.iso", "https://e.org/b.iso", "https://e.org/c.tar")
    app = make(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 3)
        await pilot.press("slash", *"iso", "enter")
        await pilot.press("ctrl+a")
        assert app.table.selected == {ids[0], ids[1]}  # only what the filter shows
        await pilot.press("ctrl+a")
        assert app.table.selected == set()


def _held_by_a_dead_process(home: Path, dest: Path) -> int:
    """A STREAMING job whose lease names a process of this host that does not exist: its
    lease is not live, though its TTL has ten minutes to run."""
    from dltui.ledger.liveness import hostname

    [job_id] = add(home, dest, "http://127.0.0.1:9/held.bin")
    with Ledger(home) as led:
        force_state(led, job_id, JobState.STREAMING, lease_owner=f"{hostname()}:4194305:1:w",
                    lease_until=time.time() + 600, heartbeat_at=time.time() - 64)
    return job_id


async def test_a_dead_workers_job_is_marked_stale_and_counted(home, dest) -> None:
    job_id = _held_by_a_dead_process(home, dest)
    app = make(home)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: job_id in app.book.stale)
        await pilot.pause(0.2)
        assert "stale 1 (R heals)" in str(app.query_one("#summary-line1").render())
        assert any("1 job(s) have no live worker" in n.message for n in app._notifications)
        cells = app.table._cells(app.book.jobs[job_id], [c for c in COLUMNS if c.key == "lease"],
                                 fmt.state_styles(app.theme_variables))
        assert cells[0][0].startswith("stale 6")
        assert "heartbeat 6" in _text(app.detail.body)


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
async def test_small_terminals_keep_the_essentials(home, dest, size) -> None:
    from textual.widgets._footer import FooterKey

    add(home, dest, *[f"https://example.org/{n}.iso" for n in range(30)])
    app = make(home)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 30)
        await pilot.pause(0.3)
        line1 = str(app.query_one("#summary-line1").render())
        for part in ("↓ ", "limit none", "workers 0 here"):
            assert part in line1
        assert not app.query_one("#summary-spark").display  # it would cover the counts
        assert "planned 30" in str(app.query_one("#summary-line2").render())  # it fits
        width = size[0]
        shown = {k.key: k.region for k in app.query(FooterKey) if k.region.width}
        for key in ("question_mark", "q"):
            assert key in shown and shown[key].right <= width, shown
        # Columns drop rather than squeeze the name off the screen.
        assert app.table.size.width == width
        from dltui.tui.widgets.job_table import fit_columns
        assert sum(c.width + 1 for c in fit_columns(width)) + 2 + 14 <= width


async def test_fleet_screen_shows_every_host(home, dest) -> None:
    from dltui.ledger import fleet
    from dltui.tui.screens.fleet import FleetScreen

    ids = add(home, dest, *[f"https://example.org/f{n}" for n in range(3)])
    with Ledger(home) as led:
        fleet.beat(led, "dl-02:77:1", "dl-02", 6)
        fleet.beat(led, "dl-03:88:1", "dl-03", 2)
        with led.write() as conn:
            conn.execute("UPDATE processes SET heartbeat_at = heartbeat_at - 900 "
                         "WHERE host = 'dl-03'")
        for job_id in ids[:2]:
            force_state(led, job_id, JobState.STREAMING, lease_owner=f"dl-02:77:1:w{job_id}",
                        lease_until=time.time() + 600, heartbeat_at=time.time())
    app = make(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: len(app.side.processes) == 2)
        await pilot.press("F")
        await until(pilot, lambda: isinstance(app.screen, FleetScreen))
        table = app.screen.query_one("#fleet-table")
        # Cells as they read: a host name is Text (never markup), the numbers str.
        rows = {str(r[0]): [str(c) for c in r]
                for r in (table.get_row_at(i) for i in range(table.row_count))}
        assert rows["dl-02"][1:3] == ["1", "6"] and rows["dl-02"][4] == "2"
        assert rows["dl-03"][1:3] == ["0", "0"] and rows["dl-03"][3].startswith("silent 9")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, FleetScreen))


async def test_r_offers_the_dry_run_then_heals(home, dest) -> None:
    job_id = _held_by_a_dead_process(home, dest)
    app = make(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: job_id in app.book.stale)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ReconcileScreen))
        await until(pilot, lambda: "lease_expired" in _text(
            app.screen.query_one("#reconcile-actions")))
        assert state(home, job_id) is JobState.STREAMING  # a dry run changes nothing
        await pilot.press("enter")  # Apply has the focus once there is something to do
        await until(pilot, lambda: state(home, job_id) is JobState.PLANNED)
        await until(pilot, lambda: not app.book.stale)


async def test_auto_reconcile_heals_dead_workers_jobs(home, dest) -> None:
    job_id = _held_by_a_dead_process(home, dest)
    app = DltuiApp(home, dataclasses.replace(TEST_SETTINGS, auto_reconcile=True), workers=0,
                   poll_interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: state(home, job_id) is JobState.PLANNED)
        await until(pilot, lambda: any("auto_reconcile: " in n.message
                                       for n in app._notifications))
    with Ledger(home) as led:
        [event] = [e for e in events.recent(led, kind="reconcile") if e.data["by"] == "tui-auto"]
        assert event.data["counts"] == {"lease_expired": 1}


async def test_remove_key_asks_then_removes_only_jobs_that_are_over(home, dest) -> None:
    done_id, queued_id = add(home, dest, "https://e.org/done.iso", "https://e.org/later.iso")
    with Ledger(home) as led:
        force_state(led, done_id, JobState.FINALIZED)
    app = make(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 2)
        await pilot.press("ctrl+a", "D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "job #1" in app.screen.question  # the queued job is not offered
        await pilot.press("y")
        await until(pilot, lambda: done_id not in app.book.jobs)
        assert list(app.book.jobs) == [queued_id]
        await pilot.press("D")  # the cursor's job is queued: nothing to remove, no question
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)
    with Ledger(home) as led:
        assert [j.id for j in jobs.list_jobs(led)] == [queued_id]


async def test_the_sort_order_stays_on_its_column(home, dest) -> None:
    add(home, dest, "https://e.org/b.iso", "https://e.org/a.iso")
    app = make(home)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 2)

        def header() -> str:
            return "".join(segment.text for segment in app.table.render_line(0))

        assert "▲" not in header() and "▼" not in header()  # by id: the default
        await pilot.press("s")
        await pilot.pause()
        assert "NAME▲" in header()
        await pilot.press("S")
        await pilot.pause()
        assert "NAME▼" in header()


async def test_server_text_is_shown_escaped_and_never_as_markup(home, dest) -> None:
    """An ETag `"[/]"`, a URL holding `[/]` and escape sequences crashed the TUI at every
    start (MarkupError) or reached the terminal raw; the detail pane, the table and the hosts
    screen show them as inert text."""
    hostile = "\x1b]52;c;cm0gLXJmIH4vKgo=\x07\x1b[2J"
    [job_id] = add(home, dest, "https://evil.example/[/]/x[b]y.iso")
    with Ledger(home) as led:
        force_state(led, job_id, JobState.FAILED, etag=f'"[/]{hostile}"',
                    last_modified=f"[link=https://x]{hostile}",
                    error=f"HTTP 403 Forbidden{hostile} [@click=app.quit]")
        hosts.publish(led, [hosts.HostStatus("evil.example", "open", 5, None, None,
                                             f"503 [/]{hostile}", time.time())])
    app = make(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: job_id in app.book.jobs)
        if not app.detail.display:
            await pilot.press("enter")
        await until(pilot, lambda: "Forbidden" in _text(app.detail.body))
        body, head = _text(app.detail.body), _text(app.detail.head)
        assert "\x1b" not in body + head and "\x07" not in body
        assert "Forbidden\\x1b]52;c;" in body and '"[/]\\x1b]52;c;' in body
        assert "[@click=app.quit]" in body and "[link=https://x]" in body  # text, not markup
        assert "x[b]y.iso" in head
        shot = app.export_screenshot()
        assert "\x1b]52" not in shot
        await pilot.press("h")
        await pilot.pause()
        await pilot.press("down")
        await pilot.pause()
        error = _text(app.screen.query_one("#hosts-error"))
        assert "503 [/]\\x1b]52" in error
        assert app.is_running  # nothing crashed, nothing was clicked


async def test_notifications_are_plain_text(home) -> None:
    """A notification carrying outside text (a ledger path, a host, an error) is shown as
    it is: markup in it neither crashes the app nor styles anything."""
    app = make(home)
    async with app.run_test(size=(100, 30)) as pilot:
        app.notify("host [/] said \x1b]0;pwned\x07 [@click=app.quit]", severity="warning")
        await pilot.pause()
        [note] = list(app._notifications)
        assert note.message == "host [/] said \\x1b]0;pwned\\x07 [@click=app.quit]"
        assert not note.markup
        await pilot.pause(0.2)
        assert app.is_running


@pytest.mark.parametrize("body,words", [
    ('name = "v1"\nprimary = "#336699"\nvariables = "oops"\n', "variables = 'oops'"),
    ('name = "v2"\nprimary = "#336699"\n[variables]\nstate-finalized = 12\n',
     "variables.state-finalized = 12 is not a string"),
    ('name = "v3"\nprimary = "#336699"\n[variables]\nstate-failed = "not-a-colour"\n',
     "is not a colour"),
    ('name = "v4"\nprimary = "#336699"\ndark = "yes"\n', "is not true or false"),
])
async def test_a_theme_of_wrong_types_is_reported_not_fatal(home, tmp_path, monkeypatch, body,
                                                            words) -> None:
    """`variables = "oops"` and `state-finalized = 12` crashed the TUI with a traceback."""
    config = tmp_path / "xdg"
    (config / "dltui" / "themes").mkdir(parents=True)
    (config / "dltui" / "themes" / "bad.toml").write_text(body)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    app = DltuiApp(home, TEST_SETTINGS, workers=0, poll_interval=0.1,
                   theme=body.split('"')[1])
    async with app.run_test() as pilot:
        await pilot.pause()
        notes = [n.message for n in app._notifications]
        assert any("bad.toml" in n and words in n for n in notes), notes
        assert app.theme == "dltui-dark"


async def test_an_add_error_holding_markup_is_shown_as_typed(home, tmp_path) -> None:
    """Typing `ftp://x/[/]` crashed the add dialog (the error echoed it as markup)."""
    app = make(home)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#add-urls").text = "ftp://x/[/]\x1b[2J"
        app.screen.query_one("#add-dir").value = str(tmp_path)
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = _text(app.screen.query_one("#add-error"))
        assert "ftp://x/[/]" in error and "\x1b" not in error
        assert app.is_running


async def test_a_waiting_job_and_its_host_tell_the_same_story(home, dest) -> None:
    """A job held back by its host's open breaker says why and for how long in its row, its
    detail and the hosts screen: one count-down (the breaker's), one cause."""
    [job_id] = add(home, dest, "http://busy.example/f.bin")
    until_at = time.time() + 45
    with Ledger(home) as led:
        force_state(led, job_id, JobState.PLANNED, not_before=until_at,
                    error="host cooling down (503 from 4 URLs)")
        hosts.publish(led, [hosts.HostStatus("busy.example", "open", 4, until_at, None,
                                             "HTTP 503 Service Unavailable from "
                                             "http://busy.example/b3", time.time(),
                                             "503 from 4 URLs")])
    app = make(home)
    async with app.run_test(size=(140, 40)) as pilot:
        await until(pilot, lambda: job_id in app.book.jobs and app.side.statuses)
        row = "".join(s.text for s in app.table.render_line(1))
        assert "cooling 4" in row, row  # 45s or 44s left
        if not app.detail.display:
            await pilot.press("enter")
        await until(pilot, lambda: "Waiting" in _text(app.detail.body))
        body = _text(app.detail.body)
        assert "host cooling down 4" in body and "s (503 from 4 URLs)" in body, body
        await pilot.press("h")
        await pilot.pause()
        table = app.screen.query_one("DataTable")
        cells = [str(c) for c in table.get_row_at(0)]
        assert cells[0] == "busy.example" and cells[5].startswith("open 4"), cells
        error = _text(app.screen.query_one("#hosts-error"))
        assert "breaker open: 503 from 4 URLs; 1 job waiting, no try spent" in error, error


#: Every C0 and C1 control, DEL, bidi overrides, and markup Rich or Textual would act on.
HOSTILE = ("".join(chr(c) for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)])
           .replace("\n", "") + "\u202e\u2066 [/] [b]B[/b] [link=https://x]L[/link] "
           "[@click=app.quit]Q[/] $accent \x1b]52;c;cm0gLXJmIH4vKgo=\x07 \x1b[2J")


def _screen_text(app) -> str:
    """Everything the current screen shows, exactly as the terminal would get it (cursor
    moves and colours included)."""
    return app.screen._compositor.render_full_update().render_segments(app.console)


#: What the TUI itself sends: cursor moves and SGR colours (CSI ... letter), line breaks.
_OWN = re.compile(r"\x1b\[[0-9;?]*[A-HJKSTfhlmsu]")


async def test_every_screen_shows_outside_text_escaped_and_never_as_markup(home, dest) -> None:
    """One hostile string (every control byte, bidi overrides, Rich and Textual markup, OSC 52)
    in every field a screen shows: the job row, its detail (error, validators, events), the
    hosts screen (host, limit, last error, breaker cause), the fleet screen (a host's name),
    the flags screen (who set a flag), reconcile, help, the add dialog (typed into it) and the
    workers dialog. Nothing crashes, nothing is clicked, no raw control reaches the terminal."""
    from dltui.ledger import fleet

    [job_id] = add(home, dest, "https://evil.example/[/]/x[b]y.iso")
    with Ledger(home) as led:
        force_state(led, job_id, JobState.FAILED, etag=f'"{HOSTILE}"', last_modified=HOSTILE,
                    error=f"HTTP 403 Forbidden{HOSTILE}", file_name=f"name{HOSTILE}.iso")
        events.record(led, "retry", job_id, error=HOSTILE, attempt=1, delay=1.0)
        hosts.publish(led, [hosts.HostStatus("evil.example", "open", 5, time.time() + 60, None,
                                             HOSTILE, time.time(), HOSTILE)])
        hosts.set_limit(led, f"lim{HOSTILE}", requests_per_second=1.0, bandwidth=None,
                        by=HOSTILE)
        fleet.beat(led, f"h{HOSTILE}:1:x", f"h{HOSTILE}", 2)
        flags.set_flag(led, "fsync", False, by=HOSTILE)
    app = make(home)
    seen: dict[str, str] = {}
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda: job_id in app.book.jobs and app.side.statuses
                    and app.side.processes)
        if not app.detail.display:
            await pilot.press("enter")

        async def drawn(words: str) -> str:
            """The screen once it shows ``words`` (drawing lags the widgets' updates)."""
            await until(pilot, lambda: words in _OWN.sub("", _screen_text(app)))
            return _screen_text(app)

        seen["table+detail"] = await drawn("Forbidden")
        for key, name, words in (("h", "hosts", "Hosts"), ("F", "fleet", "Fleet"),
                                 ("f", "flags", "fsync"), ("R", "reconcile", "Reconcile"),
                                 ("question_mark", "help", "dltui keys"),
                                 ("w", "workers", "In-process workers")):
            await pilot.press(key)
            if name == "hosts":
                await drawn(words)
                await pilot.press("down")  # the limit's host: its row, and its error line
                words = "last error"
            seen[name] = await drawn(words)
            await pilot.press("escape")
            await pilot.pause()
        await pilot.press("a")
        await pilot.pause(0.2)
        await pilot.press(*"ftp://x/[/]")
        await pilot.press("enter")
        await pilot.pause(0.3)
        seen["add"] = _screen_text(app)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert app.is_running  # nothing crashed, no [@click] quit it
    for name, raw in seen.items():
        assert "\x1b[2J" not in raw, name  # the hostile clear-screen never goes out as is
        left = _OWN.sub("", raw)
        stray = {c for c in left if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0
                 or c in "\u202e\u2066"}
        assert not stray, (name, sorted(stray))
        seen[name] = left
    # Each place shows the string as inert text: escapes spelled out, markup verbatim.
    assert "\\x1b]52;c;" in seen["table+detail"] and "[@click=app.quit]" in seen["table+detail"]
    assert "\\u202e" in seen["table+detail"]
    assert "evil.example" in seen["hosts"] and "\\x1b]52;c;" in seen["hosts"]
    assert "h\\x00\\x01" in seen["fleet"], seen["fleet"][:2000]
    assert "set by" in seen["flags"] and "\\x00\\x01\\x02" in seen["flags"]
    assert "[/]" in seen["add"]


@pytest.mark.parametrize("ranges", [True, False, None])
async def test_pausing_a_download_that_cannot_resume_asks_first(home, dest, origin,
                                                                 ranges) -> None:
    """`p` on a running download whose server takes no ranges (or has not said) would throw
    its bytes away: the TUI asks, naming them; `n` leaves it running. With ranges, it pauses
    at once as before."""
    job_id = _ranged_job(home, dest, origin, "/pz.bin", ranges)
    app = make(home, workers=1)
    async with app.run_test() as pilot:
        await until(pilot, lambda: state(home, job_id) is JobState.STREAMING
                    and job(home, job_id).accept_ranges is ranges
                    and app.book.jobs[job_id].bytes_committed > 0)
        await pilot.press("p")
        await pilot.pause()
        if ranges is True:
            assert not isinstance(app.screen, ConfirmScreen)
        else:
            assert isinstance(app.screen, ConfirmScreen)
            text = app.screen.question
            words = "takes no byte ranges" if ranges is False else "has not said it takes"
            assert text.startswith("Pause anyway?") and words in text, text
            await pilot.press("n")
            await pilot.pause(0.5)
            assert state(home, job_id) is JobState.STREAMING  # asked, not paused
            await pilot.press("p")
            await pilot.pause()
            await pilot.press("y")
        await until(pilot, lambda: state(home, job_id) is JobState.PAUSED, timeout=15)


def test_cli_pause_says_what_a_server_without_ranges_loses(home, dest) -> None:
    [job_id] = add(home, dest, "http://127.0.0.1:9/nr.bin")
    with Ledger(home) as led:
        force_state(led, job_id, JobState.STREAMING, accept_ranges=0, bytes_committed=500_000,
                    lease_owner="elsewhere:1:x:w", lease_until=time.time() + 60)
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "dltui", "pause", str(job_id)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (f"dltui pause: note: job {job_id}'s server takes no byte ranges: the 488.3K "
            "it has start over when it runs again") in done.stderr, done.stderr


async def test_a_running_cursor_reads_the_detail_only_where_it_stops(home, dest,
                                                                     monkeypatch) -> None:
    """Twenty rows passed at key-repeat speed: the detail is read on one reader thread that
    drops superseded reads (it started a thread and a connection per row), and the pane ends
    on the row the cursor stopped at."""
    from dltui.tui import app as app_module

    ids = add(home, dest, *[f"http://127.0.0.1:9/r{i}.bin" for i in range(21)])
    real = app_module.read_detail
    calls: list[int] = []

    def slow(ledger, job_id):
        calls.append(job_id)
        time.sleep(0.5)  # a busy ledger
        return real(ledger, job_id)

    monkeypatch.setattr(app_module, "read_detail", slow)
    app = make(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: len(app.book.jobs) == 21)
        if not app.detail.display:
            await pilot.press("enter")
        before = len(calls)
        for _ in range(20):
            await pilot.press("down")
        await until(pilot, lambda: app.table.current == ids[20]
                    and f"#{ids[20]}" in _text(app.detail.head) and calls[-1] == ids[20])
        readers = [t for t in threading.enumerate() if t.name.startswith("dltui-tui-")]
    assert len(calls) - before <= 10, calls  # not one per row passed
    assert sum(t.name == "dltui-tui-detail" for t in readers) == 1
    assert not any(t.name == "dltui-tui-read" for t in readers)
