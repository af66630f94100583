"""Operator input, parsed and validated in one place, into one request type.

`dltui add` arguments, ``-i`` input files and the TUI's add form all become
:class:`DownloadRequest` values here, with the same checks and the same one-line errors; the
ledger adds only validated requests.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dltui import names
from dltui.errors import InvalidDigest, UsageError
from dltui.model import RequestOptions
from dltui.urls import canonical_url

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Options an ``-i`` line may set (aria2's names); ``header`` may repeat.
INPUT_OPTIONS = ("dir", "out", "checksum", "header", "referer", "user-agent", "load-cookies",
                 "http-user", "http-passwd")


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
    #: Headers, cookies and credentials to send (secrets), referer and user agent.
    options: RequestOptions = field(default_factory=RequestOptions)
    #: The fleet host that must run it (``add --host``); None: any host.
    host: str | None = None


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers dltui sets itself: an operator's value would break resume, segments or the bytes.
_RESERVED = {"range": "resume and segments", "if-range": "resume",
             "accept-encoding": "the bytes on disk must be the server's",
             "host": "the URL", "content-length": "the request", "transfer-encoding": "the request",
             "connection": "connection reuse", "te": "the request", "upgrade": "the request",
             "expect": "the request"}


@dataclass(frozen=True, slots=True)
class Cookie:
    """One line of a Netscape cookies file (as curl, wget and browsers' exporters write)."""

    domain: str
    subdomains: bool
    path: str
    secure: bool
    expires: int  #: epoch seconds; 0 for a session cookie
    name: str
    value: str

    def matches(self, url: str, at: float) -> bool:
        """Whether a browser would send this cookie with a request for ``url``."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        domain = self.domain.lstrip(".").lower()
        if host != domain and not ((self.subdomains or self.domain.startswith("."))
                                   and host.endswith("." + domain)):
            return False
        path = parts.path or "/"
        if not (path == self.path or path.startswith(self.path.rstrip("/") + "/")
                or self.path == "/"):
            return False
        if self.secure and parts.scheme != "https":
            return False
        return self.expires == 0 or self.expires > at


def parse_cookies(text: str, source: str) -> tuple[Cookie, ...]:
    """A Netscape cookies file (``#HttpOnly_`` lines included); errors name the line."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r\n")
        if line.startswith("#HttpOnly_"):
            line = line[len("#HttpOnly_"):]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) == 6:  # some exporters leave an empty value off
            cells.append("")
        if len(cells) != 7:
            raise UsageError(f"{source}:{lineno}: not a Netscape cookie line (7 tab-separated "
                             "fields: domain, subdomains, path, secure, expiry, name, value)")
        domain, subdomains, path, secure, expires, name, value = cells
        try:
            expiry = int(expires or 0)
        except ValueError:
            raise UsageError(f"{source}:{lineno}: cookie expiry {expires!r} is not a number "
                             "of seconds") from None
        if not domain or not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n;\x00"):
            raise UsageError(f"{source}:{lineno}: cookie line has an empty domain or a bad "
                             "name or value")
        if value and not _FIELD_VALUE.fullmatch(value):
            raise UsageError(f"{source}:{lineno}: cookie {name} holds characters HTTP cannot "
                             "send (only printable ASCII); the value is not shown")
        found.append(Cookie(domain, subdomains.upper() == "TRUE", path or "/",
                            secure.upper() == "TRUE", expiry, name, value))
    return tuple(found)


def read_cookies(path_text: str, *, what: str = "--cookies") -> tuple[Cookie, ...]:
    """The cookies file at ``path_text``; a missing or unreadable one is a UsageError."""
    path = Path(path_text).expanduser()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"{what} {path_text}: cannot read it ({exc.strerror or exc}); give a "
                         "Netscape cookies file, as curl -c or a browser export writes") from None
    return parse_cookies(text, str(path))


def check_host_name(text: str, *, what: str = "--host") -> str:
    """A fleet host's name as ``host_name`` gives it: plain text, no ``:``."""
    name = text.strip()
    if not name or len(name) > 64 or any(c in name for c in ":\x00\r\n"):
        raise UsageError(f"{what} {text!r}: give a plain host name, as the fleet's host_name "
                         "settings are (no ':', at most 64 characters)")
    return name


#: What a header value may hold and httpx can send: printable ASCII, spaces and tabs.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


def check_header(text: str, *, what: str = "-H") -> tuple[str, str]:
    """``Name: value`` as (name, value), or UsageError naming the problem."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    # Never echo the value: it is what a header carries secrets in.
    if not sep:
        raise UsageError(f"{what}: give a header as 'Name: value' (what was given is not "
                         "shown: it may be a secret)")
    if not _TOKEN.fullmatch(name):
        raise UsageError(f"{what} {name!r}: not a header name (letters, digits and "
                         "!#$%&'*+-.^_`|~, no spaces); give 'Name: value'")
    if not value:
        raise UsageError(f"{what} {name}: no value; give 'Name: value'")
    if any(c in value for c in "\r\n\x00"):
        raise UsageError(f"{what} {name}: the value contains a line break or NUL byte")
    if not _FIELD_VALUE.fullmatch(value):
        raise UsageError(f"{what} {name}: the value holds characters HTTP cannot send (only "
                         "printable ASCII); percent-encode them (the value is not shown)")
    if name.lower() in _RESERVED:
        raise UsageError(f"{what} {name}: dltui sets this header itself "
                         f"({_RESERVED[name.lower()]}); leave it out")
    return name, value


def basic_auth(user: str, password: str | None, *, what: str = "--user") -> tuple[str, str]:
    """The ``Authorization`` header for ``user`` and ``password`` (HTTP Basic)."""
    if not user or any(c in user + (password or "") for c in "\r\n\x00"):
        raise UsageError(f"{what}: give USER[:PASSWORD] without line breaks")
    token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
    return "Authorization", f"Basic {token}"


def _check_text(value: str, what: str) -> str:
    value = value.strip()
    if not value or any(c in value for c in "\r\n\x00"):
        raise UsageError(f"{what} {value!r}: give one line of text")
    return value


@dataclass(frozen=True, slots=True)
class RequestDefaults:
    """Request options given once for many URLs: the command's flags, or one ``-i`` entry's
    lines on top of them. Cookies are matched to each URL as a browser would."""

    headers: tuple[tuple[str, str], ...] = ()
    referer: str | None = None
    user_agent: str | None = None
    cookies: tuple[Cookie, ...] = ()

    @classmethod
    def parse(cls, headers: Iterable[str] = (), *, user: str | None = None,
              password: str | None = None, cookies: tuple[Cookie, ...] = (),
              referer: str | None = None, user_agent: str | None = None,
              base: RequestDefaults | None = None, what: str = "") -> RequestDefaults:
        """Checked options (``user`` is ``USER[:PASS]``, or the user when ``password`` is
        given); ``base`` supplies what is not given here (headers add up)."""
        base = base or cls()
        pairs = list(base.headers)
        for text in headers:
            name, value = check_header(text, what=what or "-H")
            if name.lower() == "user-agent":
                user_agent = value
            elif name.lower() == "referer":
                referer = value
            else:
                pairs.append((name, value))
        if user is not None:
            name, _, given = user.partition(":")
            auth = basic_auth(name, password if password is not None else given,
                              what=what or "--user")
            if any(n.lower() == "authorization" for n, _ in pairs
                   if (n, _) not in base.headers):
                raise UsageError(f"{what or '--user'}: give --user or an Authorization "
                                 "header, not both")
            pairs = [p for p in pairs if p[0].lower() != "authorization"] + [auth]
        return cls(
            headers=tuple(pairs),
            referer=_check_text(referer, what or "--referer") if referer is not None
            else base.referer,
            user_agent=_check_text(user_agent, what or "--user-agent")
            if user_agent is not None else base.user_agent,
            cookies=base.cookies + cookies,
        )

    def for_url(self, url: str, *, at: float | None = None) -> RequestOptions:
        """What a job for ``url`` sends: the headers, the cookies that match it (as one
        ``Cookie`` header, after any given with -H), referer and user agent."""
        at = time.time() if at is None else at
        headers = list(self.headers)
        jar = "; ".join(f"{c.name}={c.value}" for c in self.cookies if c.matches(url, at))
        if jar:
            headers.append(("Cookie", jar))
        return RequestOptions(headers=tuple(headers), referer=self.referer,
                              user_agent=self.user_agent)


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
    # One spelling per directory (`a/../b`, `./b` and `b/` are `b`): it is part of a job's
    # identity, and two spellings would make two jobs and a `name (1)` file. Symlinks stay.
    path = Path(os.path.normpath(path))
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
                   checksum: str | None = None,
                   sent: RequestDefaults | None = None) -> list[DownloadRequest]:
    """`dltui add URL… [-d DIR] [-o NAME] [--sha256 HEX | --checksum ALGO=HEX] [-i FILE]`
    with request options ``sent`` (headers, cookies, credentials); ``input_file`` is the
    file's name and text."""
    if sha256 is not None and checksum is not None:
        raise UsageError("give --sha256 or --checksum, not both")
    sent = sent or RequestDefaults()
    dest = destination(directory)
    urls = list(urls)
    found = [dataclasses.replace(
        with_checksum(request(u, dest, name, sha256), checksum, what="--checksum"),
        options=sent.for_url(u)) for u in urls]
    if input_file is not None:
        found += from_input_file(input_file[1], input_file[0], dest, sent=sent)
    if not found:
        raise UsageError("no URLs given; pass URLs or -i FILE")
    digest = sha256 if checksum is None else checksum
    _single(len(found), name, digest, name_option="--name",
            digest_option="--sha256" if checksum is None else "--checksum",
            hint="; use out=/checksum= lines in an -i file instead")
    return found


def from_input_file(text: str, source: str, default_dir: Path, *,
                    sent: RequestDefaults | None = None) -> list[DownloadRequest]:
    """URLs one per line (``#`` comments); aria2-style indented ``option=value`` lines
    (:data:`INPUT_OPTIONS`) set options for the URL above, on top of the command's ``sent``.
    Errors name the file and line."""
    entries: list[dict[str, str]] = []
    headers: list[list[tuple[str, str]]] = []  # each entry's header= lines, with where
    # A file saved by a Windows editor starts with a byte order mark: not part of the URL.
    text = text.removeprefix("\ufeff")
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        if line[0] not in " \t":
            entries.append({"url": stripped, "line": where})
            headers.append([])
            continue
        key, sep, value = stripped.partition("=")
        key, value = key.strip(), value.strip()
        if not entries:
            raise UsageError(f"{where}: option line before any URL")
        if not sep or key not in INPUT_OPTIONS:
            raise UsageError(f"{where}: unknown option {key!r}; known options: "
                             f"{', '.join(k + '=' for k in INPUT_OPTIONS)}")
        if key == "dir" and not value:
            raise UsageError(f"{where}: dir= is empty; give a directory, or leave the line out "
                             "to use the default")
        if "\x00" in value:
            raise UsageError(f"{where}: {key}= contains a NUL byte")
        if key == "header":
            headers[-1].append((value, where))
            continue
        if key in entries[-1]:
            raise UsageError(f"{where}: {key}= is given twice for the same URL")
        entries[-1][key] = value
        entries[-1][f"line:{key}"] = where
    found = []
    base = sent or RequestDefaults()
    for entry, entry_headers in zip(entries, headers, strict=True):
        try:
            req = request(entry["url"], destination(entry.get("dir"), base=Path.cwd())
                          if "dir" in entry else default_dir, entry.get("out"))
        except UsageError as exc:
            raise type(exc)(f"{entry['line']}: {exc}") from None
        try:
            req = with_checksum(req, entry.get("checksum"), what="checksum=")
        except UsageError as exc:
            raise type(exc)(f"{entry['line:checksum']}: {exc}") from None
        found.append(dataclasses.replace(
            req, options=_entry_defaults(entry, entry_headers, base).for_url(req.url)))
    return found


def _entry_defaults(entry: dict[str, str], headers: list[tuple[str, str]],
                    base: RequestDefaults) -> RequestDefaults:
    """One ``-i`` entry's request options on top of the command's; errors name the line."""
    sent = base
    for text, where in headers:
        try:
            sent = RequestDefaults.parse([text], base=sent, what="header=")
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
    for key in ("referer", "user-agent", "load-cookies", "http-user", "http-passwd"):
        if key not in entry:
            continue
        where, value = entry[f"line:{key}"], entry[key]
        try:
            if key == "referer":
                sent = RequestDefaults.parse(referer=value, base=sent, what="referer=")
            elif key == "user-agent":
                sent = RequestDefaults.parse(user_agent=value, base=sent, what="user-agent=")
            elif key == "load-cookies":
                sent = RequestDefaults.parse(cookies=read_cookies(value, what="load-cookies="),
                                             base=sent)
            elif key == "http-user":
                sent = RequestDefaults.parse(user=value, password=entry.get("http-passwd", ""),
                                             base=sent, what="http-user=")
            elif "http-user" not in entry:
                raise UsageError("http-passwd= needs an http-user= line for the same URL")
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
    return sent


def from_form(urls_text: str, directory: str, name: str, digest: str,
              headers_text: str = "") -> list[DownloadRequest]:
    """The TUI's add form: URLs one per line, a directory, an optional name and digest, and
    headers (``Name: value``, one per line)."""
    urls = [line.strip() for line in urls_text.splitlines()
            if line.strip() and not line.strip().startswith("#")]
    if not urls:
        raise UsageError("no URLs given; paste one URL per line")
    name_value, digest_value = name.strip() or None, digest.strip() or None
    _single(len(urls), name_value, digest_value, name_option="a name",
            digest_option="a SHA-256", hint="")
    dest = destination(directory.strip() or None)
    sent = RequestDefaults.parse([line for line in headers_text.splitlines() if line.strip()],
                                 what="header")
    return [dataclasses.replace(request(u, dest, name_value, digest_value),
                                options=sent.for_url(u)) for u in urls]
