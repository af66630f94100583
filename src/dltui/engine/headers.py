"""Pure parsers for the response headers the engine relies on."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit

from dltui.model import ServerValidators

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)
_EXT_VALUE = re.compile(r"^([\w!#$%&+^`{}~-]+)'[^']*'(.*)$")


def _params(value: str) -> dict[str, str]:
    """``attachment; filename="a;b.txt"; x=1`` -> {"filename": "a;b.txt", "x": "1"}."""
    out: dict[str, str] = {}
    i, n = value.find(";"), len(value)
    if i < 0:
        return out
    i += 1
    while i < n:
        while i < n and value[i] in " \t;":
            i += 1
        eq = value.find("=", i)
        if eq < 0:
            break
        key = value[i:eq].strip().lower()
        i = eq + 1
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] == '"':
            i += 1
            buf = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(value[i])
                i += 1
            i += 1
            val = "".join(buf)
        else:
            end = value.find(";", i)
            end = n if end < 0 else end
            val = value[i:end].strip()
            i = end
        out.setdefault(key, val)
    return out


def filename_from_disposition(value: str | None) -> str | None:
    """The raw (unsanitised) file name from Content-Disposition; ``filename*`` wins."""
    if not value:
        return None
    params = _params(value)
    ext = params.get("filename*")
    if ext:
        m = _EXT_VALUE.match(ext)
        if m:
            charset = m.group(1).lower()
            try:
                codecs.lookup(charset)  # unquote only decodes when there are escapes
                return unquote(m.group(2), encoding=charset, errors="strict")
            except (LookupError, UnicodeDecodeError):
                pass
    name = params.get("filename")
    return name or None


def filename_from_url(url: str) -> str | None:
    """The last path segment of a URL, percent-decoded."""
    path = urlsplit(url).path
    tail = path.rsplit("/", 1)[-1]
    return unquote(tail) or None


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """``bytes 0-99/1000`` -> (0, 99, 1000); ``bytes */1000`` -> (None, None, 1000)."""
    if not value:
        return None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None
    start = int(m.group(1)) if m.group(1) is not None else None
    end = int(m.group(2)) if m.group(2) is not None else None
    total = None if m.group(3) == "*" else int(m.group(3))
    if start is not None and end is not None and end < start:
        return None
    return start, end, total


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After of delta-seconds or an HTTP date (never negative)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def validators_from(headers: Mapping[str, str], *, status: int = 200) -> ServerValidators:
    """Validators from a HEAD/GET response; a 206's length is the Content-Range total."""
    ranges_header = headers.get("accept-ranges")
    accept: bool | None = None
    if ranges_header is not None:
        accept = ranges_header.strip().lower() == "bytes"
    length: int | None
    if status == 206:
        parsed = parse_content_range(headers.get("content-range"))
        length = parsed[2] if parsed else None
        accept = True
    else:
        length = _int(headers.get("content-length"))
    return ServerValidators(
        etag=(headers.get("etag") or "").strip() or None,
        last_modified=(headers.get("last-modified") or "").strip() or None,
        length=length,
        accept_ranges=accept,
    )
