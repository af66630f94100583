"""Streaming a GET into the part file: rolling SHA-256, checkpoints, cancellation, limits."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import httpx

from dltui.durability import boot_id
from dltui.engine.body import DirectBody, direct_body, take_bytes
from dltui.engine.client import job_request, mapped_errors
from dltui.engine.headers import filename_from_disposition, validators_from
from dltui.engine.partfile import PartFile
from dltui.engine.policy import RateLimits
from dltui.engine.resume import (
    OVERLAP_BYTES,
    PREFIX_BYTES,
    Mode,
    ResumeDecision,
    Wire,
    check_response,
    same_object,
)
from dltui.engine.segments import SegmentedFetch, eligible
from dltui.engine.transfer import (
    Checkpoint,
    SpeedGuard,
    StreamHooks,
    StreamOptions,
    StreamResult,
    error_for,
)
from dltui.errors import Interrupted, LeaseLost, ResumeConflict, TransportError
from dltui.model import RequestOptions, Segment, ServerValidators, plan_segments


def prefix_hash_of(path: Path) -> str | None:
    """SHA-256 of the first 64 KiB of a file, or None when it is shorter."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(PREFIX_BYTES)
    except FileNotFoundError:
        return None
    return hashlib.sha256(data).hexdigest() if len(data) == PREFIX_BYTES else None


#: :func:`server_prefix_hash`'s answer when the origin ignored the Range request.
RANGES_IGNORED = "ranges-ignored"


def server_prefix_hash(client: httpx.Client, url: str,
                       request: RequestOptions | None = None) -> str | None:
    """SHA-256 of the origin's first 64 KiB, asked for with a Range request; RANGES_IGNORED
    when the origin answered with the whole object (resuming would cost a second full GET)."""
    with mapped_errors(url, client), client.stream(
        "GET", url, headers={"Range": f"bytes=0-{PREFIX_BYTES - 1}"},
        **job_request(url, request)) as resp:
        if resp.status_code == 200:
            return RANGES_IGNORED
        if resp.status_code != 206:
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


@dataclasses.dataclass(slots=True)
class _Progress:
    """What one fetch has learnt and recorded so far."""

    validators: ServerValidators
    committed: int  # bytes the last checkpoint recorded
    marked: int  # part size at the last checkpoint taken
    durable: int  # bytes known fsynced


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
    segments: list[Segment] | None = None,
    home: str | None = None,
) -> StreamResult:
    """Download ``url`` into ``part_path`` as ``decision`` says and return the complete part.

    Checkpoints every ``checkpoint_bytes`` or ``checkpoint_interval`` (fsync first when asked),
    and once more when it stops for any reason but a lost lease, so a retry or a restart
    resumes from the last byte written. ``cancel`` is checked on every chunk.

    A fresh download of a large object from a server that takes ranges becomes a segmented
    one (``options.connections``); ``segments`` from its last checkpoint resume it.

    ``home`` is the job's own URL when ``url`` is where its redirects led (learnt by the HEAD
    of the same try): the job's secrets go to ``home``'s host alone.
    """
    home = home or url
    if segments and decision.mode is Mode.RESUME and expected.strong_etag and expected.length:
        return SegmentedFetch(client, url, part_path, segments, validators=expected,
                              decision=decision, options=options, hooks=hooks, cancel=cancel,
                              control=control, limits=limits, host=host, home=home).run()
    offset = decision.offset if decision.mode is Mode.RESUME else 0
    # Small objects finish in one or two chunks: pipeline threads would only add latency.
    # With no length known yet (no HEAD), the response decides, once its headers are in.
    big = expected.length is not None and expected.length - offset > options.background_min
    # Early writeback only pays when a final fsync will wait for the disk anyway.
    part = PartFile(part_path, offset, background=big,
                    writeback=options.fsync and options.fsync_finish)
    if offset and options.fsync:
        part.sync()  # what an earlier run left may not be on disk yet; from here it counts
    # committed: recorded in the ledger; marked: where the latest checkpoint began;
    # durable: the latest recorded offset that was fsynced.
    state = _Progress(expected, offset, offset, offset)
    last_cp = last_durable = time.monotonic()
    # Without a boot identity a reboot cannot be told from a restart: every checkpoint fsyncs.
    durable_every = options.fsync_interval if boot_id() is not None else 0.0
    # A checkpoint waiting for the pipeline to write (and maybe fsync) its bytes.
    pending: tuple[Future[None], Checkpoint] | None = None

    def record(cp: Checkpoint) -> None:
        hooks.checkpoint(cp)
        state.committed = cp.bytes_committed
        state.durable = cp.bytes_durable

    def settle(wait: bool) -> None:
        nonlocal pending
        if pending is not None and (wait or pending[0].done()):
            future, cp = pending
            pending = None
            future.result()
            record(cp)

    def checkpoint(final: bool = True, complete: bool = False) -> None:
        """Record the bytes in the part as committed once they are written.

        Mid-stream on the pipeline, the checkpoint is queued behind the writes and recorded
        when they are done, so receiving never waits for the disk (the committed offset lags
        one checkpoint, never the other way round). It fsyncs only every ``fsync_interval``:
        written bytes already survive the process, and the ledger records how many would
        survive the host. A final checkpoint fsyncs (when ``fsync`` is on), except for a
        complete part without ``fsync_finish``.
        """
        nonlocal last_cp, last_durable, pending
        now = time.monotonic()
        last_cp = now
        state.marked = part.size
        settle(wait=True)
        if not final and part.background:
            durable = options.fsync and now - last_durable >= durable_every
            if durable:
                last_durable = now
            size = part.size
            cp = Checkpoint(size, part.prefix_hash_soon(), state.validators,
                            size if durable else state.durable)
            pending = (part.sync_later(durable=durable), cp)
            return
        part.flush()  # only written bytes may be committed
        sync = options.fsync and (options.fsync_finish or not complete)
        if sync:
            part.sync()
        record(Checkpoint(part.size, part.prefix_hash, state.validators,
                          part.size if sync else min(state.durable, part.size),
                          complete=complete))

    guard = SpeedGuard(options, url, limits.bandwidth_for(host) if limits is not None else None)

    def tick() -> None:
        """After each accepted read: report progress, settle and take checkpoints."""
        hooks.progress(part.size, total)
        guard.observe(part.size)
        if pending is not None and pending[0].done():
            settle(wait=False)
        if (part.size - state.marked >= options.checkpoint_bytes
                or time.monotonic() - last_cp >= options.checkpoint_interval):
            checkpoint(final=False)

    total: int | None = None
    origin = {"url": url, "name": None}
    handed = False  # the part was handed to a SegmentedFetch

    def done(requested: bool) -> StreamResult:
        part.trim()
        checkpoint(complete=True)
        st = os.fstat(part.fd)
        return StreamResult(part.size, part.sha256, part.prefix_hash,
                            state.validators, decision, requested,
                            origin["url"] or url, origin["name"], st.st_dev, st.st_ino)

    try:
        if offset and expected.length is not None and offset == expected.length:
            return done(requested=False)
        headers: dict[str, str] = {}
        # The bytes before the offset are fetched again and must equal the part's.
        overlap = min(OVERLAP_BYTES, offset)
        mine = _read_range(part_path, offset - overlap, overlap) if overlap else b""
        if offset:
            headers["Range"] = f"bytes={offset - overlap}-"
            if decision.if_range:
                headers["If-Range"] = decision.if_range
        if limits is not None:
            limits.request(host, cancel, control)
        with mapped_errors(url, client), client.stream(
                "GET", url, headers=headers, **job_request(home, options.request)) as resp:
            status = resp.status_code
            if status not in (200, 206, 416):
                raise error_for(resp, url)
            verdict = check_response(offset, status, resp.headers.get("content-range"),
                                     expected.length if offset else None,
                                     start=offset - overlap)
            chunks = resp.iter_raw()
            rest = b""
            if status == 206 and overlap:
                theirs, rest = take_bytes(chunks, overlap)
                if theirs != mine:
                    hooks.wire(ResumeDecision(Mode.DISCARD, 0, "overlap_mismatch"))
                    part.reset()
                    checkpoint()
                    raise ResumeConflict(
                        "overlap_mismatch",
                        f"the {overlap} bytes before byte {offset} of {url} differ from the "
                        "part: the object changed; downloading it again")
            if verdict.action is Wire.COMPLETE:
                # The 416's "bytes */N" (or the overlap's Content-Range) is the object's real
                # length, whatever was declared.
                state.validators = dataclasses.replace(expected, length=part.size)
                return done(requested=True)
            if verdict.action is Wire.DISCARD:
                part.reset()
                checkpoint()
                raise ResumeConflict(verdict.reason or "discard", verdict.detail)
            got = validators_from(resp.headers, status=status)
            if offset and verdict.action is Wire.CONTINUE and same_object(expected, got) is False:
                # A server that ignores If-Range (S3 and its kin) sends a range of the new
                # object: its validators tell, whatever the overlap's bytes say.
                part.reset()
                checkpoint()
                raise ResumeConflict("etag_changed",
                                     f"{url} changed since the part was written (ETag "
                                     f"{expected.etag} -> {got.etag}, Last-Modified "
                                     f"{expected.last_modified} -> {got.last_modified})")
            if verdict.action is Wire.RESTART:
                part.reset()
                decision = ResumeDecision(Mode.FRESH, 0, verdict.reason or "range_ignored")
                hooks.wire(decision)
            state.validators = got if verdict.action is Wire.RESTART else _merge(got, expected)
            total = state.validators.length
            if total is None or total - part.size > options.background_min:
                # A body that may take a while: its length and validators reach the ledger now,
                # not at the first checkpoint (which, on a slow link, is seconds away).
                record(Checkpoint(part.size, part.prefix_hash, state.validators,
                                  min(state.durable, part.size)))
            origin["url"] = str(resp.url)
            origin["name"] = filename_from_disposition(resp.headers.get("content-disposition"))
            hooks.before_body(None if total is None else total - part.size)
            def segmented(plan: list[Segment], carry_on: DirectBody | None = None
                          ) -> StreamResult:
                nonlocal handed
                handed = True  # from here the segments' checkpoints describe the part
                seg = SegmentedFetch(client, url, part_path, plan, validators=state.validators,
                                     decision=decision, options=options, hooks=hooks,
                                     cancel=cancel, control=control, limits=limits, host=host,
                                     home=home)
                seg.disposition_name = origin["name"]
                return seg.run(first=resp, carry_on=carry_on)

            split = offset == 0 and status == 200 and eligible(state.validators, options)
            if split and (options.split_below_rate == 0 or direct_body(resp, 0) is None):
                assert total is not None
                return segmented(plan_segments(total, options.connections, options.min_segment))
            if total is None or total - part.size > options.background_min:
                part.go_background()
            if options.preallocate and total is not None and total >= options.preallocate_min:
                part.preallocate(total)
            # Body bytes httpx has handed over; ``rest`` is counted below, as the first chunk.
            taken = overlap if status == 206 else 0
            if rest:
                chunks = itertools.chain([rest], chunks)
            if part.background and total is not None and total - part.size >= options.direct_min:
                first = next(chunks, b"")
                if first:
                    part.write(first)
                    tick()
                reader = direct_body(resp, taken + len(first))
                if reader is not None:
                    if split:
                        # More connections only pay where one is held back (a throttling or
                        # distant server); on a fast link they only share the same CPU.
                        began = time.monotonic()
                        _receive_direct(reader, part, tick, cancel, control, limits, host,
                                        until=began + SPLIT_PROBE_SECONDS)
                        assert total is not None
                        # dltui's own limit holds a connection back too: splitting pays only
                        # where the server gives one connection less than that limit.
                        own = limits.bandwidth_for(host) if limits is not None else None
                        below = options.split_below_rate if own is None else \
                            min(options.split_below_rate, int(own * OWN_LIMIT_SHARE))
                        held = reader.remaining and _held_back(
                            part.size, time.monotonic() - began, reader.remaining, below)
                        plan = _split_plan(total, part.size, options) if held else None
                        if plan is not None:
                            part.flush()
                            return segmented(plan, carry_on=reader)
                    _receive_direct(reader, part, tick, cancel, control, limits, host)
                    chunks = iter(())  # httpx must not read on: the socket is drained
            for chunk in chunks:
                if cancel.is_set():
                    raise Interrupted(control())
                metered = limits.read_size(host) if limits is not None else None
                if metered is None:
                    part.write(chunk)
                    tick()
                    continue
                assert limits is not None
                # httpx reads 64 KiB at a time: at 64 KiB/s that is a second in one step, so
                # the chunk is charged and accepted a tenth of a second of the rate at a time.
                for at in range(0, len(chunk), metered):
                    piece = chunk[at:at + metered]
                    limits.bandwidth(host, len(piece), cancel, control)
                    part.write(piece)
                    tick()
            if total is not None and part.size != total:
                raise TransportError(
                    f"body ended at byte {part.size} of {total} declared ({url})")
            return done(requested=True)
    except LeaseLost:
        raise
    except BaseException:
        if not handed and part.size != state.committed:
            try:
                part.trim()
                checkpoint()
            except LeaseLost:
                pass
        raise
    finally:
        part.close()


#: How long a fresh download that could be split runs on one connection first, to learn
#: whether that connection is held back.
SPLIT_PROBE_SECONDS = 0.1
#: Splitting cannot help a download that one connection finishes within this many seconds.
SPLIT_MIN_SECONDS = 1.0


#: A connection carrying at least this share of dltui's own bandwidth limit is held back by
#: that limit, not by the server: more connections would only share the same limit.
OWN_LIMIT_SHARE = 0.8


def _held_back(done: int, elapsed: float, remaining: int, below: int) -> bool:
    """True when one connection moved ``done`` bytes in ``elapsed`` seconds slower than
    ``below`` bytes/s (faster, it is limited by the CPU, which more connections only share)
    and the ``remaining`` bytes are worth more connections."""
    rate = done / max(elapsed, 1e-3)
    return rate < below and remaining > rate * SPLIT_MIN_SECONDS


def _split_plan(total: int, done: int, options: StreamOptions) -> list[Segment] | None:
    """Segments for the rest of a download whose first ``done`` bytes one connection already
    wrote: segment 0 is that connection, carrying on; None when the rest is too small."""
    rest = plan_segments(total - done, options.connections, options.min_segment)
    if len(rest) < 2:
        return None
    first, *others = rest
    return [Segment(0, 0, done + first.end, done=done),
            *(Segment(s.index, done + s.start, done + s.end) for s in others)]


def _read_range(path: Path, start: int, length: int) -> bytes:
    """``length`` bytes of the part from ``start`` (fewer only if the part is short)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(length)


#: Longest a partly filled buffer is held before it is handed to the part: on a slow link a
#: whole buffer would take minutes, and progress and checkpoints must not wait for it.
HANDOVER_SECONDS = 0.25


def _receive_direct(reader: DirectBody, part: PartFile, tick: Callable[[], None],
                    cancel: threading.Event, control: Callable[[], str],
                    limits: RateLimits | None, host: str, until: float | None = None) -> None:
    """Fill pooled buffers straight from the socket until the body is complete (or, with
    ``until``, that monotonic time has passed), handing each over when full or after
    ``HANDOVER_SECONDS``, whichever comes first."""
    while reader.remaining:
        if until is not None and time.monotonic() >= until:
            return
        buf = part.buffer()
        view = memoryview(buf)
        filled = 0
        due = time.monotonic() + HANDOVER_SECONDS
        if until is not None:
            due = min(due, until)
        try:
            while filled < len(buf) and reader.remaining:
                if filled and time.monotonic() >= due:
                    break
                if cancel.is_set():
                    raise Interrupted(control())
                cap = limits.read_size(host) if limits is not None else None
                end = len(buf) if cap is None else min(len(buf), filled + cap)
                got = reader.readinto(view[filled:end])
                if limits is not None:
                    limits.bandwidth(host, got, cancel, control)
                filled += got
        finally:
            view.release()
            part.commit(buf, filled)  # bytes received before a stop still count
        tick()
