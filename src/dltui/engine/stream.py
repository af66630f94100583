"""Streaming a GET into the part file: rolling SHA-256, checkpoints, cancellation, limits."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from dltui.engine.client import mapped_errors
from dltui.engine.headers import (
    filename_from_disposition,
    parse_retry_after,
    validators_from,
)
from dltui.engine.policy import RateLimits
from dltui.engine.resume import (
    PREFIX_BYTES,
    Mode,
    ResumeDecision,
    Wire,
    check_response,
    same_object,
)
from dltui.errors import HTTPStatusError, Interrupted, LeaseLost, ResumeConflict, TransportError
from dltui.model import ServerValidators

_READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint records: bytes safely in the part and what they came from."""

    bytes_committed: int
    prefix_hash: str | None
    validators: ServerValidators


class StreamHooks(Protocol):
    """How the stream reports to its caller (the worker writes these to the ledger)."""

    def checkpoint(self, cp: Checkpoint) -> None:
        """Persist a checkpoint; may raise LeaseLost."""

    def progress(self, done: int, total: int | None) -> None:
        """Bytes in the part so far (called per chunk; keep it cheap)."""

    def wire(self, decision: ResumeDecision) -> None:
        """The origin's answer changed the resume decision (e.g. ``range_ignored``)."""

    def before_body(self, total: int | None) -> None:
        """The response is accepted and ``total`` bytes will follow; raise to refuse it."""


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Knobs for one stream, from settings and live flags."""

    fsync: bool = True
    preallocate: bool = True
    preallocate_min: int = 16 << 20
    checkpoint_bytes: int = 8 << 20
    checkpoint_interval: float = 1.0
    #: Objects larger than this are written and hashed on a sink thread.
    background_min: int = 1 << 20


@dataclass(frozen=True, slots=True)
class StreamResult:
    """A complete part: its size, SHA-256 and the validators of the bytes in it."""

    size: int
    sha256: str
    prefix_hash: str | None
    validators: ServerValidators
    decision: ResumeDecision
    requested: bool
    #: Where the bytes came from after redirects, and the name the server suggested.
    url: str = ""
    disposition_name: str | None = None


class PartFile:
    """A part file opened for appending, with the SHA-256 of everything in it.

    With ``background`` the writes and hashing run on a sink thread, in order, while the caller
    keeps receiving: ``os.write`` and ``hashlib`` release the GIL, so the two overlap. ``size``
    counts accepted bytes; :meth:`flush` waits until they are all written and hashed.
    """

    _WINDOW = 64  # chunks in flight before write() waits: bounds memory

    def __init__(self, path: Path, offset: int, *, background: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._sink: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        try:
            if os.fstat(self.fd).st_size < offset:
                raise ResumeConflict("part_missing",
                                     f"part {path} is shorter than the {offset} committed bytes")
            # A preallocated or half-written tail means nothing: only committed bytes count.
            os.ftruncate(self.fd, offset)
            self.hasher = hashlib.sha256()
            self.prefix = hashlib.sha256()
            self.size = 0
            self._hashed = 0
            self._seed(offset)
        except BaseException:
            os.close(self.fd)
            raise
        if background:
            self._sink = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dltui-sink")

    def _seed(self, offset: int) -> None:
        os.lseek(self.fd, 0, os.SEEK_SET)
        while self._hashed < offset:
            data = os.read(self.fd, min(_READ_CHUNK, offset - self._hashed))
            if not data:
                raise ResumeConflict("part_missing", f"part {self.path} ended while re-reading")
            self._account(data)
        self.size = self._hashed

    def _account(self, data: bytes | memoryview) -> None:
        self.hasher.update(data)
        if self._hashed < PREFIX_BYTES:
            self.prefix.update(data[: PREFIX_BYTES - self._hashed])
        self._hashed += len(data)
        if self._sink is None:
            self.size = self._hashed

    def _store(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self._account(data)

    @property
    def prefix_hash(self) -> str | None:
        """SHA-256 of the first 64 KiB, once that many bytes are in (else None)."""
        self.flush()
        return self.prefix.hexdigest() if self._hashed >= PREFIX_BYTES else None

    @property
    def sha256(self) -> str:
        """SHA-256 of everything written."""
        self.flush()
        return self.hasher.hexdigest()

    def write(self, data: bytes) -> None:
        """Append bytes and fold them into the hashes (on the sink thread, if any)."""
        if self._sink is None:
            self._store(data)
            return
        while len(self._pending) >= self._WINDOW:
            self._pending.popleft().result()
        self._pending.append(self._sink.submit(self._store, data))
        self.size += len(data)

    def flush(self) -> None:
        """Wait until every accepted byte is written and hashed; re-raise a write error."""
        while self._pending:
            self._pending.popleft().result()

    def reset(self) -> None:
        """Drop every byte: the part starts over."""
        self.flush()
        self._hashed = 0
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.hasher = hashlib.sha256()
        self.prefix = hashlib.sha256()
        self.size = 0

    def preallocate(self, total: int) -> None:
        """Reserve disk space for the whole object (best effort)."""
        if total <= self.size or not hasattr(os, "posix_fallocate"):
            return
        try:
            os.posix_fallocate(self.fd, self.size, total - self.size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise

    def sync(self) -> None:
        """fsync the part (after every accepted byte is written)."""
        self.flush()
        os.fsync(self.fd)

    @property
    def background(self) -> bool:
        """True when writes run on a sink thread."""
        return self._sink is not None

    def sync_later(self) -> Future[None]:
        """Queue an fsync behind the writes accepted so far; it runs on the sink thread."""
        assert self._sink is not None
        future = self._sink.submit(os.fsync, self.fd)
        self._pending.append(future)
        return future

    def prefix_hash_soon(self) -> str | None:
        """Like :attr:`prefix_hash`, but waits for the sink only while the prefix is unfinished."""
        if self._hashed >= PREFIX_BYTES:  # the prefix digest never changes after this point
            return self.prefix.hexdigest()
        return self.prefix_hash if self.size >= PREFIX_BYTES else None

    def trim(self) -> None:
        """Cut preallocated space beyond the written bytes."""
        self.flush()
        if os.fstat(self.fd).st_size != self.size:
            os.ftruncate(self.fd, self.size)

    def close(self) -> None:
        """Stop the sink and close the descriptor."""
        try:
            with contextlib.suppress(Exception):  # a write error was raised to the caller already
                self.flush()
        finally:
            if self._sink is not None:
                self._sink.shutdown(wait=True)
            os.close(self.fd)


def prefix_hash_of(path: Path) -> str | None:
    """SHA-256 of the first 64 KiB of a file, or None when it is shorter."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(PREFIX_BYTES)
    except FileNotFoundError:
        return None
    return hashlib.sha256(data).hexdigest() if len(data) == PREFIX_BYTES else None


def server_prefix_hash(client: httpx.Client, url: str) -> str | None:
    """SHA-256 of the origin's first 64 KiB, asked for with a Range request."""
    with mapped_errors(url), client.stream(
        "GET", url, headers={"Range": f"bytes=0-{PREFIX_BYTES - 1}"}
    ) as resp:
        if resp.status_code not in (200, 206):
            return None
        digest = hashlib.sha256()
        got = 0
        for chunk in resp.iter_raw():
            take = chunk[: PREFIX_BYTES - got]
            digest.update(take)
            got += len(take)
            if got >= PREFIX_BYTES:
                break
    return digest.hexdigest() if got == PREFIX_BYTES else None


def _merge(response: ServerValidators, expected: ServerValidators) -> ServerValidators:
    return ServerValidators(
        etag=response.etag or expected.etag,
        last_modified=response.last_modified or expected.last_modified,
        length=response.length if response.length is not None else expected.length,
        accept_ranges=response.accept_ranges if response.accept_ranges is not None
        else expected.accept_ranges,
    )


def _error_for(resp: httpx.Response, url: str) -> HTTPStatusError:
    return HTTPStatusError(
        resp.status_code, resp.reason_phrase, url,
        retry_after=parse_retry_after(resp.headers.get("retry-after"), time.time()),
    )


def fetch(
    client: httpx.Client,
    url: str,
    part_path: Path,
    decision: ResumeDecision,
    *,
    expected: ServerValidators,
    options: StreamOptions,
    hooks: StreamHooks,
    cancel: threading.Event,
    control: Callable[[], str],
    limits: RateLimits | None = None,
    host: str = "",
) -> StreamResult:
    """Download ``url`` into ``part_path`` as ``decision`` says and return the complete part.

    Checkpoints every ``checkpoint_bytes`` or ``checkpoint_interval`` (fsync first when asked),
    and once more when it stops for any reason but a lost lease, so a retry or a restart
    resumes from the last byte written. ``cancel`` is checked on every chunk.
    """
    offset = decision.offset if decision.mode is Mode.RESUME else 0
    # Small objects finish in one or two chunks: a sink thread would only add latency.
    big = expected.length is None or expected.length - offset > options.background_min
    part = PartFile(part_path, offset, background=big)
    # committed: recorded in the ledger; marked: where the latest checkpoint began.
    state = {"validators": expected, "committed": offset, "marked": offset}
    last_cp = time.monotonic()
    # A checkpoint whose fsync runs on the sink thread: (its fsync, what to record once done).
    pending: tuple[Future[None], Checkpoint] | None = None

    def record(cp: Checkpoint) -> None:
        hooks.checkpoint(cp)
        state["committed"] = cp.bytes_committed

    def settle(wait: bool) -> None:
        nonlocal pending
        if pending is not None and (wait or pending[0].done()):
            future, cp = pending
            pending = None
            future.result()
            record(cp)

    def checkpoint(final: bool = True) -> None:
        """Record the bytes in the part as committed, after they are durable.

        Mid-stream with a sink thread the fsync is queued behind the writes and the offset is
        recorded when it completes, so receiving never waits for the disk; the committed offset
        then lags one checkpoint, never the other way round.
        """
        nonlocal last_cp, pending
        last_cp = time.monotonic()
        state["marked"] = part.size
        settle(wait=True)
        if not final and options.fsync and part.background:
            cp = Checkpoint(part.size, part.prefix_hash_soon(), state["validators"])
            pending = (part.sync_later(), cp)
            return
        part.flush()  # only bytes on disk may be committed
        if options.fsync:
            part.sync()
        record(Checkpoint(part.size, part.prefix_hash, state["validators"]))

    origin = {"url": url, "name": None}

    def done(requested: bool) -> StreamResult:
        part.trim()
        checkpoint()
        return StreamResult(part.size, part.sha256, part.prefix_hash,
                            state["validators"], decision, requested,
                            origin["url"] or url, origin["name"])

    try:
        if offset and expected.length is not None and offset == expected.length:
            return done(requested=False)
        headers: dict[str, str] = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if decision.if_range:
                headers["If-Range"] = decision.if_range
        if limits is not None:
            limits.request(host, cancel, control)
        with mapped_errors(url), client.stream("GET", url, headers=headers) as resp:
            status = resp.status_code
            if status not in (200, 206, 416):
                raise _error_for(resp, url)
            verdict = check_response(offset, status, resp.headers.get("content-range"),
                                     expected.length if offset else None)
            if verdict.action is Wire.COMPLETE:
                # The 416's "bytes */N" is the object's real length, whatever was declared.
                state["validators"] = dataclasses.replace(expected, length=part.size)
                return done(requested=True)
            if verdict.action is Wire.DISCARD:
                part.reset()
                checkpoint()
                raise ResumeConflict(verdict.reason or "discard", verdict.detail)
            got = validators_from(resp.headers, status=status)
            if offset and verdict.action is Wire.CONTINUE and same_object(expected, got) is False:
                part.reset()
                checkpoint()
                raise ResumeConflict("validators_mismatch",
                                     "the object changed between the precheck and the download")
            if verdict.action is Wire.RESTART:
                part.reset()
                decision = ResumeDecision(Mode.FRESH, 0, verdict.reason or "range_ignored")
                hooks.wire(decision)
            state["validators"] = got if verdict.action is Wire.RESTART else _merge(got, expected)
            total = state["validators"].length
            origin["url"] = str(resp.url)
            origin["name"] = filename_from_disposition(resp.headers.get("content-disposition"))
            hooks.before_body(None if total is None else total - part.size)
            if options.preallocate and total is not None and total >= options.preallocate_min:
                part.preallocate(total)
            for chunk in resp.iter_raw():
                if cancel.is_set():
                    raise Interrupted(control())
                if limits is not None:
                    limits.bandwidth(host, len(chunk), cancel, control)
                part.write(chunk)
                hooks.progress(part.size, total)
                if pending is not None and pending[0].done():
                    settle(wait=False)
                if (part.size - state["marked"] >= options.checkpoint_bytes
                        or time.monotonic() - last_cp >= options.checkpoint_interval):
                    checkpoint(final=False)
            if total is not None and part.size != total:
                raise TransportError(
                    f"body ended at byte {part.size} of {total} declared ({url})")
            return done(requested=True)
    except LeaseLost:
        raise
    except BaseException:
        if part.size != state["committed"]:
            try:
                part.trim()
                checkpoint()
            except LeaseLost:
                pass
        raise
    finally:
        part.close()
