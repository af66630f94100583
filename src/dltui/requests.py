"""Operator input, parsed and validated in one place, into one request type.

`dltui add` arguments, ``-i`` input files and the TUI's add form all become
:class:`DownloadRequest` values here, with the same checks and the same one-line errors; the
ledger adds only validated requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dltui import names
from dltui.errors import InvalidDigest, UsageError
from dltui.urls import canonical_url

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Options an ``-i`` line may set (aria2's names).
INPUT_OPTIONS = ("dir", "out", "checksum")


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    """One download an operator asked for, checked: what the ledger adds as a job."""

    url: str  #: as given (stripped): what is requested
    canonical_url: str  #: the form idempotency keys use
    dest_dir: Path  #: absolute
    name: str | None = None  #: a plain file name, else the server's or the URL's
    sha256: str | None = None  #: lower-case hex, when the bytes are known in advance


def check_sha256(text: str, *, what: str = "--sha256") -> str:
    """Lower-cased digest, or InvalidDigest naming the problem."""
    value = text.strip().lower()
    if value.startswith("sha256:") or value.startswith("sha-256="):
        value = value.split(":", 1)[-1].split("=", 1)[-1]
    if not _SHA256.fullmatch(value):
        raise InvalidDigest(f"{what} {text!r} is not a SHA-256 digest; give 64 hexadecimal "
                            "digits")
    return value


def _usable_dir(text: str, *, base: Path | None) -> Path:
    """``text`` as a directory path: no NUL, not an existing non-directory; a relative one is
    taken from ``base``, or refused when there is none."""
    if "\x00" in text:
        raise UsageError(f"destination directory {text!r} contains a NUL byte")
    path = Path(text or ".").expanduser()
    if not path.is_absolute():
        if base is None:
            raise UsageError(f"destination directory {text!r} must be an absolute path")
        path = base / path
    if path.exists() and not path.is_dir():
        raise UsageError(f"destination {str(path)!r} exists and is not a directory; pick "
                         "another directory")
    return path


def destination(directory: str | Path | None, *, base: Path | None = None) -> Path:
    """An absolute destination directory (``~`` expanded, relative to ``base`` or the cwd)."""
    return _usable_dir("" if directory is None else str(directory),
                       base=base if base is not None else Path.cwd())


def request(url: str, dest_dir: str | Path, name: str | None = None,
            sha256: str | None = None) -> DownloadRequest:
    """One checked request (``dest_dir`` absolute); UsageError (exit 2) names what is wrong."""
    return DownloadRequest(
        url=url.strip(), canonical_url=canonical_url(url),
        dest_dir=_usable_dir(str(dest_dir), base=None),
        name=names.check_requested(name) if name is not None else None,
        sha256=check_sha256(sha256) if sha256 is not None else None,
    )


def _single(count: int, name: str | None, sha256: str | None, *, name_option: str,
            digest_option: str, hint: str) -> None:
    if count > 1 and (name or sha256):
        option = name_option if name else digest_option
        raise UsageError(f"{option} applies to a single URL, but {count} were given{hint}")


def from_arguments(urls: Iterable[str], directory: str | None, name: str | None,
                   sha256: str | None, *, input_file: tuple[str, str] | None = None
                   ) -> list[DownloadRequest]:
    """`dltui add URL… [-d DIR] [-o NAME] [--sha256 HEX] [-i FILE]`; ``input_file`` is the
    file's name and text."""
    dest = destination(directory)
    urls = list(urls)
    found = [request(u, dest, name, sha256) for u in urls]
    if input_file is not None:
        found += from_input_file(input_file[1], input_file[0], dest)
    if not found:
        raise UsageError("no URLs given; pass URLs or -i FILE")
    _single(len(found), name, sha256, name_option="--name", digest_option="--sha256",
            hint="; use out=/checksum= lines in an -i file instead")
    return found


def from_input_file(text: str, source: str, default_dir: Path) -> list[DownloadRequest]:
    """URLs one per line (``#`` comments); aria2-style indented ``dir=``/``out=``/``checksum=``
    lines set options for the URL above. Errors name the file and line."""
    entries: list[dict[str, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        if line[0] not in " \t":
            entries.append({"url": stripped, "line": where})
            continue
        key, sep, value = stripped.partition("=")
        key, value = key.strip(), value.strip()
        if not entries:
            raise UsageError(f"{where}: option line before any URL")
        if not sep or key not in INPUT_OPTIONS:
            raise UsageError(f"{where}: unknown option {stripped!r}; use "
                             f"{', '.join(k + '=' for k in INPUT_OPTIONS)}")
        if key == "dir" and not value:
            raise UsageError(f"{where}: dir= is empty; give a directory, or leave the line out "
                             "to use the default")
        if "\x00" in value:
            raise UsageError(f"{where}: {key}= contains a NUL byte")
        entries[-1][key] = value
    found = []
    for entry in entries:
        checksum = entry.get("checksum")
        if checksum is not None and not checksum.lower().startswith(("sha-256=", "sha256=")):
            raise UsageError(f"{entry['line']}: checksum must be sha-256=<64 hex digits>")
        try:
            found.append(request(
                entry["url"], destination(entry.get("dir"), base=Path.cwd())
                if "dir" in entry else default_dir,
                entry.get("out"), checksum.split("=", 1)[1] if checksum else None))
        except UsageError as exc:
            raise type(exc)(f"{entry['line']}: {exc}") from None
    return found


def from_form(urls_text: str, directory: str, name: str, digest: str) -> list[DownloadRequest]:
    """The TUI's add form: URLs one per line, a directory, an optional name and digest."""
    urls = [line.strip() for line in urls_text.splitlines()
            if line.strip() and not line.strip().startswith("#")]
    if not urls:
        raise UsageError("no URLs given; paste one URL per line")
    name_value, digest_value = name.strip() or None, digest.strip() or None
    _single(len(urls), name_value, digest_value, name_option="a name",
            digest_option="a SHA-256", hint="")
    dest = destination(directory.strip() or None)
    return [request(u, dest, name_value, digest_value) for u in urls]
