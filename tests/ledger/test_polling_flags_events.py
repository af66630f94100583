import pytest

from dltui.errors import UnknownFlag
from dltui.ledger import actions, events, flags, jobs
from dltui.model import JobState
from tests.conftest import add_job


def test_changes_returns_only_newer_rows(ledger, dest) -> None:
    ids = [add_job(ledger, dest, f"http://example.com/{i}") for i in range(5)]
    everything, cursor = jobs.changes(ledger, None)
    assert [j.id for j in everything] == ids
    assert jobs.changes(ledger, cursor)[0] == []
    assert jobs.changes(ledger, jobs.cursor_now(ledger))[0] == []
    actions.pause(ledger, ids[1])
    jobs.update(ledger, ids[3], owner=None, bytes_committed=10)
    changed, after = jobs.changes(ledger, cursor)
    assert [j.id for j in changed] == [ids[1], ids[3]]
    assert changed[1].bytes_committed == 10 and changed[0].rev < changed[1].rev
    assert jobs.changes(ledger, after)[0] == []
    jobs.update(ledger, ids[1], owner=None, bytes_committed=5)
    assert [j.id for j in jobs.changes(ledger, after)[0]] == [ids[1]]


def test_a_cursor_of_the_other_backend_reads_everything(ledger, dest) -> None:
    ids = [add_job(ledger, dest, f"http://example.com/{i}") for i in range(3)]
    foreign = "1:1:" if not ledger.pg else 10**9
    assert [j.id for j in jobs.changes(ledger, foreign)[0]] == ids


def test_revs_are_unique_and_increasing(ledger, dest) -> None:
    for i in range(20):
        add_job(ledger, dest, f"http://example.com/{i}")
    actions.pause(ledger, 3)
    revs = [r[0] for r in ledger.conn.execute("SELECT rev FROM jobs ORDER BY rev")]
    assert len(revs) == len(set(revs))
    assert jobs.get(ledger, 3).rev == max(revs)


def test_flags_defaults_set_and_audited(ledger) -> None:
    assert flags.get(ledger, "resume") is True
    assert flags.set_flag(ledger, "resume", False, by="tui") is True
    assert flags.set_flag(ledger, "resume", False, by="tui") is False  # unchanged: no event
    assert flags.get(ledger, "resume") is False
    state = {f.name: f for f in flags.all_flags(ledger)}["resume"]
    assert (state.value, state.default, state.updated_by) == (False, True, "tui")
    audit = events.recent(ledger, kind="flag")
    assert [(e.data["name"], e.data["old"], e.data["new"], e.data["by"]) for e in audit] == [
        ("resume", True, False, "tui")
    ]


def test_env_overrides(ledger) -> None:
    applied = flags.apply_env(ledger, {"DLTUI_FLAG_FSYNC": "0", "DLTUI_FLAG_DEDUPE": "on",
                                       "UNRELATED": "x"})
    assert applied == {"fsync": False, "dedupe": True}
    assert flags.values(ledger)["fsync"] is False
    assert events.recent(ledger, kind="flag")[-1].data["by"] == "env"


@pytest.mark.parametrize(
    ("env", "needle"),
    [({"DLTUI_FLAG_NOPE": "1"}, "names no flag"), ({"DLTUI_FLAG_FSYNC": "maybe"}, "not a flag")],
)
def test_bad_env_flags(ledger, env, needle) -> None:
    with pytest.raises(UnknownFlag, match=needle):
        flags.apply_env(ledger, env)
    assert flags.get(ledger, "fsync") is True


def test_unknown_flag_name(ledger) -> None:
    with pytest.raises(UnknownFlag, match="known flags"):
        flags.set_flag(ledger, "turbo", True, by="cli")


def test_events_are_pruned_by_count(ledger, monkeypatch) -> None:
    monkeypatch.setattr(events, "PRUNE_EVERY", 10)
    with ledger.write() as conn:
        for i in range(35):
            events.append(conn, "tick", None, keep=10, i=i)
    remaining = [e.data["i"] for e in events.recent(ledger, limit=100)]
    assert remaining[-1] == 34
    assert 10 <= len(remaining) < 20
    assert remaining == sorted(remaining)


def test_operator_actions(ledger, dest) -> None:
    queued = add_job(ledger, dest, "http://example.com/q")
    assert actions.pause(ledger, queued) == "paused"
    assert actions.pause(ledger, queued) == "already paused"
    assert actions.resume(ledger, queued) == "resumed"
    assert jobs.get(ledger, queued).state is JobState.PLANNED
    with pytest.raises(actions.NotApplicable, match="retry applies to jobs in FAILED"):
        actions.retry(ledger, queued)
    assert actions.cancel(ledger, queued) == "cancelled"
    with pytest.raises(actions.NotApplicable):
        actions.cancel(ledger, queued)


def test_typed_flags_follow_the_ledger(ledger) -> None:
    assert flags.current(ledger) == flags.Flags()  # every default on
    flags.set_flag(ledger, "segmented", False, by="test")
    current = flags.current(ledger)
    assert current.segmented is False and current.resume is True
    assert set(flags.FLAGS) == {f.name for f in flags.all_flags(ledger)}
