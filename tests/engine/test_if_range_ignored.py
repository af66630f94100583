"""Servers that ignore If-Range (S3 and S3-compatible ones answer a stale one with a 206 of the
new object): a download is never a splice of two versions, on 1, 4 or 8 connections, across
a SIGKILL, and the change restarts the download without spending a failed try."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dltui import paths
from dltui.ledger import Ledger, events, flags, jobs, segments
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob, decisions, fetch_all, fetch_one, sha

MiB = 1 << 20
#: (If-Range, If-Match): S3 honours If-Match; the worst server honours neither.
SERVERS = {"s3": {"ignore_if_range": True},
           "no-preconditions": {"ignore_if_range": True, "ignore_if_match": True}}


def _content_changes(ledger, job_id: int) -> list[str]:
    return [e.data["reason"] for e in events.for_job(ledger, job_id, 500)
            if e.kind == "content_changed"]


def _done(ledger, job, data: bytes) -> None:
    assert job.state is JobState.FINALIZED, job.error
    assert job.sha256 == sha(data)
    with open(job.final_path, "rb") as fh:
        assert fh.read() == data
    assert segments.for_job(ledger, job.id) == []


@pytest.mark.parametrize("server", list(SERVERS))
@pytest.mark.parametrize("connections", [4, 8])
def test_segments_never_splice_a_changed_object(ledger, dest, origin, settings, server,
                                                connections) -> None:
    old, new = blob(8 * MiB, seed=400 + connections), blob(8 * MiB, seed=410 + connections)
    # GET 0 (segment 0) serves the old object, every later GET the new one.
    url = origin.add(f"/{server}-{connections}.bin",
                     Resource(versions=[old, new], change_after=1, **SERVERS[server]))
    tuned = settings.replace(connections_per_file=connections, min_segment_size=MiB,
                             split_below_rate=0)
    flags.set_flag(ledger, "retries", False, by="test")  # a change restarts all the same
    job = fetch_one(ledger, dest, tuned, url)
    _done(ledger, job, new)
    assert (job.decision, job.decision_reason) == ("discard", "etag_changed")
    assert _content_changes(ledger, job.id)[:1] == ["etag_changed"]
    assert job.failed_tries == 0  # a change is no failure, even with one try in all
    statuses = {r.status for r in origin.requests(f"/{server}-{connections}.bin", "GET")
                if "range" in r.headers}
    assert (412 in statuses) == (server == "s3")  # If-Match refused, or a 206 of `new`
    assert all("if-match" in r.headers for r in origin.requests(
        f"/{server}-{connections}.bin", "GET") if "range" in r.headers)


@pytest.mark.parametrize("server", list(SERVERS))
def test_one_connection_resume_never_splices_a_changed_object(ledger, dest, origin, settings,
                                                              server) -> None:
    """The new version begins with the old one's bytes, so the overlap matches: only the
    206's ETag tells. HEAD is refused (as for a presigned URL), so nothing warns before."""
    old = blob(3 * MiB, seed=420)
    new = old[:2 * MiB] + blob(MiB, seed=421)
    url = origin.add(f"/one-{server}.bin", Resource(
        versions=[old, new], change_after=1, drop_after=int(1.5 * MiB), head_status=403,
        **SERVERS[server]))
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=1), url)
    _done(ledger, job, new)
    assert "etag_changed" in _content_changes(ledger, job.id)
    assert ("discard", "etag_changed") in decisions(ledger, job.id)
    # `status --json` shows the discard until a later download decides otherwise.
    assert (job.decision, job.decision_reason) == ("discard", "etag_changed")
    # The restart asked no HEAD (one per try at most) and went straight to a fresh GET.
    gets = origin.requests(f"/one-{server}.bin", "GET")
    assert [("range" in g.headers, g.status) for g in gets] == [
        (False, 200), (True, 206), (False, 200)]


def test_an_object_that_changes_on_every_request_ends_in_bounded_time(ledger, dest, origin,
                                                                      settings) -> None:
    versions = [blob(4 * MiB, seed=430 + i) for i in range(40)]
    url = origin.add("/flux.bin", Resource(versions=versions, change_after=1,
                                           ignore_if_range=True))
    tuned = settings.replace(connections_per_file=4, min_segment_size=MiB,
                             split_below_rate=0, retries=2)
    job = fetch_one(ledger, dest, tuned, url)
    assert job.state is JobState.FAILED and "changed" in job.error
    assert 0 < len(_content_changes(ledger, job.id)) <= 2 * 3


@pytest.mark.parametrize("server", list(SERVERS))
def test_an_overwrite_after_a_sigkill_never_splices(tmp_path, origin, server) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    old, new = blob(12 * MiB, seed=440), blob(12 * MiB, seed=441)
    path = f"/kill-{server}.bin"
    # HEAD is refused, as for a presigned S3 URL: the resume cannot learn of the change first.
    url = origin.add(path, Resource(data=old, rate=MiB, head_status=403, **SERVERS[server]))
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home),
           "DLTUI_CONNECTIONS_PER_FILE": "4", "DLTUI_MIN_SEGMENT_SIZE": "1M",
           "DLTUI_SPLIT_BELOW_RATE": "0", "DLTUI_RETRIES": "1"}
    run = [sys.executable, "-m", "dltui"]
    subprocess.run([*run, "add", url, "-d", str(dest)], env=env, check=True,
                   capture_output=True)
    worker = subprocess.Popen([*run, "run", "--until-idle"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def segmented_progress() -> bool:
        with Ledger(home) as led:
            rows = segments.for_job(led, 1)
        return len(rows) == 4 and sum(s.done for s in rows) >= 2 * MiB

    try:
        wait_for(segmented_progress, "the segmented download made no progress", timeout=30)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    origin.add(path, Resource(data=new, head_status=403, **SERVERS[server]))  # overwritten
    time.sleep(0.1)
    done = subprocess.run([*run, "run", "--until-idle"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Ledger(home) as led:
        job = jobs.get(led, 1)
        _done(led, job, new)
        assert "etag_changed" in _content_changes(led, 1)
        assert job.failed_tries == 0
    assert not paths.part_path(home, 1).exists()


def test_a_presigned_url_never_costs_a_head(ledger, dest, origin, settings) -> None:
    """Its signature covers the method, so its HEAD can only fail: the resume goes straight
    to the GET (it asked a HEAD first, a 403 on every resume)."""
    data = blob(2 * MiB, seed=450)
    origin.add("/bucket/key.bin", Resource(data=data, drop_after=MiB, head_status=403,
                                           ignore_if_range=True))
    url = origin.url("/bucket/key.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=900"
                     "&X-Amz-Signature=0123abcd")
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=1), url)
    _done(ledger, job, data)
    assert origin.requests("/bucket/key.bin", "HEAD") == []
    assert ("resume", "validators_match") in decisions(ledger, job.id)


def test_a_host_that_refuses_head_is_not_asked_again(ledger, dest, origin, settings) -> None:
    flags.set_flag(ledger, "batch", False, by="test")  # each body streams and resumes
    datas = [blob(2 * MiB, seed=460 + i) for i in range(3)]
    urls = [origin.add(f"/nohead{i}.bin", Resource(data=d, drop_after=MiB, head_status=405))
            for i, d in enumerate(datas)]
    done = fetch_all(ledger, dest, settings.replace(connections_per_file=1), *urls, workers=1)
    for job, data in zip(done, datas, strict=True):
        _done(ledger, job, data)
    heads = [r for i in range(3) for r in origin.requests(f"/nohead{i}.bin", "HEAD")]
    assert len(heads) == 1  # the first resume learnt it; the others went straight to GET


def test_a_changed_object_costs_no_body_on_the_other_segments(ledger, dest, origin,
                                                              settings) -> None:
    """Each segment of a mismatch read about 2 MB of the wrong object before giving up; now
    the answer's ETag is judged before its body, which is left unread."""
    old, new = blob(8 * MiB, seed=470), blob(8 * MiB, seed=471)
    url = origin.add("/unread.bin", Resource(versions=[old, new], change_after=1, rate=MiB,
                                             **SERVERS["no-preconditions"]))
    tuned = settings.replace(connections_per_file=4, min_segment_size=MiB, split_below_rate=0)
    job = fetch_one(ledger, dest, tuned, url)
    _done(ledger, job, new)
    gets = origin.requests("/unread.bin", "GET")
    restart = next(i for i, g in enumerate(gets) if i and "range" not in g.headers)
    stale = [g for g in gets[1:restart] if "range" in g.headers]
    assert stale and all(g.status == 206 for g in stale)
    assert all(g.body_bytes < 512 * 1024 for g in stale), [g.body_bytes for g in stale]
