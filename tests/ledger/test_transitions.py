import itertools
import json

import pytest

from dltui.errors import IllegalTransition, LeaseLost, UnknownJob
from dltui.ledger import actions, events, jobs
from dltui.model import TRANSITIONS, JobState
from tests.conftest import add_job, force_state

PAIRS = list(itertools.product(JobState, JobState))


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_transition(ledger, dest, source: JobState, target: JobState) -> None:
    job_id = add_job(ledger, dest)
    force_state(ledger, job_id, source)
    before = jobs.get(ledger, job_id)
    if target in TRANSITIONS[source]:
        after = jobs.transition(ledger, job_id, target, reason="test")
        assert after.state is target
        assert after.rev > before.rev
        last = events.for_job(ledger, job_id)[-1]
        assert last.kind == "state"
        assert (last.data["from"], last.data["to"]) == (source.value, target.value)
    else:
        with pytest.raises(IllegalTransition) as info:
            jobs.transition(ledger, job_id, target)
        assert source.value in str(info.value) and target.value in str(info.value)
        after = jobs.get(ledger, job_id)
        assert after.state is source
        assert after.rev == before.rev


def test_transition_of_unknown_job(ledger) -> None:
    with pytest.raises(UnknownJob):
        jobs.transition(ledger, 42, JobState.LEASED)


def test_owner_guard(ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    force_state(ledger, job_id, JobState.LEASED, lease_owner="a", lease_until=1e12)
    with pytest.raises(LeaseLost):
        jobs.transition(ledger, job_id, JobState.PRECHECKED, owner="b")
    assert jobs.transition(ledger, job_id, JobState.PRECHECKED, owner="a").state == "PRECHECKED"


def test_update_refuses_state_and_unknown_columns(ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    with pytest.raises(ValueError, match="state"):
        jobs.update(ledger, job_id, owner=None, state="FINALIZED")
    with pytest.raises(ValueError, match="bogus"):
        jobs.update(ledger, job_id, owner=None, bogus=1)


def test_finished_at_set_on_terminal_and_cleared_on_requeue(ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    force_state(ledger, job_id, JobState.STREAMING)
    failed = jobs.transition(ledger, job_id, JobState.FAILED, fields={"error": "boom"})
    assert failed.finished_at is not None
    again = actions.retry(ledger, job_id)
    assert again == "queued for retry"
    job = jobs.get(ledger, job_id)
    assert job.state is JobState.PLANNED and job.finished_at is None and job.error is None


def test_events_are_json(ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    actions.pause(ledger, job_id)
    raw = ledger.conn.execute("SELECT data FROM events WHERE job_id = ?", (job_id,)).fetchall()
    assert all(isinstance(json.loads(r[0]), dict) for r in raw)
