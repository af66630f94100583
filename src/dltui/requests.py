"""Operator input, parsed and validated in one place, into one request type.

`dltui add` arguments, ``-i`` input files and the TUI's add form all become
:class:`DownloadRequest` values here, with the same checks and the same one-line errors; the
ledger adds only validated requests.
"""

from __future__ import annotations

import dataclasses
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
    #: Another expected digest, ``algo=hex`` (md5, sha-1, sha-224, sha-384, sha-512).
    checksum: str | None = None


#: aria2's checksum names and their hex lengths.
CHECKSUM_ALGOS = {"md5": 32, "sha-1": 40, "sha-224": 56, "sha-256": 64, "sha-384": 96,
                  "sha-512": 128}


def check_checksum(text: str, *, what: str = "--checksum") -> tuple[str, str]:
    """aria2's ``ALGO=HEX`` as (algo, lower-case hex), or InvalidDigest naming the problem."""
    algo, sep, value = text.strip().partition("=")
    algo = algo.strip().lower().replace("sha256", "sha-256").replace("sha1", "sha-1") \
        .replace("sha512", "sha-512")
    if not sep or algo not in CHECKSUM_ALGOS:
        raise InvalidDigest(f"{what} {text!r}: use ALGO=HEX with ALGO one of "
                            f"{', '.join(CHECKSUM_ALGOS)}")
    value = value.strip().lower()
    if len(value) != CHECKSUM_ALGOS[algo] or not re.fullmatch(r"[0-9a-f]+", value):
        raise InvalidDigest(f"{what} {text!r} is not a {algo} digest; give "
                            f"{CHECKSUM_ALGOS[algo]} hexadecimal digits")
    return algo, value


def with_checksum(req: DownloadRequest, text: str | None, *, what: str) -> DownloadRequest:
    """``req`` expecting the digest ``text`` (``ALGO=HEX``; sha-256 goes to ``sha256``)."""
    if text is None:
        return req
    algo, value = check_checksum(text, what=what)
    if algo == "sha-256":
        return dataclasses.replace(req, sha256=value)
    return dataclasses.replace(req, checksum=f"{algo}={value}")


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
                   sha256: str | None, *, input_file: tuple[str, str] | None = None,
                   checksum: str | None = None) -> list[DownloadRequest]:
    """`dltui add URL… [-d DIR] [-o NAME] [--sha256 HEX | --checksum ALGO=HEX] [-i FILE]`;
    ``input_file`` is the file's name and text."""
    if sha256 is not None and checksum is not None:
        raise UsageError("give --sha256 or --checksum, not both")
    dest = destination(directory)
    urls = list(urls)
    found = [with_checksum(request(u, dest, name, sha256), checksum, what="--checksum")
             for u in urls]
    if input_file is not None:
        found += from_input_file(input_file[1], input_file[0], dest)
    if not found:
        raise UsageError("no URLs given; pass URLs or -i FILE")
    digest = sha256 if checksum is None else checksum
    _single(len(found), name, digest, name_option="--name",
            digest_option="--sha256" if checksum is None else "--checksum",
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
        entries[-1][f"line:{key}"] = where
    found = []
    for entry in entries:
        try:
            req = request(entry["url"], destination(entry.get("dir"), base=Path.cwd())
                          if "dir" in entry else default_dir, entry.get("out"))
        except UsageError as exc:
            raise type(exc)(f"{entry['line']}: {exc}") from None
        try:
            found.append(with_checksum(req, entry.get("checksum"), what="checksum="))
        except UsageError as exc:
            raise type(exc)(f"{entry['line:checksum']}: {exc}") from None
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
