"""The TUI's ledger runner: reads close their own connection, and closing waits for them."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from dltui.ledger import Ledger
from dltui.tui.background import LedgerRunner
from tests.conftest import wait_for


def _runner(home) -> LedgerRunner:
    Ledger(home).close()  # the runner opens an existing ledger
    app = SimpleNamespace(is_running=False)  # results are dropped: no app to show them
    return LedgerRunner(app, home, lambda problem: None)  # type: ignore[arg-type]


def test_reads_leave_no_connection_behind(home) -> None:
    runner = _runner(home)
    done = []
    for _ in range(20):  # a cursor moving over twenty rows
        runner.read(lambda led: done.append(led.conn.execute("SELECT 1").fetchone()[0]),
                    lambda _: None)
    wait_for(lambda: len(done) == 20 and not runner._reads, "the reads did not end")
    assert len(runner._ledger._all) == 0
    runner.close()


def test_closing_waits_for_a_read_in_flight(home) -> None:
    runner = _runner(home)
    started, finished = threading.Event(), threading.Event()

    def slow(led: Ledger) -> None:
        started.set()
        for _ in range(50):  # still querying while the app leaves
            led.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
            time.sleep(0.01)
        finished.set()

    runner.read(slow, lambda _: None)
    started.wait(5)
    runner.close()
    assert finished.is_set()
    runner.read(slow, lambda _: None)  # after close: not started
    time.sleep(0.1)
    assert not runner._reads
