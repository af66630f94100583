"""End-to-end downloads through the worker pool against the loopback origin."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from dltui import paths
from dltui.engine.resume import OVERLAP_BYTES
from dltui.ledger import events, flags, ops
from dltui.model import JobState
from dltui.origin import Resource
from tests.engine.helpers import blob, decisions, fetch_all, fetch_one, sha

MiB = 1 << 20


def assert_done(job, data: bytes, dest: Path) -> Path:
    assert job.state is JobState.FINALIZED, job.error
    final = Path(job.final_path)
    assert final.parent == dest
    assert final.read_bytes() == data
    assert job.sha256 == sha(data)
    return final


def no_parts(home: Path) -> bool:
    parts = paths.parts_dir(home)
    return not parts.exists() or not any(parts.iterdir())


@pytest.mark.parametrize("size", [0, 1, MiB], ids=["0B", "1B", "1MiB"])
def test_happy_sizes(ledger, home, dest, origin, settings, size) -> None:
    data = blob(size)
    job = fetch_one(ledger, dest, settings, origin.add("/f.bin", data))
    assert_done(job, data, dest)
    assert job.decision == "fresh" and job.decision_reason == "no_part"
    assert no_parts(home)


def test_happy_200_mib(ledger, home, dest, origin, settings) -> None:
    data = blob(200 * MiB, seed=7)
    job = fetch_one(ledger, dest, settings, origin.add("/big.bin", data))
    assert_done(job, data, dest)
    assert job.bytes_total == job.bytes_committed == 200 * MiB


def test_chunked_without_length(ledger, dest, origin, settings) -> None:
    data = blob(3 * MiB + 17)
    url = origin.add("/c.bin", Resource(data=data, chunked=True))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)


def test_redirects_are_followed(ledger, dest, origin, settings) -> None:
    data = blob(50_000)
    origin.add("/final.bin", data)
    origin.add("/hop2", Resource(redirect="/final.bin"))
    url = origin.add("/hop1", Resource(redirect="/hop2"))
    job = fetch_one(ledger, dest, settings, url)
    final = assert_done(job, data, dest)
    assert final.name == "final.bin"  # named after where the redirects led


def test_connection_reset_resumes_with_if_range(ledger, dest, origin, settings) -> None:
    data = blob(4 * MiB)
    url = origin.add("/r.bin", Resource(data=data, drop_after=MiB + 123))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    gets = origin.requests("/r.bin", "GET")
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    assert gets[1].headers["range"] == f"bytes={MiB + 123 - OVERLAP_BYTES}-"
    assert gets[1].headers["if-range"].startswith('"')
    assert gets[1].status == 206
    assert ("resume", "validators_match") in decisions(ledger, job.id)


def test_stall_is_detected_and_resumed(ledger, dest, origin, settings) -> None:
    data = blob(2 * MiB)
    url = origin.add("/s.bin", Resource(data=data, stall_after=700_000, stall_seconds=4))
    job = fetch_one(ledger, dest, settings.replace(read_timeout=0.5), url)
    assert_done(job, data, dest)
    gets = origin.requests("/s.bin", "GET")
    assert gets[-1].headers.get("range", "").startswith("bytes=")


def test_server_ignores_range(ledger, dest, origin, settings) -> None:
    data = blob(2 * MiB)
    url = origin.add("/i.bin", Resource(data=data, ranges=False, advertise_ranges=False,
                                        drop_after=MiB))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    gets = origin.requests("/i.bin", "GET")
    assert "range" in gets[1].headers and gets[1].status == 200
    assert ("fresh", "range_ignored") in decisions(ledger, job.id)


def test_accept_ranges_none_starts_over(ledger, dest, origin, settings) -> None:
    data = blob(2 * MiB)
    url = origin.add("/n.bin", Resource(data=data, ranges=False, drop_after=MiB))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    assert all("range" not in r.headers for r in origin.requests("/n.bin", "GET"))
    assert ("fresh", "no_ranges") in decisions(ledger, job.id)


def test_206_with_a_different_range_is_discarded(ledger, dest, origin, settings) -> None:
    data = blob(2 * MiB)
    url = origin.add("/w.bin", Resource(data=data, drop_after=MiB, wrong_range_start=0))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    events_ = [e for e in events.for_job(ledger, job.id, 500) if e.kind == "retry"]
    assert any(e.data["reason"] == "bad_content_range" for e in events_)


def test_etag_change_between_attempts_gives_new_content_never_a_splice(
    ledger, dest, origin, settings
) -> None:
    old, new = blob(3 * MiB, seed=1), blob(3 * MiB, seed=2)
    url = origin.add("/v.bin", Resource(versions=[old, new], change_after=1, drop_after=MiB))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, new, dest)
    assert ("discard", "validators_mismatch") in decisions(ledger, job.id)


def test_etag_change_seen_by_if_range(ledger, dest, origin, settings) -> None:
    # HEAD is refused, so only If-Range on the resumed GET can notice the new content.
    old, new = blob(3 * MiB, seed=3), blob(3 * MiB, seed=4)
    url = origin.add("/vr.bin", Resource(versions=[old, new], change_after=1, drop_after=MiB,
                                         head_status=405))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, new, dest)
    second = origin.requests("/vr.bin", "GET")[1]
    assert "if-range" in second.headers and second.status == 200
    assert ("fresh", "range_ignored") in decisions(ledger, job.id)


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        ({"weak_etag": True}, "weak_etag"),
        ({"etag": False}, "validators_missing"),
        ({"etag": False, "last_modified": False}, "validators_missing"),
    ],
    ids=["weak-etag", "last-modified-only", "no-validators"],
)
def test_resume_without_strong_validator_checks_the_prefix(
    ledger, dest, origin, settings, resource, reason
) -> None:
    data = blob(3 * MiB)
    url = origin.add("/p.bin", Resource(data=data, drop_after=MiB + 5, **resource))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    made = decisions(ledger, job.id)
    assert ("resume", "prefix_ok") in made
    gets = origin.requests("/p.bin", "GET")
    assert gets[1].headers["range"] == "bytes=0-65535"  # the prefix probe
    assert gets[2].headers["range"] == f"bytes={MiB + 5 - OVERLAP_BYTES}-"
    assert "if-range" not in gets[2].headers  # weak validators never go into If-Range
    assert all("W/" not in r.headers.get("if-range", "") for r in gets)


def test_prefix_check_off_discards(ledger, dest, origin, settings) -> None:
    flags.set_flag(ledger, "verify_prefix", False, by="test")
    data = blob(2 * MiB)
    url = origin.add("/q.bin", Resource(data=data, etag=False, drop_after=MiB))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    assert ("discard", "no_prefix") in decisions(ledger, job.id)


def test_content_length_longer_than_body(ledger, home, dest, origin, settings) -> None:
    data = blob(300_000)
    url = origin.add("/l.bin", Resource(data=data, extra_length=100))
    job = fetch_one(ledger, dest, settings, url)
    # The short body is a transport error; the resumed request's overlap, "bytes N-/300000",
    # then proves the part already holds the whole object, as curl -C - would conclude.
    assert_done(job, data, dest)
    retries = [e for e in events.for_job(ledger, job.id) if e.kind == "retry"]
    assert retries and retries[0].data["reason"] == "transport"
    gets = origin.requests("/l.bin", "GET")
    assert [g.status for g in gets] == [200, 206]
    assert ("resume", "validators_match") in decisions(ledger, job.id)


def test_416_at_the_end_finalizes(ledger, dest, origin, settings) -> None:
    data = blob(MiB)
    # HEAD refused and chunked body: the length is unknown until the resumed request's
    # Content-Range (its overlap, the last 64 KiB) confirms it.
    url = origin.add("/e.bin", Resource(data=data, chunked=True, head_status=405,
                                        drop_after=MiB))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    last = origin.requests("/e.bin", "GET")[-1]
    assert last.status == 206 and last.headers["range"] == f"bytes={MiB - OVERLAP_BYTES}-"


def test_retry_after_is_honoured(ledger, dest, origin, settings) -> None:
    data = blob(10_000)
    url = origin.add("/ra.bin", Resource(data=data, statuses=[503, 429], retry_after="1"))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    gets = origin.requests("/ra.bin", "GET")
    assert [g.status for g in gets] == [503, 429, 200]
    assert gets[1].ts - gets[0].ts >= 0.9 and gets[2].ts - gets[1].ts >= 0.9


def test_500_forever_fails_with_attempts_and_status(ledger, dest, origin, settings) -> None:
    url = origin.add("/500", Resource(status=500))
    job = fetch_one(ledger, dest, settings, url)
    assert job.state is JobState.FAILED
    assert "HTTP 500" in job.error and "after 4 tries" in job.error
    assert len(origin.requests("/500")) == 4


def test_404_fails_at_once(ledger, home, dest, origin, settings) -> None:
    job = fetch_one(ledger, dest, settings, origin.url("/nothing-here"))
    assert job.state is JobState.FAILED and "HTTP 404" in job.error
    assert len(origin.requests("/nothing-here", "GET")) == 1
    assert no_parts(home) and not any(dest.iterdir())


def test_redirect_loop_fails(ledger, dest, origin, settings) -> None:
    url = origin.add("/loop", Resource(redirect="/loop"))
    job = fetch_one(ledger, dest, settings, url)
    assert job.state is JobState.FAILED and "redirect" in job.error


def test_head_405_falls_back_to_get(ledger, dest, origin, settings) -> None:
    data = blob(2 * MiB)
    url = origin.add("/h.bin", Resource(data=data, head_status=405, drop_after=MiB))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    # The retry has a part to judge, asks HEAD, is refused, and lets If-Range decide.
    assert any(e.kind == "precheck_fallback" for e in events.for_job(ledger, job.id))
    assert job.etag is not None  # validators came from the GET
    second = origin.requests("/h.bin", "GET")[1]
    assert second.headers["if-range"] == job.etag and second.status == 206


def test_fresh_download_sends_no_head(ledger, dest, origin, settings) -> None:
    data = blob(300_000)
    url = origin.add("/fresh.bin", Resource(
        data=data, content_disposition='attachment; filename="named-by-get.bin"'))
    job = fetch_one(ledger, dest, settings, url)
    final = assert_done(job, data, dest)
    assert origin.requests("/fresh.bin", "HEAD") == []
    assert final.name == "named-by-get.bin" == job.file_name
    assert job.etag is not None and job.bytes_total == len(data)


def test_quota_is_checked_against_the_announced_length(ledger, dest, origin, settings) -> None:
    import shutil

    free = shutil.disk_usage(dest).free
    # More than the disk can hold, announced only by the GET (no HEAD for fresh jobs).
    url = origin.add("/huge.bin", Resource(data=blob(1000), head_length=None,
                                           extra_length=free * 2))
    job = fetch_one(ledger, dest, settings.replace(retries=1), url)
    assert job.state is JobState.FAILED and "not enough free space" in job.error
    assert not any(dest.iterdir())


def test_head_lying_about_length(ledger, dest, origin, settings) -> None:
    data = blob(500_000)
    url = origin.add("/lie.bin", Resource(data=data, head_length=900_000))
    job = fetch_one(ledger, dest, settings, url)
    assert_done(job, data, dest)
    assert job.bytes_total == 500_000


def test_content_encoding_gzip_is_stored_raw(ledger, dest, origin, settings) -> None:
    data = blob(200_000)
    url = origin.add("/z.tar.gz", Resource(data=data, gzip=True))
    job = fetch_one(ledger, dest, settings, url)
    wire = gzip.compress(data, mtime=0)
    assert_done(job, wire, dest)  # the bytes the server sent, as curl saves them
    assert origin.requests("/z.tar.gz", "GET")[0].headers["accept-encoding"] == "identity"


HOSTILE = [
    'attachment; filename="../../etc/passwd"',
    'attachment; filename="/etc/shadow"',
    "attachment; filename*=UTF-8''..%2F..%2Fescape.txt",
    "attachment; filename*=UTF-8''nul%00byte.txt",
    "attachment; filename*=UTF-8''line%0Abreak.txt",
    'attachment; filename=".."',
    f'attachment; filename="{"n" * 300}.bin"',
    'attachment; filename="..\\\\..\\\\win.ini"',
]


@pytest.mark.parametrize("disposition", HOSTILE)
def test_hostile_content_disposition_stays_inside(ledger, dest, origin, settings, tmp_path,
                                                  disposition) -> None:
    data = blob(1000)
    url = origin.add("/x", Resource(data=data, content_disposition=disposition))
    before = {p for p in tmp_path.rglob("*") if "home" not in p.parts}
    job = fetch_one(ledger, dest, settings, url)
    final = assert_done(job, data, dest)
    name = final.name
    assert "/" not in name and "\x00" not in name and "\n" not in name and name not in (".", "..")
    assert len(name.encode()) <= 255
    after = {p for p in tmp_path.rglob("*") if "home" not in p.parts}
    assert after - before == {final}


def test_identical_content_one_object_one_hardlink(ledger, home, dest, origin, settings) -> None:
    data = blob(MiB, seed=9)
    a = origin.add("/a.iso", data)
    b = origin.add("/mirror/b.iso", data)
    ja, jb = fetch_all(ledger, dest, settings, a, b)
    fa, fb = assert_done(ja, data, dest), assert_done(jb, data, dest)
    objects = [p for p in paths.store_dir(home).rglob("*") if p.is_file()]
    assert len(objects) == 1
    # The object shares its inode with one destination; the other is an independent copy, so
    # an edit of one file never reaches the other.
    inodes = sorted(os.stat(f).st_ino == os.stat(objects[0]).st_ino for f in (fa, fb))
    assert inodes == [False, True]
    results = [ops.for_job(ledger, j.id) for j in (ja, jb)]
    deduped = [o.result["deduped"] for r in results for o in r if o.kind == "FINALIZE"]
    assert sorted(deduped) == [False, True]


def test_same_url_again_is_cached(ledger, dest, origin, settings, tmp_path) -> None:
    data = blob(MiB, seed=11)
    url = origin.add("/c.iso", data)
    first = fetch_one(ledger, dest, settings, url)
    other = tmp_path / "elsewhere"
    second = fetch_one(ledger, other, settings, url)
    assert_done(first, data, dest)
    assert_done(second, data, other)
    assert second.decision == "cached"
    assert len(origin.requests("/c.iso", "GET")) == 1


def test_name_collision_gets_a_number(ledger, dest, origin, settings) -> None:
    (dest / "f.bin").write_bytes(b"the operator's own file")
    data = blob(5000)
    job = fetch_one(ledger, dest, settings, origin.add("/f.bin", data))
    final = assert_done(job, data, dest)
    assert final.name == "f (1).bin"
    assert (dest / "f.bin").read_bytes() == b"the operator's own file"


def test_expected_sha256_mismatch_keeps_nothing(ledger, home, dest, origin, settings) -> None:
    url = origin.add("/m.bin", blob(70_000))
    job = fetch_one(ledger, dest, settings, url, sha256="0" * 64)
    assert job.state is JobState.FAILED and "SHA-256 mismatch" in job.error
    assert not any(dest.iterdir()) and no_parts(home)
    store = paths.store_dir(home)
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]


def test_expected_sha256_match(ledger, dest, origin, settings) -> None:
    data = blob(70_000)
    job = fetch_one(ledger, dest, settings, origin.add("/ok.bin", data), sha256=sha(data))
    assert_done(job, data, dest)


def test_quota_refuses_to_start(ledger, dest, origin, settings) -> None:
    url = origin.add("/q.bin", blob(1000))
    job = fetch_one(ledger, dest, settings.replace(min_free=1 << 60), url)
    assert job.state is JobState.FAILED
    assert "not enough free space" in job.error and str(1 << 60) in job.error
    assert origin.requests("/q.bin", "GET") == []


@pytest.mark.parametrize("rebooted", [True, False])
def test_after_a_reboot_only_fsynced_bytes_are_trusted(ledger, home, dest, origin, settings,
                                                       rebooted) -> None:
    import hashlib

    import httpx

    from dltui.durability import boot_id
    from dltui.ledger import jobs

    data = blob(4 * MiB, seed=41)
    url = origin.add("/boot.bin", data)
    etag = httpx.head(url).headers["etag"]
    [added] = jobs.add(ledger, [jobs.JobSpec(url, dest)])
    job_id = added.job.id
    committed, durable = 3 * MiB, MiB
    # What a host crash leaves: bytes written after the last fsync may be zeros.
    tail = bytes(committed - durable) if rebooted else data[durable:committed]
    paths.part_path(ledger.home, job_id).parent.mkdir(parents=True, exist_ok=True)
    paths.part_path(ledger.home, job_id).write_bytes(data[:durable] + tail)
    jobs.update(ledger, job_id, owner=None, bytes_committed=committed, bytes_durable=durable,
                boot_id="an-earlier-boot" if rebooted else boot_id(), etag=etag,
                content_length=len(data), bytes_total=len(data), accept_ranges=1,
                prefix_hash=hashlib.sha256(data[:65536]).hexdigest())
    fetch_all(ledger, dest, settings)
    assert_done(jobs.get(ledger, job_id), data, dest)
    [get] = origin.requests("/boot.bin", "GET")
    assert get.headers["range"] == \
        f"bytes={(durable if rebooted else committed) - OVERLAP_BYTES}-"
    trims = [e for e in events.for_job(ledger, job_id, 100) if e.kind == "durable_trim"]
    assert len(trims) == (1 if rebooted else 0)


@pytest.mark.parametrize("on_finish", [False, True])
def test_finished_job_records_whether_it_reached_the_disk(ledger, dest, origin, settings,
                                                          on_finish) -> None:
    from dltui.durability import boot_id

    data = blob(3 * MiB, seed=42)
    url = origin.add(f"/finish-{on_finish}.bin", data)
    job = fetch_one(ledger, dest, settings.replace(fsync_on_finish=on_finish), url)
    assert_done(job, data, dest)
    assert job.boot_id == boot_id()
    assert job.bytes_durable == (len(data) if on_finish else 0)


def test_errors_name_the_url_that_answered(ledger, dest, origin, settings) -> None:
    """A redirect to another server's 404 names that server's URL, the asked one beside (it
    named only the asked one), as curl's url_effective does; likewise a failed connection."""
    from dltui.origin import Origin

    with Origin() as other:
        target = other.add("/nope.bin", Resource(status=404))
        url = origin.add("/rx404", Resource(redirect=target))
        gone = other.url("/x").rsplit("/", 1)[0]
        job = fetch_one(ledger, dest, settings, url)
        assert job.state is JobState.FAILED
        assert job.error == f"HTTP 404 Not Found from {target} (redirected from {url})"
    # The second server is gone now: the connection to the redirect's target fails.
    dead = origin.add("/rx-dead", Resource(redirect=f"{gone}/file.bin"))
    job = fetch_one(ledger, tmp_dest(dest), settings.replace(retries=1), dead)
    assert job.state is JobState.FAILED
    assert f"({gone}/file.bin (redirected from {dead}))" in job.error, job.error


def tmp_dest(dest):
    other = dest.parent / "other"
    other.mkdir(exist_ok=True)
    return other


def test_a_resume_asks_where_the_heads_redirects_led(ledger, dest, origin, settings) -> None:
    """The HEAD of a resume walks the redirect chain; the GET of the same try asks its end
    directly (it walked the chain again), still sending the job's secrets to no other host."""
    flags.set_flag(ledger, "batch", False, by="test")
    data = blob(2 * MiB, seed=77)
    origin.add("/moved/final.bin", Resource(data=data, drop_after=MiB))
    url = origin.add("/start.bin", Resource(redirect="/moved/final.bin"))
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=1), url)
    assert_done(job, data, dest)
    assert len(origin.requests("/start.bin", "GET")) == 1  # only the first, fresh GET
    assert len(origin.requests("/start.bin", "HEAD")) == 1
    [resumed] = [r for r in origin.requests("/moved/final.bin", "GET") if "range" in r.headers]
    assert resumed.status == 206
