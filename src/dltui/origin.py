"""A loopback HTTP/1.1 origin with byte ranges, validators and injectable faults (stdlib only).

It serves ``dltui demo`` and the test suite: every misbehaviour a real server shows (ignoring
Range, lying about lengths, dropping or stalling mid-body, changing content, throttling, error
statuses with Retry-After) is a field of :class:`Resource`. It only ever binds 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIXED_DATE = formatdate(1_700_000_000, usegmt=True)
_WRITE_CHUNK = 1 << 20


@dataclass
class Resource:
    """One path's content and behaviour. ``versions`` lets content change between requests."""

    data: bytes = b""
    #: Successive contents; GET number ``n`` (from 0) serves ``versions[n // change_after]``.
    versions: list[bytes] = field(default_factory=list)
    change_after: int = 1
    etag: bool = True
    weak_etag: bool = False
    last_modified: bool = True
    ranges: bool = True
    advertise_ranges: bool = True
    #: Say "Accept-Ranges: bytes" even when ``ranges`` is off (a server that ignores Range).
    claim_ranges: bool = False
    #: Answer a Range request with 206 but a different start byte.
    wrong_range_start: int | None = None
    #: Answer a Range request with a 206 of the current content whatever ``If-Range`` says,
    #: as S3 and S3-compatible servers do (they honour ``If-Match`` instead).
    ignore_if_range: bool = False
    #: Serve whatever ``If-Match`` says (a server that checks no precondition at all).
    ignore_if_match: bool = False
    chunked: bool = False
    #: Declare a Content-Length this many bytes longer than the body, then close.
    extra_length: int = 0
    #: Close the connection after this many body bytes, on the first ``drop_times`` GETs.
    drop_after: int | None = None
    drop_times: int = 1
    #: Stop sending for ``stall_seconds`` after this many body bytes, on the first GETs.
    stall_after: int | None = None
    stall_seconds: float = 5.0
    stall_times: int = 1
    #: Statuses for the first GETs, in order (then normal service).
    statuses: list[int] = field(default_factory=list)
    #: The reason phrase of ``status`` and ``statuses`` answers (a lying server's, with escape
    #: sequences in it); None: the standard one.
    reason: str | None = None
    #: Headers sent as they are on every answer (hostile values included).
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: str | None = None
    #: Always answer this status (GET and HEAD).
    status: int | None = None
    head_status: int | None = None
    head_length: int | None = None
    gzip: bool = False
    content_disposition: str | None = None
    content_type: str = "application/octet-stream"
    redirect: str | None = None
    #: Throttle each response (so each connection) to about this many bytes per second.
    rate: int | None = None
    #: Seconds to wait before answering each request: a round trip to a distant server.
    latency: float = 0.0
    #: Answer with this raw status line (and nothing else), then close: not an HTTP server.
    raw_status_line: bytes | None = None
    #: Pad the header block with about this many bytes of extra headers.
    header_bytes: int = 0
    #: Send the header block one byte every this many seconds, never ending it: a server
    #: that holds a request for ever while every single read stays under its timeout.
    trickle_headers: float | None = None
    #: nginx/Apache-style validators: Last-Modified from this mtime and the ETag
    #: ``"<mtime hex>-<size hex>"``, so other content of the same size and mtime keeps both.
    mtime: int | None = None
    #: The ETag's format: ``nginx`` (``"<mtime hex>-<size hex>"``), ``apache``
    #: (``"<size hex>-<mtime in µs hex>"``), ``s3`` (the MD5 of the content, as S3 gives a
    #: single-part object); None: a hash of the content (or nginx's, with ``mtime``).
    etag_style: str | None = None
    gets: int = 0

    def current(self) -> bytes:
        """The content the next GET serves."""
        if not self.versions:
            return self.data
        return self.versions[min(self.gets // max(self.change_after, 1), len(self.versions) - 1)]


@dataclass(frozen=True)
class RequestRecord:
    """One request the origin saw."""

    method: str
    path: str
    headers: dict[str, str]
    status: int
    ts: float = 0.0
    #: Body bytes written to the socket (filled in as the body goes out; one entry).
    sent: list[int] = field(default_factory=list)

    @property
    def body_bytes(self) -> int:
        """How much of the body the origin managed to send before the client left."""
        return sum(self.sent)


def _etags(header: str) -> list[str]:
    """The entity tags of an ``If-Match`` list (a comma-separated list of quoted tags)."""
    return [t.strip() for t in header.split(",") if t.strip()]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # -- helpers -------------------------------------------------------------------------------
    def _record(self, status: int) -> None:
        self._last = RequestRecord(self.command, self.path,
                                   {k.lower(): v for k, v in self.headers.items()},
                                   status, time.monotonic())
        self.server.origin.log.append(self._last)

    def _simple(
        self, status: int, headers: dict[str, str] | None = None, head: bool = False,
        reason: str | None = None,
    ) -> None:
        body = f"{status} {HTTPStatus(status).phrase}\n".encode()
        self.send_response(status, reason)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self._record(status)

    def _serve(self, head: bool) -> None:
        origin = self.server.origin
        path = self.path.split("?", 1)[0]
        with origin.lock:
            res = origin.resources.get(path)
        if res is not None and res.latency:
            time.sleep(res.latency)
        if res is not None and res.trickle_headers is not None:
            self._trickle(res.trickle_headers)
            return
        with origin.lock:
            res = origin.resources.get(path)
            if res is None:
                self._simple(404, head=head)
                return
            if res.redirect:
                self._simple(302, {"Location": res.redirect}, head=head)
                return
            if res.status is not None:
                extra = {"Retry-After": res.retry_after} if res.retry_after else {}
                self._simple(res.status, {**extra, **res.headers}, head=head,
                             reason=res.reason)
                return
            if res.raw_status_line is not None:
                self.wfile.write(res.raw_status_line + b"\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True
                self._record(0)
                return
            if head and res.head_status is not None:
                self._simple(res.head_status, head=True)
                return
            nth = res.gets
            data = res.current()
            if not head:
                res.gets += 1
                if nth < len(res.statuses):
                    status = res.statuses[nth]
                    extra = {"Retry-After": res.retry_after} if res.retry_after else {}
                    self._simple(status, extra)
                    return
        body = gzip.compress(data, mtime=0) if res.gzip else data
        digest = hashlib.sha256(body).hexdigest()[:16]
        style = res.etag_style or ("nginx" if res.mtime is not None else None)
        # Without an mtime given, each content was written at a time of its own.
        mtime = res.mtime if res.mtime is not None else \
            1_600_000_000 + int(hashlib.sha256(body).hexdigest()[:6], 16)
        if style == "nginx":
            digest = f"{mtime:x}-{len(body):x}"
        elif style == "apache":
            digest = f"{len(body):x}-{mtime * 1_000_000:x}"
        elif style == "s3":
            digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
        etag = (f'W/"{digest}"' if res.weak_etag else f'"{digest}"') if res.etag else None
        stamp = mtime if style in ("nginx", "apache") else (
            res.mtime if res.mtime is not None else 1_600_000_000 + int(digest[:6], 16))
        last_mod = formatdate(stamp, usegmt=True) if res.last_modified else None
        start, end, status = 0, len(body), 200
        if_match = self.headers.get("If-Match")
        if if_match is not None and not res.ignore_if_match and not (
                if_match.strip() == "*" or (etag is not None and not etag.startswith("W/")
                                            and etag in _etags(if_match))):
            self._simple(412, head=head)  # RFC 9110 13.1.1: strong comparison
            return
        range_header = self.headers.get("Range")
        if range_header and res.ranges and not head and (
                res.ignore_if_range or self._if_range_ok(etag, last_mod)):
            parsed = _parse_range(range_header, len(body))
            if parsed == "unsatisfiable":
                self._simple(416, {"Content-Range": f"bytes */{len(body)}"})
                return
            if isinstance(parsed, tuple):
                start, end = parsed
                status = 206
        self.send_response(status)
        self.send_header("Content-Type", res.content_type)
        self.send_header("Date", FIXED_DATE)
        if etag:
            self.send_header("ETag", etag)
        if last_mod:
            self.send_header("Last-Modified", last_mod)
        if res.advertise_ranges:
            self.send_header("Accept-Ranges",
                             "bytes" if res.ranges or res.claim_ranges else "none")
        if res.gzip:
            self.send_header("Content-Encoding", "gzip")
        if res.content_disposition:
            self.send_header("Content-Disposition", res.content_disposition)
        for name, value in res.headers.items():
            self.send_header(name, value)
        for i in range(0, res.header_bytes, 4000):
            self.send_header(f"X-Padding-{i}", "p" * min(4000, res.header_bytes - i))
        if status == 206:
            shown_start = res.wrong_range_start if res.wrong_range_start is not None else start
            self.send_header("Content-Range", f"bytes {shown_start}-{end - 1}/{len(body)}")
        declared = end - start + res.extra_length
        if head and res.head_length is not None:
            declared = res.head_length
        if res.chunked and not head:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(declared))
        if res.extra_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._record(status)
        if head:
            return
        self._send_body(res, memoryview(body)[start:end], nth)
        if res.extra_length:
            self.close_connection = True

    def _trickle(self, every: float) -> None:
        """A header block that never ends: one byte every ``every`` seconds (for at most
        five minutes), so no read waits long enough to time out."""
        self._record(200)
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            self.wfile.flush()
            for _ in range(int(300 / every)):
                time.sleep(every)
                self.wfile.write(b"x")
                self.wfile.flush()
        except OSError:
            pass  # the client gave up: what is being tested

    def _if_range_ok(self, etag: str | None, last_mod: str | None) -> bool:
        value = self.headers.get("If-Range")
        if value is None:
            return True
        if value.startswith('"'):
            return etag is not None and not etag.startswith("W/") and value == etag
        if last_mod is None:
            return False
        try:
            return parsedate_to_datetime(value) == parsedate_to_datetime(last_mod)
        except (TypeError, ValueError):
            return False

    def _send_body(self, res: Resource, body: memoryview, nth: int) -> None:
        drop_at = res.drop_after if res.drop_after is not None and nth < res.drop_times else None
        stall_at = res.stall_after if res.stall_after is not None and nth < res.stall_times \
            else None
        piece = _WRITE_CHUNK if res.rate is None else max(1, res.rate // 20)
        sent = 0
        try:
            while sent < len(body):
                limit = len(body)
                for mark in (drop_at, stall_at):
                    if mark is not None and sent < mark:
                        limit = min(limit, mark)
                chunk = body[sent:min(sent + piece, limit)]
                if chunk:
                    self._write(res, chunk)
                    sent += len(chunk)
                    if res.rate:
                        time.sleep(len(chunk) / res.rate)
                if drop_at is not None and sent >= drop_at:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if stall_at is not None and sent >= stall_at:
                    self.wfile.flush()
                    time.sleep(res.stall_seconds)
                    stall_at = None
            if res.chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            self._last.sent.append(sent)

    def _write(self, res: Resource, chunk: memoryview) -> None:
        if res.chunked:
            self.wfile.write(f"{len(chunk):x}\r\n".encode())
            self.wfile.write(chunk)
            self.wfile.write(b"\r\n")
        else:
            self.wfile.write(chunk)


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """``bytes=N-`` / ``bytes=N-M`` / ``bytes=-K`` -> (start, end exclusive); None if unusable."""
    if not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":
            count = int(last)
            return (max(size - count, 0), size) if count else "unsatisfiable"
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    origin: Origin

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response is routine here (pauses, kills, timeouts).
        pass


class Origin:
    """A threaded origin on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, port: int = 0, *, tls: ssl.SSLContext | None = None) -> None:
        self.resources: dict[str, Resource] = {}
        self.log: list[RequestRecord] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.origin = self
        self.scheme = "http"
        if tls is not None:
            # The handshake happens on the first read, in the connection's own thread.
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
            self.scheme = "https"
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this origin."""
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def add(self, path: str, resource: Resource | bytes) -> str:
        """Serve ``resource`` at ``path``; returns its URL."""
        with self.lock:
            self.resources[path] = resource if isinstance(resource, Resource) else \
                Resource(data=resource)
        return self.url(path)

    def requests(self, path: str, method: str | None = None) -> list[RequestRecord]:
        """Requests seen for ``path`` (optionally of one method), in order."""
        with self.lock:
            return [r for r in self.log
                    if r.path.split("?", 1)[0] == path and (method is None or r.method == method)]

    def start(self) -> Origin:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="origin",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Origin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
