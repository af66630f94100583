"""Resume that cannot splice: an object replaced by another of the same size and mtime keeps an
nginx-style ETag ("mtime-size"), so validators say "same"; the overlap proves otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltui.model import JobState
from dltui.origin import Resource
from tests.engine.helpers import blob, decisions, fetch_one, sha

MiB = 1 << 20


@pytest.mark.parametrize("connections", [1, 4])
def test_same_size_same_mtime_replacement_is_not_spliced(ledger, dest, origin, settings,
                                                         connections) -> None:
    old, new = blob(8 * MiB, seed=90), blob(8 * MiB, seed=91)
    # The first GET(s) serve the old bytes and one drops mid-way; every later GET serves the
    # new ones under the very same ETag and Last-Modified.
    first_gets = 1 if connections == 1 else connections
    # Segments are 2 MiB: the first (on the first GET) drops inside its own range. At 16 MiB/s
    # a connection, the other segments' GETs are all made before that drop: a fresh segment
    # asked after the change would get the new bytes under the same validators, which
    # nothing can tell (the overlap guards resumes), and that is not what is tested here.
    res = Resource(versions=[old, new], change_after=first_gets, mtime=1_700_000_000,
                   drop_after=3 * MiB if connections == 1 else MiB, rate=16 * MiB)
    url = origin.add("/same.bin", res)
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=connections,
                                                   min_segment_size=MiB, split_below_rate=0),
                    url)
    assert job.state is JobState.FINALIZED, job.error
    assert sha(Path(job.final_path).read_bytes()) == sha(new)
    assert ("discard", "overlap_mismatch") in decisions(ledger, job.id)
    resumed = [g for g in origin.requests("/same.bin", "GET")
               if g.headers.get("range", "bytes=0-").split("=")[1].split("-")[0] != "0"
               and "if-range" in g.headers]
    assert resumed, "no resuming request was made"


def test_resume_of_unchanged_object_fetches_the_overlap(ledger, dest, origin, settings) -> None:
    data = blob(6 * MiB, seed=92)
    url = origin.add("/ok.bin", Resource(data=data, drop_after=2 * MiB, mtime=1_700_000_000))
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=1), url)
    assert job.state is JobState.FINALIZED and Path(job.final_path).read_bytes() == data
    second = origin.requests("/ok.bin", "GET")[1]
    start = int(second.headers["range"].removeprefix("bytes=").split("-")[0])
    assert start > 0
    assert ("resume", "validators_match") in decisions(ledger, job.id)
    assert ("discard", "overlap_mismatch") not in decisions(ledger, job.id)


def test_no_probe_when_ranges_are_unknown(ledger, dest, origin, settings) -> None:
    """Without Accept-Ranges and a strong ETag, a resume sends its Range GET straight away: a
    server that ignores it answers 200 and that body is used, with no second request."""
    data = blob(3 * MiB, seed=93)
    url = origin.add("/plain.bin", Resource(data=data, etag=False, advertise_ranges=False,
                                            ranges=False, drop_after=MiB))
    job = fetch_one(ledger, dest, settings.replace(connections_per_file=1), url)
    assert job.state is JobState.FINALIZED and Path(job.final_path).read_bytes() == data
    gets = origin.requests("/plain.bin", "GET")
    assert len(gets) == 2, [g.headers.get("range") for g in gets]  # the drop, then one GET
