"""Safe file names: nothing a server or operator supplies may write outside the destination."""

from __future__ import annotations

import re
import unicodedata

from dltui.errors import InvalidName

MAX_NAME_BYTES = 255
FALLBACK_NAME = "download"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
#: Dropped from every name: C0 and C1 controls, and the bidi controls that make a name read
#: differently than it is (``evil\u202egpj.exe`` shows as ``evilexe.jpg``).
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Names Windows refuses are harmless on POSIX, but files travel; avoid surprises.
_RESERVED_STEMS = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                   *(f"lpt{i}" for i in range(1, 10))}


def cut_bytes(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` UTF-8 bytes, at a character boundary."""
    return name.encode()[:limit].decode("utf-8", errors="ignore")


def _truncate_utf8(name: str, limit: int) -> str:
    """Cut to ``limit`` UTF-8 bytes at a character boundary, keeping a short extension."""
    if len(name.encode()) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and 0 < len(ext.encode()) <= 16 and stem:
        room = limit - len(ext.encode()) - 1
        return _truncate_utf8(stem, room) + "." + ext
    data = name.encode()[:limit]
    return data.decode("utf-8", errors="ignore")


def sanitize(raw: str | None, fallback: str = FALLBACK_NAME) -> str:
    """Turn any server-supplied name into a plain file name (never empty, ``.`` or ``..``)."""
    if not raw:
        return fallback
    name = unicodedata.normalize("NFC", raw)
    # Keep only the last path component, whichever separator the server used.
    name = re.split(r"[/\\]", name)[-1]
    name = _INVISIBLE.sub("", name)
    name = _UNSAFE.sub("_", name).strip().strip(".")
    if not name:
        return fallback
    if name.split(".", 1)[0].lower() in _RESERVED_STEMS:
        name = "_" + name
    return _truncate_utf8(name, MAX_NAME_BYTES) or fallback


def check_requested(name: str) -> str:
    """Validate an operator's ``--name``: refuse rather than silently rewrite it."""
    if not name or not name.strip():
        raise InvalidName("--name is empty; give a file name such as 'file.iso'")
    if "/" in name or "\\" in name:
        raise InvalidName(
            f"--name must be a plain file name, not a path: {name!r}; put the directory in --dir"
        )
    if name in (".", ".."):
        raise InvalidName(f"--name {name!r} is not a file name")
    if _UNSAFE.search(name) or _INVISIBLE.search(name):
        raise InvalidName(f"--name {name!r} contains control or bidi characters; remove them")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidName(f"--name is {len(name.encode())} bytes long; the limit is 255")
    return name


def numbered(name: str, n: int) -> str:
    """``file.iso`` -> ``file (n).iso``, still within the byte limit."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    suffix = f" ({n})" + (f".{ext}" if ext else "")
    return _truncate_utf8(stem, MAX_NAME_BYTES - len(suffix.encode())) + suffix
