"""The resume decision: can the bytes already in a part file be kept? (pure functions)

``decide`` looks at what the server says now and what was recorded with the part. Byte ranges are
only trusted with a strong ETag (sent back as If-Range); weak ETags and Last-Modified-only
servers need the prefix check (the server's first 64 KiB must hash like the part's), which the
caller performs and reports through ``confirm_prefix``. ``check_response`` then judges the
origin's actual answer to the request that followed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dltui.engine.headers import parse_content_range
from dltui.model import ServerValidators, reason_text

PREFIX_BYTES = 64 * 1024
#: Bytes before the committed offset that every resume fetches again and compares with the
#: part: same-size, same-mtime replacements keep mtime-and-size ETags (nginx, Apache, Caddy),
#: so only the bytes themselves can tell that the rest would be spliced onto other content.
OVERLAP_BYTES = 64 * 1024


class Mode(enum.StrEnum):
    """What to do with the part file."""

    FRESH = "fresh"
    RESUME = "resume"
    CACHED = "cached"
    DISCARD = "discard"




@dataclass(frozen=True, slots=True)
class PartState:
    """What is known about a part file: committed bytes and what was true when they were."""

    bytes_committed: int
    prefix_hash: str | None
    validators: ServerValidators


@dataclass(frozen=True, slots=True)
class ResumeDecision:
    """The verdict: a mode, the byte offset to request from, and why."""

    mode: Mode
    offset: int
    reason: str
    #: The strong validator to send as If-Range with the Range request.
    if_range: str | None = None
    #: Resume only after the server's first 64 KiB proved equal to the part's.
    needs_prefix_check: bool = False

    def describe(self) -> str:
        """One line for people: ``resume @ 1048576: the server's strong ETag matches the part``."""
        where = f" @ {self.offset}" if self.mode is Mode.RESUME else ""
        return f"{self.mode}{where}: {reason_text(self.reason)}"


def same_object(recorded: ServerValidators, server: ServerValidators) -> bool | None:
    """True when strong ETags prove the same bytes, False when any validator proves a change,
    None when nothing decides it."""
    if recorded.length is not None and server.length is not None and \
            recorded.length != server.length:
        return False
    if recorded.etag and server.etag and recorded.etag != server.etag:
        return False
    if recorded.last_modified and server.last_modified and \
            recorded.last_modified != server.last_modified:
        return False
    if recorded.strong_etag and server.strong_etag:
        return recorded.strong_etag == server.strong_etag
    return None


def decide(
    server: ServerValidators,
    part: PartState | None,
    *,
    resume_enabled: bool = True,
    prefix_check_enabled: bool = True,
    cached: ServerValidators | None = None,
) -> ResumeDecision:
    """Decide what to do with the part, given the server's validators now.

    ``cached`` holds the validators recorded when this job's object entered the store; when the
    server still proves the same object the download is skipped.
    """
    if cached is not None and same_object(cached, server) is True:
        return ResumeDecision(Mode.CACHED, 0, "not_modified")
    if part is None or part.bytes_committed <= 0:
        return ResumeDecision(Mode.FRESH, 0, "no_part")
    if not resume_enabled:
        return ResumeDecision(Mode.FRESH, 0, "resume_disabled")
    if server.accept_ranges is False:
        return ResumeDecision(Mode.FRESH, 0, "no_ranges")
    if server.length is not None and part.bytes_committed > server.length:
        return ResumeDecision(Mode.DISCARD, 0, "validators_mismatch")
    verdict = same_object(part.validators, server)
    if verdict is False:
        return ResumeDecision(Mode.DISCARD, 0, "validators_mismatch")
    if verdict is True:
        return ResumeDecision(Mode.RESUME, part.bytes_committed, "validators_match",
                              if_range=server.strong_etag)
    why = "weak_etag" if (server.etag or part.validators.etag) else "validators_missing"
    if prefix_check_enabled and part.prefix_hash and part.bytes_committed >= PREFIX_BYTES:
        # The probe is a request of its own: only worth it where ranges are known to work.
        # Elsewhere the resuming GET's overlap check is the proof, with no extra request.
        return ResumeDecision(Mode.RESUME, part.bytes_committed, why,
                              needs_prefix_check=server.accept_ranges is True)
    return ResumeDecision(Mode.DISCARD, 0, "no_prefix")


def confirm_prefix(decision: ResumeDecision, matches: bool | None) -> ResumeDecision:
    """The decision after the prefix check: resume (``prefix_ok``), discard, or (``None``:
    the probe got the whole object, ranges are ignored) start fresh."""
    if matches is None:
        return ResumeDecision(Mode.FRESH, 0, "range_ignored")
    if matches:
        return ResumeDecision(Mode.RESUME, decision.offset, "prefix_ok")
    return ResumeDecision(Mode.DISCARD, 0, "prefix_mismatch")


class Wire(enum.StrEnum):
    """What to do with the response to the download request."""

    CONTINUE = "continue"  # the body is what we asked for: append it
    RESTART = "restart"  # a 200 to a Range request: truncate and take this body from byte 0
    COMPLETE = "complete"  # a 416 confirming the part is whole: verify and finalize
    DISCARD = "discard"  # the answer contradicts the part: drop it and start over


@dataclass(frozen=True, slots=True)
class WireVerdict:
    """``check_response``'s answer."""

    action: Wire
    reason: str | None = None
    detail: str = ""


def check_response(
    offset: int, status: int, content_range: str | None, expected_total: int | None,
    start: int | None = None,
) -> WireVerdict:
    """Judge a 200/206/416 answer to a request that resumes at ``offset``, asking for bytes
    from ``start`` (``offset`` less the overlap; ``offset`` when None)."""
    start = offset if start is None else start
    parsed = parse_content_range(content_range)
    if status == 416:
        total = parsed[2] if parsed else None
        if offset > 0 and total == offset:
            return WireVerdict(Wire.COMPLETE, "range_not_satisfiable")
        return WireVerdict(Wire.DISCARD, "range_not_satisfiable",
                           f"416 with Content-Range {content_range!r} for offset {offset}")
    if status == 200:
        if offset == 0:
            return WireVerdict(Wire.CONTINUE)
        return WireVerdict(Wire.RESTART, "range_ignored")
    if status == 206:
        if parsed is None or parsed[0] is None:
            return WireVerdict(Wire.DISCARD, "bad_content_range",
                               f"206 with unusable Content-Range {content_range!r}")
        first, _end, total = parsed
        if first != start:
            return WireVerdict(Wire.DISCARD, "bad_content_range",
                               f"asked for bytes {start}-, got {content_range!r}")
        if start < offset and total == offset:
            # Only the overlap is left: the part holds every byte (once the overlap matches),
            # whatever length was declared before.
            return WireVerdict(Wire.COMPLETE, "range_not_satisfiable")
        if total is not None and expected_total is not None and total != expected_total:
            return WireVerdict(Wire.DISCARD, "bad_content_range",
                               f"object is {total} bytes now, expected {expected_total}")
        return WireVerdict(Wire.CONTINUE)
    raise ValueError(f"check_response handles 200/206/416, not {status}")
