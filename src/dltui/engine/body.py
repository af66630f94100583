"""Reading a large response body straight from the socket into reused buffers.

httpx (through httpcore and h11) hands a body over as a new ``bytes`` object per read, parsed by
pure-Python code: on loopback that caps a download near 300 MB/s. For a plain HTTP/1.1 body with
a Content-Length, the bytes after the headers are the body, so once h11 has handed over what it
already buffered, ``socket.recv_into`` can fill the caller's buffer directly. The connection is
then closed rather than returned to the pool (h11 never saw the end of the body), which costs
nothing next to a body this large.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx

from dltui.engine import _net


class DirectBody:
    """The rest of a response body, read from its socket with :meth:`readinto`."""

    def __init__(self, sock: socket.socket, remaining: int, url: str,
                 timeout: float | None = None) -> None:
        self._sock = sock
        self.remaining = remaining
        self._url = url
        self._timeout = timeout  # the request's read timeout: seconds without a byte

    def readinto(self, view: memoryview) -> int:
        """Receive up to ``len(view)`` body bytes; 0 only when the body is complete."""
        if self.remaining <= 0:
            return 0
        want = min(len(view), self.remaining)
        try:
            # Sliced like every socket wait, so a stop reaches it (see engine._net).
            n = _net.recv_into(self._sock, view, want, self._timeout)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no body bytes within the read timeout ({self._url})") \
                from None
        except OSError as exc:
            raise httpx.ReadError(f"{exc} ({self._url})") from None
        if n == 0:
            raise httpx.RemoteProtocolError(
                f"the server closed the connection with {self.remaining} body bytes to go")
        self.remaining -= n
        return n


def direct_body(resp: httpx.Response, taken: int) -> DirectBody | None:
    """A :class:`DirectBody` for the body after the ``taken`` bytes that httpx handed over
    (everything h11 had buffered), or None when the response must stay with httpx: chunked or
    encoded framing, HTTP/2, no length, or a transport that exposes no plain socket."""
    if resp.http_version != "HTTP/1.1" or "transfer-encoding" in resp.headers:
        return None
    try:
        length = int(resp.headers.get("content-length", ""))
    except ValueError:
        return None
    stream = resp.extensions.get("network_stream")
    get_extra = getattr(stream, "get_extra_info", None)
    sock = get_extra("socket") if get_extra is not None else None
    if not isinstance(sock, socket.socket):
        return None
    # h11 hands over everything it had buffered as the first chunk: the socket holds the rest.
    timeout = resp.request.extensions.get("timeout", {}).get("read")
    return DirectBody(sock, length - taken, str(resp.url), timeout)


def take_bytes(chunks: Iterator[bytes], n: int) -> tuple[bytes, bytes]:
    """The first ``n`` bytes of a body, and what its last chunk held beyond them."""
    got = bytearray()
    while len(got) < n:
        chunk = next(chunks, b"")
        if not chunk:
            raise httpx.RemoteProtocolError(f"the body ended within its first {n} bytes")
        got += chunk
    return bytes(got[:n]), bytes(got[n:])
