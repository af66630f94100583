"""JobBook: counts, rates, ETA and the visible order, from plain Job rows."""

from dataclasses import replace

from dltui.model import Control, Job, JobState
from dltui.tui.model import JobBook, SortKey, Tab


def job(i: int, state=JobState.PLANNED, done=0, total=None, name=None, rev=None) -> Job:
    return Job(id=i, idem_key=str(i), url=f"https://e.org/{name or f'f{i}'}",
               canonical_url=f"https://e.org/{name or f'f{i}'}", dest_dir="/d",
               requested_name=None, file_name=name, expected_sha256=None, state=state,
               control=Control.RUN, attempts=0, lease_owner=None, lease_until=None,
               heartbeat_at=None, etag=None, last_modified=None, content_length=total,
               accept_ranges=None, bytes_committed=done, bytes_total=total, prefix_hash=None,
               decision=None, decision_reason=None, sha256=None, final_path=None, error=None,
               created_at=0.0, updated_at=0.0, finished_at=None, rev=rev or i)


def test_counts_follow_state_changes() -> None:
    book = JobBook(clock=lambda: 0.0)
    book.apply([job(1), job(2), job(3, JobState.FAILED)], now=0.0)
    assert book.counts()[JobState.PLANNED] == 2 and book.tab_count(Tab.FAILED) == 1
    book.apply([job(1, JobState.STREAMING, rev=10)], now=1.0)
    assert book.counts()[JobState.PLANNED] == 1 and book.tab_count(Tab.ACTIVE) == 1


def test_failed_tab_counts_what_run_calls_failed() -> None:
    book = JobBook(clock=lambda: 0.0)
    book.apply([job(1, JobState.FAILED), job(2, JobState.CANCELLED), job(3, JobState.CANCELLED)],
               now=0.0)
    assert (book.tab_count(Tab.FAILED), book.tab_count(Tab.CANCELLED)) == (1, 2)


def test_rate_and_eta_from_committed_deltas() -> None:
    now = [0.0]
    book = JobBook(clock=lambda: now[0])
    book.apply([job(1, JobState.STREAMING, 0, 1000)], now=0.0)
    now[0] = 2.0
    book.apply([job(1, JobState.STREAMING, 400, 1000, rev=5)], now=2.0)
    book.tick(2.0)
    assert book.rate(1) == 200.0
    assert book.eta(1) == 3.0
    assert book.total_rate == 200.0


def test_order_filters_tabs_and_sorts() -> None:
    book = JobBook(clock=lambda: 0.0)
    book.apply([job(1, name="zeta.iso"), job(2, name="alpha.iso"),
                job(3, JobState.FINALIZED, name="beta.tar")], now=0.0)
    assert book.order() == [1, 2, 3]
    book.set_view(text="iso")
    assert book.order() == [1, 2]
    book.set_view(sort=SortKey.NAME)
    assert book.order() == [2, 1]
    book.set_view(text="", tab=Tab.DONE)
    assert book.order() == [3]
    book.set_view(tab=Tab.ALL, reverse=True, sort=SortKey.ID)
    assert book.order() == [3, 2, 1]
    book.set_view(text="2", reverse=False)  # a job id matches too
    assert book.order() == [2]


def test_order_updates_when_a_state_changes() -> None:
    book = JobBook(clock=lambda: 0.0)
    book.apply([job(1), job(2)], now=0.0)
    book.set_view(tab=Tab.QUEUED)
    assert book.order() == [1, 2]
    book.apply([replace(job(2), state=JobState.STREAMING, rev=9)], now=1.0)
    assert book.order() == [1]
