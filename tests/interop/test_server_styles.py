"""The ETag formats and precondition behaviours of the servers operators download from, as the
project's origin mimics them: nginx (``"mtime-size"``, honours If-Range and If-Match), Apache
(``"size-mtime µs"``, the same), S3 (the MD5, ignores If-Range, honours If-Match).

Each runs the cases that broke elsewhere: a resume after a cut, a change between two tries,
a change while segments run. Every case must end with one version of the object, whole."""

from __future__ import annotations

import pytest

from dltui.ledger import events, flags
from dltui.model import JobState
from dltui.origin import Resource
from tests.engine.helpers import blob, fetch_one, sha

MiB = 1 << 20
STYLES = {
    "nginx": {"etag_style": "nginx"},
    "apache": {"etag_style": "apache"},
    "s3": {"etag_style": "s3", "ignore_if_range": True},
}


def _one_version(job, data: bytes) -> None:
    assert job.state is JobState.FINALIZED, job.error
    assert job.sha256 == sha(data)
    with open(job.final_path, "rb") as fh:
        assert sha(fh.read()) == sha(data)


@pytest.mark.parametrize("style", list(STYLES))
def test_a_cut_download_resumes(ledger, dest, origin, settings, style) -> None:
    flags.set_flag(ledger, "batch", False, by="test")
    data = blob(3 * MiB, seed=700)
    url = origin.add(f"/cut-{style}.bin", Resource(data=data, drop_after=MiB, **STYLES[style]))
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=1), url)
    _one_version(job, data)
    resumed = [r for r in origin.requests(f"/cut-{style}.bin", "GET") if "range" in r.headers]
    assert resumed and resumed[0].status == 206


@pytest.mark.parametrize("style", list(STYLES))
def test_a_change_between_tries_is_never_spliced(ledger, dest, origin, settings,
                                                 style) -> None:
    """The new version keeps the old one's size and first bytes; with nginx and Apache it
    also keeps the mtime, so their ETag and Last-Modified say nothing: the overlap tells."""
    flags.set_flag(ledger, "batch", False, by="test")
    old = blob(3 * MiB, seed=701)
    new = old[:MiB + 512 * 1024] + blob(3 * MiB - MiB - 512 * 1024, seed=702)
    url = origin.add(f"/between-{style}.bin", Resource(
        versions=[old, new], change_after=1, drop_after=2 * MiB, mtime=1_700_000_000,
        **STYLES[style]))
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=1), url)
    _one_version(job, new)


@pytest.mark.parametrize("style", list(STYLES))
def test_a_change_while_segments_run_is_never_spliced(ledger, dest, origin, settings,
                                                      style) -> None:
    old, new = blob(6 * MiB, seed=703), blob(6 * MiB, seed=704)
    url = origin.add(f"/segs-{style}.bin", Resource(versions=[old, new], change_after=1,
                                                   **STYLES[style]))
    tuned = settings.replace(connections_per_file=4, min_segment_size=MiB,
                             split_below_rate=0, retries=1)
    job = fetch_one(ledger, dest, tuned, url)
    _one_version(job, new)
    assert job.failed_tries == 0
    assert any(e.kind == "content_changed" for e in events.for_job(ledger, job.id, 500))
