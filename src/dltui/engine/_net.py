"""Sockets that a stop reaches within a fraction of a second, and a deadline for a response's
whole header block.

httpx's sync client blocks its thread in ``connect``, the TLS handshake and ``recv`` for up to
a whole timeout (10 s, 30 s), and its read timeout restarts with every byte, so a server that
trickles its header block one byte at a time holds a request for ever. This network backend
for httpcore does the same I/O in slices of :data:`SLICE` seconds and, between slices, checks
the thread's :class:`Watch`: a stop raises :class:`~dltui.errors.Interrupted`, a header block
not complete by its deadline raises :class:`~dltui.errors.TransportError`. Both pass through
httpcore (which closes the connection) and httpx unchanged.

A thread says what may stop it with :func:`watching`; the client's request and response hooks
start and end each request's header deadline (:func:`headers_started`, :func:`headers_done`).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore

from dltui.errors import DownloadError, Interrupted, TransportError

#: Longest a blocked socket call waits before the thread looks at its Watch again.
SLICE = 0.2


@dataclass(slots=True)
class Watch:
    """What may end a thread's socket waits early."""

    cancel: threading.Event | None = None
    control: Callable[[], str] | None = None
    #: ``time.monotonic()`` by which the current response's header block must be complete.
    headers_due: float | None = None
    header_timeout: float = 0.0
    #: The host asked, for the error's words.
    asked: str = ""

    def check(self) -> None:
        """Raise if the thread was asked to stop or the header block is late."""
        if self.cancel is not None and self.cancel.is_set():
            raise Interrupted(self.control() if self.control is not None else "shutdown")
        if self.headers_due is not None and time.monotonic() >= self.headers_due:
            self.headers_due = None
            raise TransportError(
                f"response headers from {self.asked} not complete after "
                f"{self.header_timeout:g}s (the server trickles them; setting header_timeout)")


_local = threading.local()


def _watch() -> Watch:
    watch: Watch | None = getattr(_local, "watch", None)
    if watch is None:
        watch = _local.watch = Watch()
    return watch


@contextmanager
def watching(cancel: threading.Event, control: Callable[[], str]) -> Iterator[None]:
    """Let ``cancel`` stop this thread's requests at any point: connect, TLS, headers, body."""
    watch = _watch()
    before = watch.cancel, watch.control
    watch.cancel, watch.control = cancel, control
    try:
        yield
    finally:
        watch.cancel, watch.control = before


def headers_started(host: str, timeout: float) -> None:
    """A request of this thread was sent: its header block is due within ``timeout`` s."""
    if timeout > 0:
        watch = _watch()
        watch.headers_due, watch.header_timeout, watch.asked = \
            time.monotonic() + timeout, timeout, host


def headers_done() -> None:
    """The response's header block arrived."""
    _watch().headers_due = None


def _sliced(call: Callable[[float | None], Any], timeout: float | None,
            timeout_error: type[Exception]) -> Any:
    """``call(slice)`` again after each slice that timed out, until ``timeout`` has passed,
    checking the thread's Watch in between."""
    watch = _watch()
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        watch.check()
        step = SLICE if end is None else min(SLICE, end - time.monotonic())
        if step <= 0:
            raise timeout_error("timed out")
        try:
            return call(step)
        except TimeoutError:  # socket.timeout is TimeoutError
            continue


def recv_into(sock: socket.socket, view: memoryview, nbytes: int,
              timeout: float | None) -> int:
    """``sock.recv_into`` in slices: TimeoutError after ``timeout`` s without a byte."""
    def once(step: float | None) -> int:
        sock.settimeout(step)
        return sock.recv_into(view, nbytes)

    got: int = _sliced(once, timeout, TimeoutError)
    return got


class _Stream(httpcore.NetworkStream):
    """A socket (plain or TLS) read, written and upgraded in slices."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        def once(step: float | None) -> bytes:
            self._sock.settimeout(step)
            return self._sock.recv(max_bytes)

        try:
            data: bytes = _sliced(once, timeout, httpcore.ReadTimeout)
            return data
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        left = [memoryview(buffer)]

        def once(step: float | None) -> int:
            self._sock.settimeout(step)
            return self._sock.send(left[0])

        while left[0]:
            try:
                sent: int = _sliced(once, timeout, httpcore.WriteTimeout)
            except OSError as exc:
                raise httpcore.WriteError(exc) from exc
            left[0] = left[0][sent:]

    def close(self) -> None:
        self._sock.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        if isinstance(self._sock, ssl.SSLSocket):
            self.close()
            # No retry can change it: a DownloadError of its own, not a connection failure.
            raise DownloadError("TLS inside TLS (an https:// proxy for an https:// URL) is "
                                "not supported; set HTTPS_PROXY to the proxy's http:// address")
        try:
            sock = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname,
                                           do_handshake_on_connect=False)

            def once(step: float | None) -> None:
                sock.settimeout(step)
                sock.do_handshake()  # resumes where a timed-out slice left it

            _sliced(once, timeout, httpcore.ConnectTimeout)
        except (Interrupted, TransportError, httpcore.ConnectTimeout):
            self.close()
            raise
        except OSError as exc:  # ssl.SSLError included
            self.close()
            raise httpcore.ConnectError(exc) from exc
        return _Stream(sock)

    def get_extra_info(self, info: str) -> Any:
        sock = self._sock
        if info == "ssl_object" and isinstance(sock, ssl.SSLSocket):
            return sock._sslobj  # type: ignore[attr-defined]  # what httpcore's own returns
        if info == "client_addr":
            return sock.getsockname()
        if info == "server_addr":
            return sock.getpeername()
        if info == "socket":
            return sock
        if info == "is_readable":
            return _readable(sock)
        return None


def _readable(sock: socket.socket) -> bool:
    """True when a kept-alive connection has something to read: the server closed it (or
    sent bytes nobody asked for), so it must not be reused."""
    if sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _connect(address: tuple[Any, ...], family: int, kind: int, proto: int,
             timeout: float | None, source: tuple[str, int] | None) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        if source is not None:
            sock.bind(source)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            raise OSError(code, os.strerror(code))

        poller = select.poll()  # not select(): descriptors past 1024 are ordinary here
        poller.register(sock, select.POLLOUT)

        def once(step: float | None) -> None:
            if not poller.poll(None if step is None else max(0, int(step * 1000))):
                raise TimeoutError
            failed = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if failed:
                raise OSError(failed, os.strerror(failed))

        if code != 0:
            _sliced(once, timeout, httpcore.ConnectTimeout)
        sock.setblocking(True)
        return sock
    except BaseException:
        sock.close()
        raise


class Backend(httpcore.NetworkBackend):
    """httpcore's sync backend, with every wait sliced (see the module's docstring)."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        source = None if local_address is None else (local_address, 0)
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        last: Exception | None = None
        for family, kind, proto, _, address in infos:
            try:
                sock = _connect(address, family, kind, proto, timeout, source)
            except httpcore.ConnectTimeout as exc:
                last = exc
                continue
            except OSError as exc:
                last = httpcore.ConnectError(exc)
                continue
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _Stream(sock)
        raise last if last is not None else httpcore.ConnectError(f"{host}: no address")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(exc) from exc
        return _Stream(sock)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
