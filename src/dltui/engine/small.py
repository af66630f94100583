"""Small objects in one piece: the GET's body in memory, then the part written in one call.

For a body of a few kilobytes the streaming machinery of :func:`dltui.engine.stream.fetch`
(a part opened before the first byte, checkpoints, progress per chunk) costs more than the
transfer. :func:`fetch_small` reads a fresh object whole when its answer is a plain 200 with a
small Content-Length and changes nothing on disk, so the caller can decide what to record
before :func:`write_part` creates the part.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from dltui.engine.client import job_request, mapped_errors
from dltui.engine.headers import filename_from_disposition, validators_from
from dltui.engine.resume import PREFIX_BYTES, ResumeDecision
from dltui.engine.transfer import SpeedGuard, StreamResult, error_for
from dltui.model import PartIdentity, RequestOptions


@dataclass(frozen=True, slots=True)
class TooLarge:
    """The answer announced ``length`` bytes, more than the small path takes."""

    length: int


@dataclass(frozen=True, slots=True)
class SmallBody:
    """A whole object held in memory and what a stream of it would have reported."""

    data: bytes
    result: StreamResult


def fetch_small(client: httpx.Client, url: str, decision: ResumeDecision, *,
                max_bytes: int, guard: SpeedGuard | None = None,
                charge: Callable[[int], None] | None = None,
                request: RequestOptions | None = None) -> SmallBody | TooLarge | None:
    """GET ``url`` whole into memory, or None when the answer is not for this path.

    None: a 206 or 416 (which only the stream path interprets) or no Content-Length;
    :class:`TooLarge`: more than ``max_bytes``. The response is dropped unread. Any other
    status raises HTTPStatusError (with its Retry-After) and a failed transfer TransportError, as
    :func:`~dltui.engine.stream.fetch` would. ``charge`` meters each chunk against the
    bandwidth limits; ``guard`` fails a body that trickles; ``request`` is what the job sends
    besides the URL.
    """
    with mapped_errors(url, client), client.stream("GET", url, **job_request(url, request)) as resp:
        status = resp.status_code
        if status in (206, 416):
            return None
        if status != 200:
            raise error_for(resp, url)
        validators = validators_from(resp.headers, status=status)
        if validators.length is None:
            return None
        if validators.length > max_bytes:
            return TooLarge(validators.length)
        chunks = []
        got = 0
        for chunk in resp.iter_raw():
            if charge is not None:
                charge(len(chunk))
            chunks.append(chunk)
            got += len(chunk)
            if guard is not None:
                guard.observe(got)
        data = b"".join(chunks)
        final_url = str(resp.url)
        name = filename_from_disposition(resp.headers.get("content-disposition"))
    if len(data) != validators.length:
        return None  # the stream path reports a short body with its own error and retry
    prefix = hashlib.sha256(data[:PREFIX_BYTES]).hexdigest() if len(data) >= PREFIX_BYTES \
        else None
    result = StreamResult(len(data), hashlib.sha256(data).hexdigest(), prefix, validators,
                          decision, True, final_url, name)
    return SmallBody(data, result)


def write_part(path: Path, data: bytes, *, fsync: bool = False) -> PartIdentity:
    """Create (or replace) the part at ``path`` holding exactly ``data``; its identity."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
        st = os.fstat(fd)
        return PartIdentity(st.st_dev, st.st_ino, len(data))
    finally:
        os.close(fd)
