"""Value objects and hooks shared by single-stream and segmented transfers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from dltui.engine.headers import parse_retry_after
from dltui.engine.resume import Mode, ResumeDecision
from dltui.errors import HTTPStatusError, TransportError
from dltui.model import PartIdentity, RequestOptions, Segment, ServerValidators
from dltui.records import as_record, fields_of

__all__ = ["as_record", "from_record"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a checkpoint records: bytes in the part and what they came from.

    ``bytes_committed`` are written (they survive the process); ``bytes_durable`` are also
    fsynced (they survive the host).
    """

    bytes_committed: int
    prefix_hash: str | None
    validators: ServerValidators
    bytes_durable: int = 0
    #: The ranges of a segmented download; None for a single stream.
    segments: tuple[Segment, ...] | None = None
    #: The part is complete: the caller may record this with the stream's result.
    complete: bool = False


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
    #: Seconds between checkpoints that fsync; 0 fsyncs every checkpoint. Where the boot cannot
    #: be identified every checkpoint fsyncs (see :mod:`dltui.durability`).
    fsync_interval: float = 10.0
    #: fsync the complete part too (else it is left to the kernel; see ``fsync_on_finish``).
    fsync_finish: bool = False
    #: Objects larger than this are written and hashed on pipeline threads.
    background_min: int = 1 << 20
    #: Bodies at least this large are read straight from the socket (see :mod:`.body`).
    direct_min: int = 4 << 20
    #: Ranged connections per file for objects of at least two ``min_segment`` (1 = never).
    connections: int = 1
    min_segment: int = 20 << 20
    #: Split only when the first connection runs slower than this (bytes/s); 0: at once.
    split_below_rate: int = 100 << 20
    #: Slower than ``min_speed`` bytes/s for ``min_speed_time`` seconds is a stall (0: never).
    min_speed: int = 1 << 10
    min_speed_time: float = 60.0
    #: What the job sends besides the URL: headers, cookies, credentials (secret), referer.
    request: RequestOptions | None = None


class SpeedGuard:
    """Fails a transfer that stays under ``min_speed`` for ``min_speed_time`` seconds, as curl's
    ``--speed-limit``/``--speed-time`` do: a server that sends a byte every few seconds never
    trips the read timeout, yet would hold a worker for ever."""

    def __init__(self, options: StreamOptions, url: str, limit: int | None = None) -> None:
        # Under a bandwidth limit below the minimum, the limit itself would look like a stall.
        floor = options.min_speed if limit is None else min(options.min_speed, limit // 2)
        self._floor = floor
        self._span = options.min_speed_time
        self._url = url
        self._t0 = time.monotonic()
        self._b0: int | None = None

    def observe(self, done: int) -> None:
        """Note ``done`` bytes so far; raise TransportError when the window was too slow."""
        if self._floor <= 0 or self._span <= 0:
            return
        now = time.monotonic()
        if self._b0 is None:
            self._t0, self._b0 = now, done
            return
        elapsed = now - self._t0
        if elapsed < self._span:
            return
        if done - self._b0 < self._floor * elapsed:
            rate = (done - self._b0) / elapsed
            raise TransportError(
                f"stalled: {rate:.0f} B/s for {elapsed:.0f}s, under min_speed "
                f"{self._floor} B/s ({self._url})")
        self._t0, self._b0 = now, done


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
    #: The part file the bytes were written to (device, inode): promotion re-checks it, so a
    #: file swapped in under the part's name is never stored under this digest.
    part_dev: int | None = None
    part_ino: int | None = None

    @property
    def part(self) -> PartIdentity | None:
        """The written part's identity, or None (a record from before it was kept)."""
        if self.part_dev is None or self.part_ino is None:
            return None
        return PartIdentity(self.part_dev, self.part_ino, self.size)


def from_record(data: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that rebuild a Precheck or StreamResult stored by
    :func:`~dltui.records.as_record` (the engine's own nested types included)."""
    out = fields_of(data)
    if isinstance(out.get("decision"), dict):
        d = out["decision"]
        out["decision"] = ResumeDecision(Mode(d["mode"]), d["offset"], d["reason"],
                                         d.get("if_range"), d.get("needs_prefix_check", False))
    return out


def error_for(resp: httpx.Response, url: str) -> HTTPStatusError:
    """The error for a status the download cannot use, with its Retry-After; it names the
    URL that answered (a redirect's last hop) and ``url`` beside it when they differ."""
    return HTTPStatusError(
        resp.status_code, resp.reason_phrase, answered_by(str(resp.url), url),
        retry_after=parse_retry_after(resp.headers.get("retry-after"), time.time()),
    )


def answered_by(hop: str, url: str) -> str:
    """``hop``, the URL that answered, and the one asked when a redirect led elsewhere (as
    curl's ``url_effective`` beside the URL given)."""
    return hop if not hop or hop == url else f"{hop} (redirected from {url})"
