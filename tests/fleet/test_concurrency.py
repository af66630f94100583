"""PostgreSQL writers side by side: what a poller sees when commits land out of rev order,
which transactions wait for which, and leasing that skips rows another host has locked."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dltui.errors import LedgerError
from dltui.ledger import Ledger, jobs, ledger_errors
from dltui.model import JobState
from tests.conftest import add_job


@pytest.fixture
def led(home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv("DLTUI_LEDGER", pg_url)
    ledger = Ledger(home)
    yield ledger
    ledger.close()


def test_a_late_commit_with_a_smaller_rev_is_not_missed(led: Ledger, pg_url: str,
                                                        dest: Path) -> None:
    first, second = (add_job(led, dest, f"http://example.com/{i}") for i in range(2))
    _, cursor = jobs.changes(led, None)
    with psycopg.connect(pg_url) as slow:  # a writer that takes its rev, then dawdles
        slow.execute("UPDATE jobs SET bytes_committed = 7, rev = nextval('jobs_rev') "
                     "WHERE id = %s", (first,))
        slow_rev = slow.execute("SELECT rev FROM jobs WHERE id = %s", (first,)).fetchone()
        jobs.update(led, second, owner=None, bytes_committed=9)  # commits first
        seen, cursor = jobs.changes(led, cursor)
        assert [(j.id, j.bytes_committed) for j in seen] == [(second, 9)]
        assert slow_rev is not None and slow_rev[0] < seen[0].rev  # "rev > N" would skip it
        slow.commit()
    seen, cursor = jobs.changes(led, cursor)
    assert [(j.id, j.bytes_committed) for j in seen] == [(first, 7)]
    assert jobs.changes(led, cursor)[0] == []


def test_a_rolled_back_write_is_never_seen(led: Ledger, pg_url: str, dest: Path) -> None:
    job_id = add_job(led, dest, "http://example.com/x")
    _, cursor = jobs.changes(led, None)
    with psycopg.connect(pg_url) as gone:
        gone.execute("UPDATE jobs SET bytes_committed = 5 WHERE id = %s", (job_id,))
        gone.rollback()
    assert jobs.changes(led, cursor)[0] == []


def test_leasing_passes_over_a_row_another_writer_holds(led: Ledger, home: Path, pg_url: str,
                                                        dest: Path) -> None:
    from dltui.ledger import actions, leases

    ids = [add_job(led, dest, f"http://example.com/{i}") for i in range(3)]
    holding, release = threading.Event(), threading.Event()

    def hold_first() -> None:  # a worker's transaction on job 1, still open
        with led.write(shared=True) as conn:
            jobs.write_row(conn, ids[0], {"bytes_committed": 1})
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_first)
    holder.start()
    assert holding.wait(10)
    # A short lock timeout: waiting for job 1 (or the write lock) would fail, not pass.
    other = Ledger(home, busy_timeout=2)
    try:
        taken = leases.lease_next(other, leases.owner_id(), ttl=60)
        assert taken is not None and taken.id == ids[1]  # job 1 is skipped, not waited for
        paused: list[str] = []

        def pause() -> None:
            with Ledger(home) as mine:
                paused.append(actions.pause(mine, ids[2]))

        operator = threading.Thread(target=pause)
        operator.start()
        operator.join(0.5)
        assert operator.is_alive() and not paused  # an exclusive write waits for the workers
        release.set()
        operator.join(10)
        holder.join(10)
        assert len(paused) == 1 and jobs.get(other, ids[2]).control == "pause"
        assert jobs.get(other, ids[0]).bytes_committed == 1
    finally:
        release.set()
        other.close()


def test_an_exclusive_write_cannot_join_a_shared_one(led: Ledger) -> None:
    with led.write(shared=True), pytest.raises(RuntimeError, match="cannot join"), led.write():
        pass
    with led.write(), led.write(shared=True) as conn:  # the other way round is fine
        conn.execute("SELECT 1")


def test_a_process_keeps_no_more_connections_than_its_pool(home: Path, pg_url: str, dest: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from dltui.ledger import leases
    from tests.ledger.racer import race

    monkeypatch.setenv("DLTUI_LEDGER", pg_url)
    monkeypatch.setenv("DLTUI_HOST_NAME", "pool-host")
    monkeypatch.setenv("DLTUI_LEDGER_CONNECTIONS", "3")
    led = Ledger(home)
    jobs.add(led, [jobs.JobSpec(f"http://example.com/{i}", dest) for i in range(120)])
    me = f"dltui pool-host {os.getpid()}"
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        with psycopg.connect(pg_url, autocommit=True) as watch:
            while not done.is_set():
                row = watch.execute("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE application_name = %s", (me,)).fetchone()
                seen.append(int(row[0]) if row else 0)
                time.sleep(0.005)

    found: list[list[int]] = [[] for _ in range(16)]

    second = Ledger(home)  # a process's ledgers share its pool (the TUI opens several)

    def work(i: int) -> None:
        found[i] = race(led if i % 2 else second, leases.owner_id(), "finish")

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    sampler.join(10)
    try:
        taken = sorted(j for ids in found for j in ids)
        assert taken == list(range(1, 121))  # 16 threads, each job once
        assert jobs.counts(led)[JobState.FINALIZED] == 120
        assert seen and 1 <= max(seen) <= 3, max(seen)
    finally:
        second.close()
        led.close()


def test_a_pool_in_use_too_long_says_so(home: Path, pg_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLTUI_LEDGER", pg_url)
    monkeypatch.setenv("DLTUI_LEDGER_CONNECTIONS", "1")
    led = Ledger(home, busy_timeout=1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with led.read():
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        with pytest.raises(LedgerError, match="all 1 ledger connections of this process "
                                              "stayed in use for 1 s; more: setting "
                                              "ledger_connections"), ledger_errors(led.path):
            jobs.counts(led)
    finally:
        release.set()
        holder.join(10)
    assert jobs.counts(led)[JobState.PLANNED] == 0  # free again
    led.close()


def test_a_takeover_passes_over_a_job_its_late_owner_is_still_writing(
        led: Ledger, home: Path, dest: Path) -> None:
    from dltui.ledger import leases

    job_id = add_job(led, dest, "http://example.com/late")
    gone = "elsewhere:1:1:t"  # a host that looks dead from here: its lease ran out
    leased = leases.lease_next(led, gone, ttl=0.01)
    assert leased is not None and leased.id == job_id
    time.sleep(0.05)
    holding, release = threading.Event(), threading.Event()

    def late_write() -> None:  # the owner's last checkpoint, still open
        with led.write(shared=True) as conn:
            conn.execute("SELECT id FROM jobs WHERE id = ? FOR UPDATE", (job_id,))
            holding.set()
            release.wait(30)

    writer = threading.Thread(target=late_write)
    writer.start()
    other = Ledger(home, busy_timeout=2)
    try:
        assert holding.wait(10)
        assert leases.lease_next(other, leases.owner_id(), ttl=60) is None  # skipped, no wait
        release.set()
        writer.join(10)
        taken = leases.lease_next(other, leases.owner_id(), ttl=60)
        assert taken is not None and taken.id == job_id  # once free, taken over
    finally:
        release.set()
        other.close()
