"""stream.fetch on its own: no ledger, a recording hook object, the loopback origin."""

from __future__ import annotations

import hashlib
import threading

import pytest

from dltui.config import Settings
from dltui.engine import Mode, ResumeDecision, StreamOptions, fetch, make_client, stream
from dltui.engine.partfile import PartFile
from dltui.engine.resume import OVERLAP_BYTES, PREFIX_BYTES
from dltui.errors import Interrupted, ResumeConflict, TransportError
from dltui.model import JobState, ServerValidators
from dltui.origin import Resource
from tests.engine.helpers import blob, fetch_one, sha


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
    assert req.headers["range"] == f"bytes={half - OVERLAP_BYTES}-"
    assert req.headers["if-range"] == etag


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
    # No checkpoint was due: the headers recorded the length, and stopping wrote one for
    # exactly the bytes in the part.
    assert [cp.bytes_committed for cp in rec.checkpoints] == [0, size]
    assert rec.checkpoints[0].validators.length == 4 << 20


def test_part_shorter_than_committed_is_a_conflict(client, origin, tmp_path) -> None:
    url = origin.add("/d", blob(1000))
    part = tmp_path / "d.part"
    part.write_bytes(b"12345")
    with pytest.raises(ResumeConflict) as info:
        _fetch(client, url, part, ResumeDecision(Mode.RESUME, 500, "validators_match"))
    assert info.value.reason == "part_missing"


@pytest.mark.parametrize("background", [False, True])
def test_part_file_hashes_and_writes_in_order(tmp_path, background) -> None:
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
    data = blob(2 << 20, seed=22)
    (tmp_path / "r.part").write_bytes(data[:700_000])
    part = PartFile(tmp_path / "r.part", 700_000, background=True)
    try:
        assert part.size == 700_000
        part.write(data[700_000:])
        assert part.sha256 == sha(data)
    finally:
        part.close()


def test_part_file_pooled_buffers_interleave_with_plain_writes(tmp_path) -> None:
    data = blob(5 << 20, seed=23)
    part = PartFile(tmp_path / "q.part", 0, background=True, buffer_size=300_000)
    try:
        pos = 0
        while pos < len(data):
            if (pos // 300_000) % 3 == 2:
                chunk = data[pos:pos + 7_000]
                part.write(chunk)
            else:  # a pooled buffer, partly filled: only its first n bytes count
                buf = part.buffer()
                chunk = data[pos:pos + 250_000]
                buf[:len(chunk)] = chunk
                part.commit(buf, len(chunk))
            pos += len(chunk)
        assert part.sha256 == sha(data) and part.size == len(data)
    finally:
        part.close()
    assert (tmp_path / "q.part").read_bytes() == data


def test_part_file_write_error_reaches_the_receiver(tmp_path) -> None:
    part = PartFile(tmp_path / "e.part", 0, background=True)
    os_fd = part.fd
    try:
        import os

        os.close(os_fd)  # every write now fails with EBADF on the writer thread
        part.fd = os.open(tmp_path / "other", os.O_RDONLY | os.O_CREAT)
        part.commit(part.buffer(), 10)
        with pytest.raises(OSError):
            part.flush()
        with pytest.raises(OSError):
            part.buffer()
    finally:
        part.close()


@pytest.fixture
def direct_spy(monkeypatch):
    """Record what stream.direct_body decided, calling the real function."""
    seen = []
    real = stream.direct_body

    def spy(resp, first):
        reader = real(resp, first)
        seen.append(reader)
        return reader

    monkeypatch.setattr(stream, "direct_body", spy)
    return seen


def test_large_body_is_read_straight_from_the_socket(client, origin, tmp_path,
                                                     direct_spy) -> None:
    data = blob(6 << 20, seed=31)
    url = origin.add("/big", data)
    part = tmp_path / "big.part"
    result, rec = _fetch(client, url, part, ResumeDecision(Mode.FRESH, 0, "no_part"),
                         checkpoint_bytes=1 << 20, direct_min=1)
    assert len(direct_spy) == 1 and direct_spy[0] is not None
    assert direct_spy[0].remaining == 0
    assert (result.size, result.sha256) == (len(data), sha(data))
    assert part.read_bytes() == data
    offsets = [cp.bytes_committed for cp in rec.checkpoints]
    assert offsets == sorted(offsets) and offsets[-1] == len(data) and len(offsets) >= 3
    # The connection h11 never saw finish is closed, not reused: the next request works.
    assert client.get(url, headers={"Range": "bytes=0-9"}).content == data[:10]


def test_chunked_body_stays_with_httpx(client, origin, tmp_path, direct_spy) -> None:
    data = blob(3 << 20, seed=32)
    url = origin.add("/chunked", Resource(data=data, chunked=True))
    result, _ = _fetch(client, url, tmp_path / "ch.part",
                       ResumeDecision(Mode.FRESH, 0, "no_part"), direct_min=1)
    assert direct_spy == []  # no length: the direct path is never tried
    assert result.sha256 == sha(data)


def test_direct_body_dropped_midway_checkpoints_what_arrived(client, origin, tmp_path,
                                                              direct_spy) -> None:
    data = blob(6 << 20, seed=33)
    url = origin.add("/drop", Resource(data=data, drop_after=5 << 20))
    part = tmp_path / "drop.part"
    rec = Recorder()
    with pytest.raises(TransportError):
        _fetch(client, url, part, ResumeDecision(Mode.FRESH, 0, "no_part"), rec=rec,
               direct_min=1)
    assert direct_spy[0] is not None
    last = rec.checkpoints[-1]
    assert last.bytes_committed == part.stat().st_size > 0
    assert part.read_bytes() == data[:last.bytes_committed]
    etag = client.head(url).headers["etag"]
    decision = ResumeDecision(Mode.RESUME, last.bytes_committed, "validators_match",
                              if_range=etag)
    result, _ = _fetch(client, url, part, decision,
                       expected=ServerValidators(etag=etag, length=len(data)), direct_min=1)
    assert result.sha256 == sha(data)


def test_direct_body_stall_is_a_read_timeout(origin, tmp_path, direct_spy) -> None:
    data = blob(6 << 20, seed=34)
    url = origin.add("/stall", Resource(data=data, stall_after=2 << 20, stall_seconds=3.0))
    with make_client(Settings(trust_env=False, read_timeout=0.5), connections=2) as c, \
            pytest.raises(TransportError, match=r"timeout|timed out"):
        _fetch(c, url, tmp_path / "stall.part", ResumeDecision(Mode.FRESH, 0, "no_part"),
               direct_min=1)
    assert direct_spy[0] is not None


@pytest.mark.parametrize("finish", [True, False])
@pytest.mark.parametrize("interval", [0.0, 600.0])
def test_checkpoints_record_how_much_is_fsynced(client, origin, tmp_path, interval,
                                                finish) -> None:
    data = blob(6 << 20, seed=35)
    url = origin.add("/cp", data)
    _, rec = _fetch(client, url, tmp_path / "cp.part", ResumeDecision(Mode.FRESH, 0, "no_part"),
                    checkpoint_bytes=512 << 10, fsync_interval=interval, fsync_finish=finish)
    *middle, final = rec.checkpoints
    assert middle and final.complete and final.bytes_committed == len(data)
    if interval == 0.0:  # every checkpoint is durable
        assert all(cp.bytes_durable == cp.bytes_committed for cp in middle)
    else:  # written, not fsynced: a reboot would trust none of it
        assert all(cp.bytes_durable == 0 for cp in middle)
    # The complete part is fsynced only when asked; else it keeps what was durable before.
    assert final.bytes_durable == (len(data) if finish else middle[-1].bytes_durable)


def test_a_connection_past_descriptor_1024_works(ledger, dest, origin, settings) -> None:
    """A long-running process (the TUI, a big `run`) may hold more than 1024 descriptors:
    connecting must not use select(), which cannot watch one past FD_SETSIZE."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip("the descriptor limit is below 1300")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1300), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        url = origin.add("/fd.bin", blob(50_000, seed=95))
        job = fetch_one(ledger, dest, settings, url)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert job.state is JobState.FINALIZED, job.error
