"""Segmented downloads: several ranged GETs write one part file, like aria2c ``-x``/``-s``.

Each segment has its own connection and thread and writes its range with ``pwrite``. A hashing
thread follows the contiguous prefix of written bytes (re-reading them from the page cache), so
the SHA-256 of the whole object is ready moments after the last byte lands. The calling thread
coordinates: progress, checkpoints of every segment, pause/cancel, and the first error.

Every ranged request carries ``If-Range`` and ``If-Match`` with the object's strong ETag, and
every answer's ETag is compared with it, so a segment can never splice bytes of a changed
object into the part:

* a 206 for the asked range under the same ETag continues the segment;
* a 206 or a 200 under another ETag, or a 412 (``If-Match``, which every segment sends too,
  for servers that ignore ``If-Range``) means the object changed: every segment starts over;
* a 200 under the same ETag means the server ignores ranges: the first segment to get one
  reads that whole object from byte 0 and every other segment is dropped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from dltui.durability import boot_id, start_writeback
from dltui.engine import _net
from dltui.engine.body import DirectBody, direct_body, take_bytes
from dltui.engine.client import job_request, mapped_errors
from dltui.engine.headers import parse_content_range, validators_from
from dltui.engine.policy import RateLimits
from dltui.engine.resume import OVERLAP_BYTES, PREFIX_BYTES, Mode, ResumeDecision
from dltui.engine.transfer import (
    Checkpoint,
    SpeedGuard,
    StreamHooks,
    StreamOptions,
    StreamResult,
    error_for,
)
from dltui.errors import Interrupted, LeaseLost, ResumeConflict, TransportError
from dltui.model import Segment, ServerValidators

_BUFFER = 1 << 20
_HASH_BUFFER = 4 << 20
_WRITEBACK_EVERY = 8 << 20
_TICK = 0.1  # seconds between the coordinator's progress reports


@dataclasses.dataclass
class _Live:
    """A segment being downloaded; ``done`` grows only after its bytes are written."""

    index: int
    start: int
    end: int
    done: int
    durable: int
    dropped: bool = False
    #: Bytes of the range whose writeback was already started.
    kicked: int = 0

    @property
    def left(self) -> int:
        """Bytes of the range still to write."""
        return self.end - self.start - self.done


def eligible(validators: ServerValidators, options: StreamOptions) -> bool:
    """True when an object of these validators is worth splitting: ranges, a strong ETag, and
    room for at least two segments."""
    return (options.connections > 1 and validators.accept_ranges is True
            and validators.strong_etag is not None and validators.length is not None
            and validators.length >= 2 * options.min_segment)


class SegmentedFetch:
    """One segmented download of ``url`` into ``part_path``; call :meth:`run` once."""

    def __init__(self, client: httpx.Client, url: str, part_path: Path,
                 segments: list[Segment], *, validators: ServerValidators,
                 decision: ResumeDecision, options: StreamOptions, hooks: StreamHooks,
                 cancel: threading.Event, control: Callable[[], str],
                 limits: RateLimits | None = None, host: str = "",
                 home: str | None = None) -> None:
        assert validators.strong_etag is not None and validators.length is not None
        self.client, self.url, self.part_path = client, url, part_path
        # The job's own URL (``url`` may be where its redirects led): its host alone gets the
        # job's secrets, wherever segments ask.
        self.job_url = home or url
        self.validators, self.decision, self.options = validators, decision, options
        self.hooks, self.cancel, self.control = hooks, cancel, control
        self.limits, self.host = limits, host
        self.etag: str = validators.strong_etag
        self.total: int = validators.length
        self.live = [_Live(s.index, s.start, s.end, min(s.done, s.length), s.durable,
                           kicked=min(s.done, s.length)) for s in segments]
        self._abort = threading.Event()  # every segment thread stops at its next read
        self._wake = threading.Event()  # a segment finished or failed
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._single = False  # one segment took over: the server ignores ranges
        self._hasher = hashlib.sha256()
        self._prefix: str | None = None
        self._hashed = 0
        self._hash_done = threading.Event()
        self.fd = -1
        self.origin_url = url  # where the bytes came from after redirects
        self.disposition_name: str | None = None
        self._carry_on: DirectBody | None = None

    # -- entry ------------------------------------------------------------------------------
    def run(self, first: httpx.Response | None = None,
            carry_on: DirectBody | None = None) -> StreamResult:
        """Download every segment; ``first`` is an open 200 response for the whole object
        (a fresh download's first GET), which becomes segment 0's connection. ``carry_on`` is
        its body's socket reader, when one connection already wrote segment 0's ``done``
        bytes and was then found held back (see ``stream.fetch``)."""
        self._carry_on = carry_on
        self.part_path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.part_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        threads: list[threading.Thread] = []
        try:
            self._size_part()
            hasher = threading.Thread(target=self._hash_loop, name="dltui-seg-hash",
                                      daemon=True)
            hasher.start()
            threads.append(hasher)
            if first is not None:
                self.url = self.origin_url = str(first.url)  # segments ask where redirects led
            for seg in self.live:
                if seg.left <= 0:
                    continue
                response = first if (first is not None and seg.index == 0) else None
                thread = threading.Thread(target=self._segment, args=(seg, response),
                                          name=f"dltui-seg-{seg.index}", daemon=True)
                thread.start()
                threads.append(thread)
            self._coordinate()
            hasher.join()
            if self._hashed != self.total:
                raise ResumeConflict("part_missing",
                                     f"part {self.part_path} ended while hashing")
            self._checkpoint(complete=True)
            st = os.fstat(self.fd)
            return StreamResult(self.total, self._hasher.hexdigest(), self._prefix,
                                self.validators, self.decision, True, self.origin_url,
                                self.disposition_name, st.st_dev, st.st_ino)
        except LeaseLost:
            raise  # another owner has the job: record nothing
        except BaseException as exc:
            self._abort.set()
            for thread in threads:
                thread.join()
            try:
                if isinstance(exc, ResumeConflict):
                    self._start_over()
                else:
                    self._checkpoint()
            except LeaseLost:
                pass
            raise
        finally:
            self._abort.set()
            for thread in threads:
                thread.join()
            os.close(self.fd)

    def _size_part(self) -> None:
        size = os.fstat(self.fd).st_size
        if size < self.total:
            if self.options.preallocate and hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(self.fd, size, self.total - size)
                except OSError:
                    os.ftruncate(self.fd, self.total)
            else:
                os.ftruncate(self.fd, self.total)
        if any(s.done for s in self.live) and self.options.fsync:
            os.fsync(self.fd)  # what an earlier run wrote counts as durable from here
            for seg in self.live:
                seg.durable = seg.done

    def _start_over(self) -> None:
        """The part cannot be trusted: drop it and every segment; the retry starts fresh."""
        os.ftruncate(self.fd, 0)
        for seg in self.live:
            seg.done = seg.durable = 0
        self.hooks.checkpoint(Checkpoint(0, None, self.validators, 0, segments=None))

    # -- the coordinator (calling thread) ---------------------------------------------------
    def _coordinate(self) -> None:
        opts = self.options
        last_cp = last_durable = time.monotonic()
        durable_every = opts.fsync_interval if boot_id() is not None else 0.0
        marked = self._done_bytes()
        guard = SpeedGuard(opts, self.url, self.limits.bandwidth_for(self.host)
                           if self.limits is not None else None)
        while True:
            self._wake.wait(_TICK)
            self._wake.clear()
            if self.cancel.is_set():
                self._abort.set()
                raise Interrupted(self.control())
            if self._error is not None:
                raise self._error
            done = self._done_bytes()
            self.hooks.progress(done, self.total)
            try:
                guard.observe(done)
            except TransportError:
                self._abort.set()
                raise
            if all(s.dropped or s.left <= 0 for s in self.live):
                break
            now = time.monotonic()
            if done - marked >= opts.checkpoint_bytes or now - last_cp >= opts.checkpoint_interval:
                durable = opts.fsync and now - last_durable >= durable_every
                self._checkpoint(durable=durable)
                last_cp = now
                marked = done
                if durable:
                    last_durable = now
        self._hash_done.wait()
        if self._error is not None:
            raise self._error

    def _done_bytes(self) -> int:
        return sum(s.done for s in self.live if not s.dropped)

    def _checkpoint(self, *, durable: bool | None = None, complete: bool = False) -> None:
        """Record every segment's written bytes (fsynced first when ``durable``)."""
        if durable is None:  # a final checkpoint: a complete part is synced only if asked
            durable = self.options.fsync and (self.options.fsync_finish or not complete)
        kept = [s for s in self.live if not s.dropped]
        snap = [s.done for s in kept]
        if durable:
            os.fsync(self.fd)
            for seg, done in zip(kept, snap, strict=True):
                seg.durable = done
        segments = tuple(Segment(seg.index, seg.start, seg.end, done, seg.durable)
                         for seg, done in zip(kept, snap, strict=True))
        self.hooks.checkpoint(Checkpoint(
            sum(snap), self._prefix, self.validators, sum(s.durable for s in segments),
            segments=segments, complete=complete))

    # -- hashing the contiguous prefix ------------------------------------------------------
    def _frontier(self) -> int:
        """Bytes from 0 that are written without a gap."""
        reach = 0
        for seg in self.live:
            if seg.dropped:
                continue
            if seg.start != reach:
                break
            reach = seg.start + seg.done
            if seg.left > 0:
                break
        return reach

    def _hash_loop(self) -> None:
        buf = bytearray(_HASH_BUFFER)
        view = memoryview(buf)
        prefix = hashlib.sha256()
        try:
            while self._hashed < self.total:
                frontier = self._frontier()
                if frontier <= self._hashed:
                    if self._abort.is_set():
                        return
                    time.sleep(0.005)
                    continue
                want = min(frontier - self._hashed, len(buf))
                got = os.preadv(self.fd, [view[:want]], self._hashed)
                if got <= 0:
                    raise ResumeConflict("part_missing", f"part {self.part_path} is short")
                chunk = view[:got]
                self._hasher.update(chunk)
                if self._hashed < PREFIX_BYTES:
                    prefix.update(chunk[: PREFIX_BYTES - self._hashed])
                    if self._hashed + got >= PREFIX_BYTES:
                        self._prefix = prefix.hexdigest()
                self._hashed += got
        except BaseException as exc:
            self._fail(exc)
        finally:
            view.release()
            self._hash_done.set()
            self._wake.set()

    # -- one segment ------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self._abort.set()
        self._wake.set()

    def _segment(self, seg: _Live, response: httpx.Response | None) -> None:
        try:
            with _net.watching(self._abort, self.control):  # the stop reaches its socket
                self._segment_body(seg, response)
        except Interrupted:
            pass  # the coordinator decides what a stop means
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._wake.set()

    def _segment_body(self, seg: _Live, response: httpx.Response | None) -> None:
        if response is not None and self._carry_on is not None:
            self._pull_direct(seg, self._carry_on)
            return
        if response is not None:
            self._pull(seg, response)
            return
        if self.limits is not None:
            self.limits.request(self.host, self._abort, self.control)
        # A resumed segment fetches its last bytes again and compares them with the part.
        overlap = min(OVERLAP_BYTES, seg.done)
        pos = seg.start + seg.done - overlap
        # If-Range alone lets a server that ignores it (S3 and its kin) answer with a 206
        # of a newer object; If-Match makes such a server answer 412 instead.
        headers = {"Range": f"bytes={pos}-{seg.end - 1}", "If-Range": self.etag,
                   "If-Match": self.etag}
        with mapped_errors(self.url, self.client), \
                self.client.stream("GET", self.url, headers=headers,
                                  **job_request(self.job_url, self.options.request)) as resp:
            if not self._check(seg, resp, pos) and not self._take_over(seg):
                return
            self._pull(seg, resp, overlap if seg.start + seg.done - overlap == pos else 0)

    def _check(self, seg: _Live, resp: httpx.Response, pos: int) -> bool:
        """True for the asked range (206); False for the whole object under the same ETag
        (the server ignores ranges); raises for anything else."""
        status = resp.status_code
        if status == 206:
            got = validators_from(resp.headers, status=206)
            if got.etag is not None and got.strong_etag != self.etag:
                # A server that ignored If-Range and If-Match sent a range of another object.
                raise ResumeConflict("etag_changed",
                                     f"{self.url} changed while segment {seg.index} was "
                                     f"downloading (ETag {self.etag} -> {got.etag})")
            parsed = parse_content_range(resp.headers.get("content-range"))
            if parsed is None or parsed[0] != pos or parsed[2] not in (None, self.total):
                raise ResumeConflict(
                    "wrong_range", f"asked for bytes {pos}-{seg.end - 1} of {self.url}, got "
                                   f"{resp.headers.get('content-range')!r}")
            return True
        if status == 200:
            got = validators_from(resp.headers, status=200)
            if got.strong_etag == self.etag and got.length == self.total:
                return False
            raise ResumeConflict("etag_changed",
                                 f"{self.url} changed while segment {seg.index} was "
                                 f"downloading (ETag {self.etag} -> {got.etag})")
        if status == 412:  # If-Match failed: the object is not the one the part holds
            raise ResumeConflict("etag_changed",
                                 f"{self.url} changed while segment {seg.index} was "
                                 f"downloading (If-Match {self.etag} failed)")
        if status == 416:
            raise ResumeConflict("range_not_satisfiable",
                                 f"{self.url} refused bytes {pos}-{seg.end - 1}")
        raise error_for(resp, self.url)

    def _take_over(self, seg: _Live) -> bool:
        """The server ignores ranges and ``seg`` holds a response for the whole object: it
        becomes the one connection, from byte 0, and every other segment is dropped. The bytes
        it rewrites are the same (same strong ETag), so hashing already done stays valid.
        False when another segment took over first."""
        with self._lock:
            if self._single:
                seg.dropped = True
                return False
            self._single = True
            for other in self.live:
                other.dropped = other is not seg
            seg.start, seg.end, seg.done, seg.kicked = 0, self.total, 0, 0
        self.hooks.wire(ResumeDecision(Mode.FRESH, 0, "range_ignored"))
        return True

    def _pull(self, seg: _Live, resp: httpx.Response, overlap: int = 0) -> None:
        """Write the response body into the segment's range until the range is complete; its
        first ``overlap`` bytes are compared with the part instead."""
        chunks = resp.iter_raw()
        taken = 0
        if overlap:
            theirs, rest = take_bytes(chunks, overlap)
            mine = os.pread(self.fd, overlap, seg.start + seg.done - overlap)
            if theirs != mine:
                self.hooks.wire(ResumeDecision(Mode.DISCARD, 0, "overlap_mismatch"))
                raise ResumeConflict(
                    "overlap_mismatch",
                    f"the {overlap} bytes before byte {seg.start + seg.done} of {self.url} "
                    "differ from the part: the object changed; downloading it again")
            taken = overlap
            chunks = itertools.chain([rest], chunks) if rest else chunks
        first = next(chunks, b"")
        self._write(seg, memoryview(first))
        reader = direct_body(resp, taken + len(first))
        if reader is None:
            for chunk in chunks:
                if self._abort.is_set() or seg.dropped:
                    raise Interrupted("stop")
                if not self._write(seg, memoryview(chunk)):
                    return
            return
        self._pull_direct(seg, reader)

    def _pull_direct(self, seg: _Live, reader: DirectBody) -> None:
        """Receive the segment's range straight from the socket."""
        buf = bytearray(_BUFFER)
        view = memoryview(buf)
        try:
            while seg.left > 0:
                if self._abort.is_set() or seg.dropped:
                    raise Interrupted("stop")
                metered = self.limits.read_size(self.host) if self.limits is not None else None
                cap = len(buf) if metered is None else metered
                self._write(seg, view[:reader.readinto(view[:min(cap, seg.left)])])
        finally:
            view.release()

    def _writeback(self, seg: _Live) -> None:
        # The final fsync then finds most pages clean instead of flushing the whole file.
        if (self.options.fsync and self.options.fsync_finish
                and seg.done - seg.kicked >= _WRITEBACK_EVERY):
            start_writeback(self.fd, seg.start + seg.kicked, seg.done - seg.kicked)
            seg.kicked = seg.done

    def _write(self, seg: _Live, data: memoryview) -> bool:
        """pwrite what fits in the segment; False once the segment is complete."""
        take = data[:seg.left]
        metered = self.limits.read_size(self.host) if self.limits is not None else None
        step = len(take) if metered is None else metered
        for at in range(0, len(take), max(step, 1)):
            piece = take[at:at + step]
            if self.limits is not None:
                self.limits.bandwidth(self.host, len(piece), self._abort, self.control)
            _pwrite_all(self.fd, piece, seg.start + seg.done)
            seg.done += len(piece)
        if take:
            self._writeback(seg)
        return seg.left > 0


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n

