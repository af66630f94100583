"""The shared httpx client and the mapping of httpx exceptions onto dltui's error tree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from dltui import __version__
from dltui.config import Settings
from dltui.errors import DownloadError, RedirectError, TransportError


def make_client(settings: Settings, *, connections: int) -> httpx.Client:
    """One client for every worker thread: a shared connection pool, identity encoding."""
    return httpx.Client(
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


@contextmanager
def mapped_errors(url: str) -> Iterator[None]:
    """Turn httpx exceptions raised inside into DownloadErrors that name the URL."""
    try:
        yield
    except httpx.TooManyRedirects as exc:
        raise RedirectError(f"too many redirects (a loop?) from {url}: {exc}") from None
    except httpx.TimeoutException as exc:
        kind = type(exc).__name__.replace("Timeout", " timeout").lower()
        raise TransportError(f"{kind} from {url}") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise DownloadError(f"cannot request {url}: {exc}") from None
    except httpx.TransportError as exc:
        detail = str(exc) or type(exc).__name__
        raise TransportError(f"{detail} ({url})") from None
