"""The shared httpx client and the mapping of httpx exceptions onto dltui's error tree."""

from __future__ import annotations

import base64
import netrc
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from dltui import __version__
from dltui.config import Settings
from dltui.engine import _net
from dltui.errors import (
    CertificateError,
    CredentialsError,
    DownloadError,
    ProtocolError,
    RedirectError,
    TransportError,
)
from dltui.model import RequestOptions
from dltui.urls import redact


class LazyTrust(ssl.SSLContext):
    """A client TLS context that loads its CA certificates at the first handshake.

    Loading certifi's bundle costs ~50 ms, a tenth of a short run's start-up, and a run that
    only speaks plain HTTP never needs it. Trust is what httpx would use: ``SSL_CERT_FILE`` or
    ``SSL_CERT_DIR`` when the environment is trusted, else certifi.
    """

    def __new__(cls, cafile: str | None = None, capath: str | None = None) -> LazyTrust:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)  # hostname check + CERT_REQUIRED

    def __init__(self, cafile: str | None = None, capath: str | None = None) -> None:
        self._trust = (cafile, capath)
        self._loaded = False
        self._load_lock = threading.Lock()
        if keylog := os.environ.get("SSLKEYLOGFILE"):
            self.keylog_filename = keylog

    def _load_trust(self) -> None:
        with self._load_lock:
            if not self._loaded:
                cafile, capath = self._trust
                if cafile is None and capath is None:
                    import certifi

                    cafile = certifi.where()
                try:
                    self.load_verify_locations(cafile=cafile, capath=capath)
                except (OSError, ValueError) as exc:
                    # Not an OSError from here on: httpcore would call it a connect failure
                    # and name the origin, and retries would follow. The CA file is at fault.
                    where = " and ".join(f"{what} {path}" for what, path in
                                         (("CA file", cafile), ("CA directory", capath)) if path)
                    raise CertificateError(
                        f"cannot load the {where}: {getattr(exc, 'strerror', None) or exc}; "
                        "fix the path (ca_bundle, SSL_CERT_FILE, SSL_CERT_DIR)") from None
                self._loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        """Load the trust store, then as :meth:`ssl.SSLContext.wrap_socket`."""
        self._load_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        """Load the trust store, then as :meth:`ssl.SSLContext.wrap_bio` (TLS via a proxy)."""
        self._load_trust()
        return super().wrap_bio(*args, **kwargs)


def _trust(settings: Settings) -> LazyTrust | bool:
    """What verifies servers: nothing with ``insecure``; else ``ca_bundle``; else (when the
    environment is trusted) ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` together, as OpenSSL and curl
    use them; else certifi."""
    if settings.insecure:
        return False
    if settings.ca_bundle:
        return LazyTrust(cafile=settings.ca_bundle)
    if settings.trust_env:
        cafile = os.environ.get("SSL_CERT_FILE") or None
        capath = os.environ.get("SSL_CERT_DIR") or None
        if cafile or capath:
            return LazyTrust(cafile=cafile, capath=capath)
    return LazyTrust()


def _refuse_downgrade(response: httpx.Response) -> None:
    """A redirect from https to http would hand the rest of the exchange to anyone on the way."""
    if not response.is_redirect or response.url.scheme != "https":
        return
    location = response.headers.get("location", "")
    try:
        target = response.url.join(location)
    except httpx.InvalidURL:
        return  # httpx reports the bad Location itself
    if target.scheme == "http":
        response.close()
        raise RedirectError(
            f"refused a redirect from https to plain http ({redact(str(response.url))} -> "
            f"{redact(str(target))}); set allow_downgrade = true to follow it")


#: The request extension that carries a job's host and request options through redirects
#: (httpx copies a request's extensions into each redirected request).
_JOB = "dltui.job"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def job_request(url: str, options: RequestOptions | None = None) -> dict[str, Any]:
    """Keyword arguments for a request on behalf of a job for ``url``: its request options
    go to the job's own host only, on every hop of a redirect chain."""
    return {"extensions": {_JOB: (_host_port(httpx.URL(url)), options or RequestOptions())}}


def _host_port(url: httpx.URL) -> tuple[str, int | None]:
    return url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme)


def _same_host(home: tuple[str, int | None], url: httpx.URL) -> bool:
    """The job's own host: the same name, on the same port, or upgraded from http:// to
    https:// on the default ports (never the other way: secrets do not go out in clear)."""
    host, port = _host_port(url)
    if host != home[0]:
        return False
    return port == home[1] or (home[1] == 80 and port == 443 and url.scheme == "https")


class Netrc:
    """``~/.netrc`` (or ``$NETRC``) of the host that runs the job, read at first use.

    Only a job with no credentials of its own, asking its own host, uses it (as aria2 and
    wget do). A file that cannot be parsed fails the download with its line, once per run.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._parsed: netrc.netrc | None = None
        self._error: str | None = None

    def login(self, host: str) -> tuple[str, str] | None:
        """(login, password) for ``host`` (or the ``default`` entry), else None."""
        if self.path is None:
            return None
        with self._lock:
            if self._parsed is None and self._error is None:
                try:
                    self._parsed = netrc.netrc(str(self.path))
                except FileNotFoundError:
                    self.path = None
                    return None
                except netrc.NetrcParseError as exc:
                    # Its message quotes the token it choked on, which may be a password.
                    self._error = f"it does not parse at line {exc.lineno}"
                except (OSError, UnicodeDecodeError) as exc:
                    self._error = getattr(exc, "strerror", None) or type(exc).__name__
        if self._error is not None:
            raise CredentialsError(f"cannot read {self.path}: {self._error}; fix the file, or "
                                   "set netrc = false")
        assert self._parsed is not None
        found = self._parsed.authenticators(host)
        if found is None or not found[0]:
            return None
        return found[0], found[2] or ""


def netrc_path(settings: Settings) -> Path | None:
    """The netrc file a client reads: ``$NETRC`` or ``~/.netrc`` (None with ``netrc`` off)."""
    if not settings.netrc:
        return None
    return Path(os.environ.get("NETRC") or "~/.netrc").expanduser()


def _sender(netrc_file: Netrc) -> Any:
    def send_job_options(request: httpx.Request) -> None:
        """Put a job's request options on each request of a redirect chain: secrets on the
        job's own host only (httpx keeps custom headers across hosts), netrc credentials
        when the job has none."""
        job = request.extensions.get(_JOB)
        if job is None:
            return
        home, options = job
        for name, _ in options.headers:  # what a previous hop carried
            request.headers.pop(name, None)
        if options.user_agent:
            request.headers["User-Agent"] = options.user_agent
        if options.referer:
            request.headers["Referer"] = options.referer
        if not _same_host(home, request.url):
            return
        merged: dict[str, str] = {}
        for name, value in options.headers:
            key = name.lower()
            joiner = "; " if key == "cookie" else ", "
            merged[name] = f"{merged[name]}{joiner}{value}" if name in merged else value
        request.headers.update(merged)
        if "authorization" not in request.headers:
            login = netrc_file.login(request.url.host)
            if login is not None:
                token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode("ascii")
                request.headers["Authorization"] = f"Basic {token}"
    return send_job_options


def _header_deadline(timeout: float) -> tuple[Any, Any]:
    """Request and response hooks that bound each hop's whole header block (:mod:`_net`)."""
    def sent(request: httpx.Request) -> None:
        _net.headers_started(request.url.host, timeout)

    def received(response: httpx.Response) -> None:
        _net.headers_done()

    return sent, received


def _sliced_io(client: httpx.Client) -> None:
    """Give every connection pool of ``client`` (its own, and one per proxy from the
    environment) the backend whose waits a stop or a header deadline cuts short. httpx takes
    no backend of its own choosing; httpcore is pinned in constraints.txt."""
    backend = _net.Backend()
    for transport in [client._transport, *client._mounts.values()]:
        if transport is None:  # NO_PROXY: the client's own transport
            continue
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):
            raise RuntimeError("this httpx/httpcore has no pool backend to set; install the "
                               "versions in constraints.txt")
        pool._network_backend = backend


def make_client(settings: Settings, *, connections: int) -> httpx.Client:
    """One client for every worker thread: a shared connection pool, identity encoding."""
    sent, received = _header_deadline(settings.header_timeout)
    client = httpx.Client(
        event_hooks={"request": [_sender(Netrc(netrc_path(settings))), sent],
                     "response": [received] if settings.allow_downgrade
                     else [received, _refuse_downgrade]},
        verify=_trust(settings),
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=None,
        ),
        limits=httpx.Limits(
            max_connections=max(connections, 1),
            max_keepalive_connections=max(connections, 1),
        ),
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        # Raw bytes on disk: the SHA-256 and byte offsets must describe what the server stores.
        headers={
            "User-Agent": settings.user_agent or f"dltui/{__version__}",
            "Accept-Encoding": "identity",
        },
        trust_env=settings.trust_env,
    )
    _sliced_io(client)
    return client


#: h11's messages for a response no retry can parse (a garbled status or header line).
_MALFORMED = ("illegal status line", "illegal header line", "no response line",
              "illegal request line", "Invalid", "malformed", "Response status code must")
#: h11's message when a header block outgrows its buffer (16 KiB by default).
_OVERSIZED = "Receive buffer too long"
_MAX_HEADER_BLOCK = 16 << 10


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def proxy_for(client: httpx.Client | None, url: str) -> str | None:
    """The proxy the client sends ``url`` through (from HTTP(S)_PROXY / ALL_PROXY, minus
    NO_PROXY), or None. Only errors use it: to name the proxy when it is the one at fault."""
    if client is None or not client.trust_env:
        return None
    import urllib.request

    host = _host(url)
    if urllib.request.proxy_bypass(host):  # NO_PROXY (on POSIX: the environment only)
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(urlsplit(url).scheme) or proxies.get("all")


@contextmanager
def mapped_errors(url: str, client: httpx.Client | None = None) -> Iterator[None]:
    """Turn httpx exceptions raised inside into DownloadErrors that name the URL (or the proxy
    that ``client`` uses for it, when the connection to the proxy failed)."""
    try:
        try:
            yield
        except httpx.HTTPError:
            _net.headers_done()  # a request that failed leaves no header deadline behind
            raise
    except httpx.TooManyRedirects as exc:
        raise RedirectError(f"too many redirects (a loop?) from {url}: {exc}") from None
    except httpx.TimeoutException as exc:
        kind = type(exc).__name__.replace("Timeout", " timeout").lower()
        raise TransportError(f"{kind} from {_hop(exc, url)}",
                             host_fault=isinstance(exc, httpx.ConnectTimeout)
                             and _at_home(exc, url)) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise DownloadError(f"cannot request {_hop(exc, url)}: {exc}") from None
    except httpx.ConnectError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLCertVerificationError) or \
                "CERTIFICATE_VERIFY_FAILED" in str(exc):
            # No retry can fix a certificate; curl and aria2c fail at once too.
            detail = getattr(cause, "verify_message", None) or str(exc)
            raise CertificateError(
                f"TLS certificate of {_host(url)} not trusted ({detail}); check the server, "
                "or trust its CA through SSL_CERT_FILE / SSL_CERT_DIR") from None
        proxy = proxy_for(client, url)
        if proxy is not None:
            raise TransportError(
                f"cannot connect to proxy {redact(proxy)} (for {_host(url)}): "
                f"{str(exc) or type(exc).__name__}; check HTTP(S)_PROXY and NO_PROXY",
                host_fault=True) from None
        raise TransportError(f"{str(exc) or type(exc).__name__} ({_hop(exc, url)})",
                             host_fault=_at_home(exc, url)) from None
    except httpx.ProxyError as exc:
        raise TransportError(
            f"proxy {redact(proxy_for(client, url) or '?')} refused {_host(url)}: {exc}",
            host_fault=True) from None
    except httpx.RemoteProtocolError as exc:
        detail = str(exc) or type(exc).__name__
        if detail.startswith(_MALFORMED):
            raise ProtocolError(f"malformed response from {_host(url)}: {detail}") from None
        if detail.startswith(_OVERSIZED):
            raise ProtocolError(
                f"response headers from {_host(url)} exceed {_MAX_HEADER_BLOCK >> 10} KiB "
                "without ending; the server is broken or not an HTTP server") from None
        raise TransportError(f"{detail} ({_hop(exc, url)})") from None
    except httpx.TransportError as exc:
        detail = str(exc) or type(exc).__name__
        raise TransportError(f"{detail} ({_hop(exc, url)})") from None


def _at_home(exc: Exception, url: str) -> bool:
    """True when the request that failed went to ``url``'s own host: a redirect target that
    cannot be reached says nothing about the host the job asked."""
    try:
        hop = exc.request.url.host if isinstance(exc, httpx.RequestError) else None
    except RuntimeError:  # raised before a request existed
        return True
    return hop is None or hop == _host(url)


def _hop(exc: Exception, url: str) -> str:
    """The URL of the request that failed (a redirect's later hop), the asked one beside."""
    try:
        hop = str(exc.request.url) if isinstance(exc, httpx.RequestError) else url
    except RuntimeError:  # raised before a request existed
        return url
    return hop if hop == url else f"{hop} (redirected from {url})"
