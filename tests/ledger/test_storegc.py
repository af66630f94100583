"""The store's collector on both backends: what it keeps, what it gives back, and why."""

from __future__ import annotations

import os

from dltui import paths
from dltui.ledger import events, objects, storegc
from dltui.ledger.clock import now
from dltui.model import JobState
from dltui.store import Store, file_identity
from tests.conftest import add_job, force_state
from tests.engine.helpers import blob, sha


def _stored(home, data: bytes) -> tuple[Store, str]:
    store = Store(paths.store_dir(home))
    src = home / f"in-{sha(data)[:8]}"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    store.promote(src, sha(data))
    return store, sha(data)


def test_objects_unfinished_jobs_name_are_kept_until_they_finish(ledger, home, dest) -> None:
    store, digest = _stored(home, blob(100_000, seed=1))
    finishing = add_job(ledger, dest, "http://example.com/f")
    force_state(ledger, finishing, JobState.FINALIZING, sha256=digest)
    reusing = add_job(ledger, dest, "http://example.com/r")  # a `cached` decision's hold
    force_state(ledger, reusing, JobState.PRECHECKED, sha256=digest)
    assert storegc.collect(ledger, store).deleted == []
    force_state(ledger, finishing, JobState.FINALIZED)
    assert storegc.collect(ledger, store, only=[digest]).deleted == []  # still held
    force_state(ledger, reusing, JobState.FAILED, sha256=None)
    report = storegc.collect(ledger, store, only=[digest])
    assert [d for d, _ in report.deleted] == [digest] and report.freed >= 100_000
    assert not store.has(digest) and objects.get(ledger, digest) is None
    [gc] = [e for e in events.recent(ledger, limit=50) if e.kind == "store_gc"]
    assert gc.data["objects"] == 1


def test_an_object_a_file_shares_costs_nothing_and_stays(ledger, home, dest) -> None:
    store, digest = _stored(home, blob(50_000, seed=2))
    os.link(store.object_path(digest), dest / "placed.bin")
    survey = storegc.survey(ledger, store)
    assert (survey.objects, survey.alone) == (1, 0)
    assert storegc.collect(ledger, store).deleted == []
    (dest / "placed.bin").unlink()  # the user deletes the download
    assert storegc.survey(ledger, store).alone >= 50_000
    assert len(storegc.collect(ledger, store).deleted) == 1


def test_the_budget_keeps_the_most_recently_used(ledger, home, dest) -> None:
    datas = [blob(40_000, seed=10 + i) for i in range(3)]
    store = Store(paths.store_dir(home))
    for i, data in enumerate(datas):
        _, digest = _stored(home, data)
        ident = file_identity(store.object_path(digest))
        with ledger.write() as conn:
            objects.record_in(conn, [(digest, ident)])
            conn.execute("UPDATE objects SET used_at = ? WHERE sha256 = ?",
                         (now() - 100 + i, digest))
    budget = 2 * store.stat_object(sha(datas[0])).cost
    dry = storegc.collect(ledger, store, budget=budget, dry_run=True)
    assert [d for d, _ in dry.deleted] == [sha(datas[0])] and dry.kept == 2
    assert store.has(sha(datas[0]))  # a dry run deletes nothing
    report = storegc.collect(ledger, store, budget=budget)
    assert [d for d, _ in report.deleted] == [sha(datas[0])]
    assert store.has(sha(datas[1])) and store.has(sha(datas[2]))
    assert len(storegc.collect(ledger, store).deleted) == 2  # no budget: all go


def test_a_placement_under_way_is_never_collected(ledger, home, dest) -> None:
    import fcntl

    store, digest = _stored(home, blob(30_000, seed=3))
    fd = os.open(store.object_path(digest), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a LINK in another process holds it
        assert storegc.collect(ledger, store).deleted == []
    finally:
        os.close(fd)
    assert len(storegc.collect(ledger, store).deleted) == 1


def test_a_collection_cut_short_leaves_a_record_the_next_drops(ledger, home, dest) -> None:
    """As if killed between its unlink and its commit: the record outlives the file."""
    from dltui.ledger import check

    store, digest = _stored(home, blob(20_000, seed=4))
    with ledger.write() as conn:
        objects.record_in(conn, [(digest, file_identity(store.object_path(digest)))])
    store.object_path(digest).unlink()
    [problem] = [p for p in check.check(ledger) if p.kind == "object_missing"]
    assert problem.note  # no job needs it: worth knowing, nothing wrong
    storegc.collect(ledger, store, only=[digest])
    assert objects.get(ledger, digest) is not None  # a targeted collection weighs files only
    storegc.collect(ledger, store)
    assert objects.get(ledger, digest) is None
    assert not [p for p in check.check(ledger) if p.kind == "object_missing"]
