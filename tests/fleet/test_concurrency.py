"""PostgreSQL writers side by side: what a poller sees when commits land out of rev order,
which transactions wait for which, and leasing that skips rows another host has locked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dltui.ledger import Ledger, jobs
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
