"""Segmented downloads through the worker pool, against the loopback origin's faults."""

from __future__ import annotations

import re
import threading
import time

import pytest

from dltui import paths
from dltui.engine.resume import OVERLAP_BYTES
from dltui.ledger import actions, events, jobs, segments
from dltui.model import JobState, Segment, plan_segments
from dltui.origin import Resource
from dltui.worker import WorkerPool
from tests.conftest import wait_for
from tests.engine.helpers import blob, decisions, fetch_one, sha

MiB = 1 << 20
RANGED = re.compile(r"^bytes=(\d+)-(\d+)$")


@pytest.fixture
def seg_settings(settings):
    # Split at once (as aria2c does): loopback is too fast for the "held back" probe.
    return settings.replace(connections_per_file=4, min_segment_size=MiB, split_below_rate=0)


def ranged(origin, path: str) -> list[tuple[int, int, str | None, int]]:
    """(first, last, If-Range, status) of every segment request (``bytes=a-b``) for ``path``."""
    out = []
    for r in origin.requests(path, "GET"):
        m = RANGED.match(r.headers.get("range", ""))
        if m:
            out.append((int(m[1]), int(m[2]), r.headers.get("if-range"), r.status))
    return out


def assert_done(ledger, job, data: bytes) -> None:
    assert job.state is JobState.FINALIZED, job.error
    assert job.sha256 == sha(data)
    with open(job.final_path, "rb") as fh:
        assert fh.read() == data
    assert not paths.part_path(ledger.home, job.id).exists()
    assert segments.for_job(ledger, job.id) == []  # rows end with the download


def start_slow(ledger, dest, origin, settings, path: str, data: bytes):
    """Queue ``path`` throttled to 2 MiB/s a connection and work on it in the background;
    returns (job id, the pool's thread)."""
    url = origin.add(path, Resource(data=data, rate=2 * MiB))
    [added] = jobs.add(ledger, [jobs.JobSpec(url, dest)])
    pool = WorkerPool(ledger, settings, workers=1)
    thread = threading.Thread(target=pool.run_until_idle, daemon=True)
    thread.start()
    return added.job.id, thread




def test_plan_segments_tiles_the_object() -> None:
    assert plan_segments(10, 4, 20) == [Segment(0, 0, 10)]
    plan = plan_segments(100 * MiB + 3, 4, 20 * MiB)
    assert [s.start for s in plan] == [0, 25 * MiB, 50 * MiB, 75 * MiB]
    assert plan[-1].end == 100 * MiB + 3
    assert len(plan_segments(50 * MiB, 8, 20 * MiB)) == 2  # never below the minimum size


def test_large_file_is_split_into_ranged_connections(ledger, dest, origin, seg_settings) -> None:
    data = blob(8 * MiB, seed=51)
    url = origin.add("/seg.bin", data)
    job = fetch_one(ledger, dest, seg_settings, url)
    assert_done(ledger, job, data)
    gets = origin.requests("/seg.bin", "GET")
    assert "range" not in gets[0].headers  # the first GET asks for everything: segment 0
    etag = gets[0].headers.get("if-range") or job.etag
    assert sorted(ranged(origin, "/seg.bin")) == [
        (2 * MiB, 4 * MiB - 1, etag, 206), (4 * MiB, 6 * MiB - 1, etag, 206),
        (6 * MiB, 8 * MiB - 1, etag, 206)]
    kinds = {e.kind for e in events.for_job(ledger, job.id, 200)}
    assert "internal_error" not in kinds


def test_small_file_uses_one_connection(ledger, dest, origin, seg_settings) -> None:
    data = blob(MiB + 5, seed=52)  # below two minimum segments
    url = origin.add("/one.bin", data)
    assert_done(ledger, fetch_one(ledger, dest, seg_settings, url), data)
    assert len(origin.requests("/one.bin", "GET")) == 1


def test_flag_off_uses_one_connection(ledger, dest, origin, seg_settings) -> None:
    from dltui.ledger import flags

    flags.set_flag(ledger, "segmented", False, by="test")
    data = blob(8 * MiB, seed=53)
    url = origin.add("/flag.bin", data)
    assert_done(ledger, fetch_one(ledger, dest, seg_settings, url), data)
    assert len(origin.requests("/flag.bin", "GET")) == 1


def test_reset_mid_segment_resumes_every_segment(ledger, dest, origin, seg_settings) -> None:
    data = blob(8 * MiB, seed=54)
    # The first two GETs (segment 0's whole-object GET and one ranged GET) are cut short.
    url = origin.add("/reset.bin", Resource(data=data, drop_after=MiB + 777, drop_times=2))
    job = fetch_one(ledger, dest, seg_settings, url)
    assert_done(ledger, job, data)
    requests = ranged(origin, "/reset.bin")
    bounds = {0, 2 * MiB, 4 * MiB, 6 * MiB}
    resumed = [r for r in requests if r[0] not in bounds]
    # After the reset, segments went on from their checkpoints, under If-Range.
    assert resumed and all(r[2] == job.etag and r[3] == 206 for r in resumed)
    assert ("resume", "validators_match") in decisions(ledger, job.id)


def test_server_ignoring_ranges_falls_back_to_one_connection(ledger, dest, origin,
                                                             seg_settings) -> None:
    data = blob(8 * MiB, seed=55)
    # It says "Accept-Ranges: bytes" but answers every Range request with the whole object.
    url = origin.add("/ignore.bin", Resource(data=data, ranges=False, claim_ranges=True))
    job = fetch_one(ledger, dest, seg_settings.replace(retries=1), url)
    assert_done(ledger, job, data)
    statuses = [r[3] for r in ranged(origin, "/ignore.bin")]
    assert statuses and set(statuses) == {200}
    assert ("fresh", "range_ignored") in decisions(ledger, job.id)
    assert job.attempts == 1 and "retry" not in {
        e.kind for e in events.for_job(ledger, job.id, 200)}


def test_etag_change_midway_restarts_all_segments(ledger, dest, origin, seg_settings) -> None:
    """Segments now send If-Match beside If-Range, so the changed object answers 412 (it
    was a 200 of the new object), and the change starts the download over without counting
    a failed try (it was a retry with reason validators_mismatch)."""
    old, new = blob(8 * MiB, seed=56), blob(8 * MiB, seed=57)
    # GET 0 (segment 0) serves the old object; every later GET the new one.
    url = origin.add("/change.bin", Resource(versions=[old, new], change_after=1))
    job = fetch_one(ledger, dest, seg_settings.replace(retries=1), url)
    assert_done(ledger, job, new)  # never a splice of the two
    refused = [r for r in ranged(origin, "/change.bin") if r[3] == 412]
    assert refused  # If-Match with the old ETag: the new object is not sent
    kinds = [(e.kind, e.data.get("reason")) for e in events.for_job(ledger, job.id, 200)]
    assert ("content_changed", "etag_changed") in kinds and "retry" not in {k for k, _ in kinds}
    assert job.failed_tries == 0
    gets = origin.requests("/change.bin", "GET")
    restarted = [g for g in gets[1:] if "range" not in g.headers]
    assert restarted, "the download did not start over"
    assert not origin.requests("/change.bin", "HEAD")[1:], "a second HEAD after the change"


def test_segments_are_checkpointed_in_the_ledger(ledger, dest, origin, seg_settings) -> None:
    data = blob(8 * MiB, seed=58)
    job_id, thread = start_slow(ledger, dest, origin, seg_settings, "/slow.bin", data)
    seen: list[list[Segment]] = []
    while thread.is_alive() and len(seen) < 400:
        rows = segments.for_job(ledger, job_id)
        if rows:
            seen.append(rows)
        thread.join(0.01)
    thread.join(60)
    assert seen, "no segment checkpoint was ever recorded"
    # Mid-download, several segments had bytes in at once, each within its own range.
    busy = [rows for rows in seen if sum(1 for s in rows if s.done > 0) >= 2]
    assert busy
    for rows in seen:
        assert [s.start for s in rows] == [0, 2 * MiB, 4 * MiB, 6 * MiB]
        assert all(0 <= s.done <= s.length for s in rows)
    assert_done(ledger, jobs.get(ledger, job_id), data)


def test_pause_and_resume_continue_every_segment(ledger, home, dest, origin,
                                                 seg_settings) -> None:
    data = blob(8 * MiB, seed=59)
    job_id, thread = start_slow(ledger, dest, origin, seg_settings, "/pause.bin", data)
    wait_for(lambda: sum(s.done > 0 for s in segments.for_job(ledger, job_id)) >= 2,
             "segments never started")
    assert actions.pause(ledger, job_id) == "pause requested"
    thread.join(20)
    assert not thread.is_alive()
    paused = jobs.get(ledger, job_id)
    saved = segments.for_job(ledger, job_id)
    assert paused.state is JobState.PAUSED and len(saved) == 4
    assert 0 < paused.bytes_committed == sum(s.done for s in saved) < len(data)
    part = paths.part_path(home, job_id).read_bytes()
    for s in saved:  # every checkpointed byte is the origin's byte at that offset
        assert part[s.start:s.start + s.done] == data[s.start:s.start + s.done]

    actions.resume(ledger, job_id)
    fetch_one(ledger, dest, seg_settings, origin.url("/pause.bin"))  # the same job
    assert_done(ledger, jobs.get(ledger, job_id), data)
    # Each unfinished segment went on from its checkpoint, under If-Range.
    asked = {r[0]: r[2] for r in ranged(origin, "/pause.bin")}
    for s in saved:
        if not s.complete:
            # Each resumed from its own checkpoint, fetching its last bytes again to compare.
            assert asked.get(s.start + s.done - min(OVERLAP_BYTES, s.done)) == paused.etag, s


def test_cancel_clears_the_segments(ledger, home, dest, origin, seg_settings) -> None:
    job_id, thread = start_slow(ledger, dest, origin, seg_settings, "/cancel.bin",
                                blob(8 * MiB, seed=60))
    wait_for(lambda: segments.for_job(ledger, job_id), "no segment checkpoint")
    assert actions.cancel(ledger, job_id) == "cancel requested"
    thread.join(20)
    assert jobs.get(ledger, job_id).state is JobState.CANCELLED
    assert segments.for_job(ledger, job_id) == []
    assert not paths.part_path(home, job_id).exists()


def test_a_fast_connection_is_not_split(ledger, dest, origin, settings) -> None:
    data = blob(48 * MiB, seed=120)
    url = origin.add("/fast.bin", data)
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=4,
                                                   min_segment_size=MiB), url)
    assert_done(ledger, job, data)
    assert len(origin.requests("/fast.bin", "GET")) == 1  # CPU-bound already: one connection


def test_a_held_back_connection_is_split_after_the_probe(ledger, dest, origin, settings) -> None:
    data = blob(24 * MiB, seed=121)
    url = origin.add("/slow.bin", Resource(data=data, rate=4 * MiB))  # per connection
    began = time.monotonic()
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=4,
                                                   min_segment_size=MiB), url)
    assert_done(ledger, job, data)
    gets = origin.requests("/slow.bin", "GET")
    assert "range" not in gets[0].headers  # the first connection carried on as segment 0
    assert len(ranged(origin, "/slow.bin")) == 3
    assert time.monotonic() - began < 24 / 4 * 0.75  # four connections beat one


def test_no_split_when_dltui_own_limit_holds_the_connection_back(ledger, dest, origin,
                                                                  settings) -> None:
    """With --max-bandwidth below what one connection carries, more connections would only
    share the same limit: the download stays on one (it was split into 8)."""
    data = blob(5 * MiB, seed=61)
    url = origin.add("/limited.bin", data)
    limited = settings.replace(connections_per_file=8, min_segment_size=MiB,
                               max_bandwidth=2 * MiB)
    job = fetch_one(ledger, dest, limited, url)
    assert_done(ledger, job, data)
    assert ranged(origin, "/limited.bin") == []


def test_a_server_slower_than_dltui_own_limit_is_still_split(ledger, dest, origin,
                                                             settings) -> None:
    data = blob(6 * MiB, seed=62)
    url = origin.add("/slow-server.bin", Resource(data=data, rate=MiB))
    limited = settings.replace(connections_per_file=4, min_segment_size=MiB,
                               max_bandwidth=8 * MiB)
    job = fetch_one(ledger, dest, limited, url)
    assert_done(ledger, job, data)
    assert len({r[0] for r in ranged(origin, "/slow-server.bin")}) >= 2
