"""stream.fetch on its own: no ledger, a recording hook object, the loopback origin."""

from __future__ import annotations

import hashlib
import threading

import pytest

from dltui.config import Settings
from dltui.engine import Mode, ResumeDecision, StreamOptions, fetch, make_client
from dltui.engine.resume import PREFIX_BYTES
from dltui.errors import Interrupted, ResumeConflict
from dltui.model import ServerValidators
from dltui.origin import Resource
from tests.engine.helpers import blob, sha


class Recorder:
    def __init__(self) -> None:
        self.checkpoints = []
        self.progress_calls = 0
        self.decisions = []

    def checkpoint(self, cp) -> None:
        self.checkpoints.append(cp)

    def progress(self, done, total) -> None:
        self.progress_calls += 1

    def wire(self, decision) -> None:
        self.decisions.append(decision)

    def before_body(self, total) -> None:
        self.announced = total


@pytest.fixture
def client():
    with make_client(Settings(trust_env=False), connections=2) as c:
        yield c


NO_VALIDATORS = ServerValidators()


def _fetch(client, url, part, decision, expected=NO_VALIDATORS, cancel=None, rec=None,
           **opts):
    rec = rec or Recorder()
    options = StreamOptions(**{"checkpoint_bytes": 256 << 10, "preallocate_min": 1, **opts})
    result = fetch(client, url, part, decision, expected=expected, options=options, hooks=rec,
                   cancel=cancel or threading.Event(), control=lambda: "pause")
    return result, rec


def test_fresh_download_with_preallocation_and_checkpoints(client, origin, tmp_path) -> None:
    data = blob(2 << 20)
    url = origin.add("/a", data)
    part = tmp_path / "a.part"
    result, rec = _fetch(client, url, part, ResumeDecision(Mode.FRESH, 0, "no_part"))
    assert (result.size, result.sha256) == (len(data), sha(data))
    assert part.read_bytes() == data and part.stat().st_size == len(data)
    offsets = [cp.bytes_committed for cp in rec.checkpoints]
    # Every 256 KiB, give or take a chunk: at least one per 512 KiB whatever the chunking.
    assert offsets == sorted(offsets) and offsets[-1] == len(data)
    assert len(offsets) >= len(data) // (512 << 10)
    assert rec.checkpoints[-1].prefix_hash == hashlib.sha256(data[:PREFIX_BYTES]).hexdigest()
    assert rec.checkpoints[-1].validators.etag is not None
    assert rec.progress_calls > 0


def test_resume_seeds_the_hash_from_the_part(client, origin, tmp_path) -> None:
    data = blob(1 << 20, seed=3)
    url = origin.add("/b", data)
    part = tmp_path / "b.part"
    half = len(data) // 2
    part.write_bytes(data[:half] + b"garbage beyond the committed offset")
    head = client.head(url)
    etag = head.headers["etag"]
    decision = ResumeDecision(Mode.RESUME, half, "validators_match", if_range=etag)
    result, _ = _fetch(client, url, part, decision,
                       expected=ServerValidators(etag=etag, length=len(data)))
    assert result.sha256 == sha(data) and part.read_bytes() == data
    req = origin.requests("/b", "GET")[0]
    assert req.headers["range"] == f"bytes={half}-" and req.headers["if-range"] == etag


def test_cancel_stops_at_the_next_chunk_and_checkpoints(client, origin, tmp_path) -> None:
    url = origin.add("/c", Resource(data=blob(4 << 20), rate=1 << 20))
    part = tmp_path / "c.part"
    cancel = threading.Event()
    rec = Recorder()
    threading.Timer(0.5, cancel.set).start()
    with pytest.raises(Interrupted):
        _fetch(client, url, part, ResumeDecision(Mode.FRESH, 0, "no_part"), cancel=cancel,
               rec=rec, checkpoint_bytes=64 << 20, checkpoint_interval=60.0)
    size = part.stat().st_size
    assert 0 < size < 4 << 20
    # No checkpoint was due; stopping wrote one for exactly the bytes in the part.
    assert [cp.bytes_committed for cp in rec.checkpoints] == [size]


def test_part_shorter_than_committed_is_a_conflict(client, origin, tmp_path) -> None:
    url = origin.add("/d", blob(1000))
    part = tmp_path / "d.part"
    part.write_bytes(b"12345")
    with pytest.raises(ResumeConflict) as info:
        _fetch(client, url, part, ResumeDecision(Mode.RESUME, 500, "validators_match"))
    assert info.value.reason == "part_missing"


@pytest.mark.parametrize("background", [False, True])
def test_part_file_hashes_and_writes_in_order(tmp_path, background) -> None:
    from dltui.engine.stream import PartFile

    data = blob(3 << 20, seed=21)
    part = PartFile(tmp_path / "p.part", 0, background=background)
    try:
        for i in range(0, len(data), 10_000):  # many small chunks: the window must hold order
            part.write(data[i:i + 10_000])
        assert part.size == len(data)
        assert part.sha256 == sha(data)
        assert part.prefix_hash == hashlib.sha256(data[:PREFIX_BYTES]).hexdigest()
        part.reset()
        part.write(b"again")
        part.trim()
    finally:
        part.close()
    assert (tmp_path / "p.part").read_bytes() == b"again"


def test_part_file_resume_seeds_in_background_mode(tmp_path) -> None:
    from dltui.engine.stream import PartFile

    data = blob(2 << 20, seed=22)
    (tmp_path / "r.part").write_bytes(data[:700_000])
    part = PartFile(tmp_path / "r.part", 700_000, background=True)
    try:
        assert part.size == 700_000
        part.write(data[700_000:])
        assert part.sha256 == sha(data)
    finally:
        part.close()
