"""URL validation and canonical form, so one resource always maps to one idempotency key."""

from __future__ import annotations

import ipaddress
import re
import string
from urllib.parse import parse_qsl, urlsplit

from dltui.errors import InvalidURL

SUPPORTED_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# Reserved characters keep their meaning in place, so they are never decoded or encoded.
_RESERVED = frozenset(":/?#[]@!$&'()*+,;=")
_HEX = frozenset(string.hexdigits)
_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + "-._~")
# Text with no '%' and nothing to escape is already normal: the common case, kept cheap.
_PLAIN = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]*")
_IP_CHARS = re.compile(r"[0-9a-f.:]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _normalise_pct(text: str) -> str:
    """Uppercase escapes, decode escaped unreserved bytes, escape what must not appear raw."""
    if _PLAIN.fullmatch(text):
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            byte = int(text[i + 1 : i + 3], 16)
            decoded = chr(byte)
            out.append(decoded if decoded in _UNRESERVED else f"%{byte:02X}")
            i += 3
            continue
        if ch in _UNRESERVED or ch in _RESERVED:
            out.append(ch)
        else:
            # A lone '%', a space, a non-ASCII letter: escape its UTF-8 bytes.
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    inp = path
    out: list[str] = []
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = "/" + inp[3:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = "/" + inp[4:]
            if out:
                out.pop()
        elif inp == "/..":
            inp = "/"
            if out:
                out.pop()
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            cut = inp.find("/", start)
            if cut == -1:
                cut = len(inp)
            out.append(inp[:cut])
            inp = inp[cut:]
    return "".join(out)


def _canonical_host(raw_host: str, url: str) -> str:
    host = raw_host.lower()
    # Only names of digits, dots and colons can be IP literals; skip the costly parse otherwise.
    if _IP_CHARS.fullmatch(host):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURL(f"invalid host name {raw_host!r} in {url!r}: {exc}") from None
    if not host or not set(host) <= _HOST_CHARS:
        raise InvalidURL(f"invalid host name {raw_host!r} in {url!r}")
    _check_labels(host, raw_host, url)
    return host


def _check_labels(host: str, raw_host: str, url: str) -> None:
    """DNS rules a resolver would refuse later: empty or long labels, edge hyphens, bad IDNA."""
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253:
        raise InvalidURL(f"host name in {url!r} is longer than 253 characters")
    for label in name.split("."):
        problem = None
        if not label:
            problem = "has an empty label (two dots in a row?)"
        elif len(label) > 63:
            problem = f"has a label of {len(label)} characters (the limit is 63)"
        elif label.startswith("-") or label.endswith("-"):
            problem = f"has a label {label!r} that starts or ends with '-'"
        elif label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                problem = f"has a label {label!r} that is not valid IDNA punycode"
        if problem:
            raise InvalidURL(f"invalid host name {raw_host!r} in {url!r}: it {problem}")


def canonical_url(url: str) -> str:
    """Return the canonical form of an http(s) URL or raise :class:`InvalidURL`.

    Lower-cases scheme and host, converts IDN hosts to punycode, drops the default port and the
    fragment, removes dot segments and normalises percent-encoding.
    """
    text = url.strip()
    if not text:
        raise InvalidURL("empty URL; give an http:// or https:// URL")
    if _CONTROL.search(text):
        raise InvalidURL(f"URL {text!r} contains control characters; remove them")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A command-line argument with a byte that is not UTF-8 arrives as a lone surrogate.
        shown = text.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        raise InvalidURL(f"URL {shown!r} contains bytes that are not UTF-8; "
                         "percent-encode them (%XX)") from None
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidURL(f"malformed URL {text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme or "://" not in text:
        raise InvalidURL(f"URL {text!r} has no scheme; write it as http://… or https://…")
    if scheme not in SUPPORTED_SCHEMES:
        raise InvalidURL(
            f"unsupported scheme '{scheme}:' in {text!r}; dltui downloads http:// and https:// URLs"
        )
    if not parts.hostname:
        raise InvalidURL(f"URL {text!r} has no host; write it as {scheme}://host/path")
    bad_port = f"URL {text!r} has an invalid port; use a number from 1 to 65535"
    try:
        port = parts.port
    except ValueError:
        raise InvalidURL(bad_port) from None
    if port == 0:
        raise InvalidURL(bad_port)
    host = _canonical_host(parts.hostname, text)
    userinfo = ""
    if "@" in parts.netloc:
        userinfo = _normalise_pct(parts.netloc.rsplit("@", 1)[0]) + "@"
    netloc = userinfo + host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = _remove_dot_segments(_normalise_pct(parts.path)) or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = _normalise_pct(parts.query)
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


# -- secrets -------------------------------------------------------------------------------------
#: Query parameters whose values are credentials (compared case-insensitively). The one list:
#: everything that prints, logs or stores a URL masks these and the user info through
#: :func:`redact`.
SECRET_PARAMS: frozenset[str] = frozenset({
    "token", "access_token", "refresh_token", "id_token", "auth", "auth_token", "authorization",
    "sig", "signature", "key", "api_key", "apikey", "api-key", "secret", "client_secret",
    "password", "passwd", "pwd", "pass", "session", "sessionid", "session_id", "sid",
    "credential", "credentials", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "x-goog-signature", "x-goog-credential", "googleaccessid",
})
MASK = "***"
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>\\]+", re.IGNORECASE)


def _mask_query(query: str) -> str:
    out = []
    for pair in query.split("&"):
        name, sep, _value = pair.partition("=")
        if sep and name.lower() in SECRET_PARAMS:
            out.append(f"{name}={MASK}")
        else:
            out.append(pair)
    return "&".join(out)


def redact(url: str) -> str:
    """``url`` with user info and credential-like query values shown as ``***``.

    Never raises: text that is not a URL comes back with only what can be recognised masked.
    """
    scheme_end = url.find("://")
    if scheme_end < 0:
        return url
    start = scheme_end + 3
    end = len(url)
    for sep in "/?#":
        pos = url.find(sep, start)
        if pos >= 0:
            end = min(end, pos)
    authority = url[start:end]
    if "@" in authority:
        authority = MASK + "@" + authority.rsplit("@", 1)[1]
    rest = url[end:]
    q = rest.find("?")
    if q >= 0:
        frag = rest.find("#", q)
        query = rest[q + 1:] if frag < 0 else rest[q + 1:frag]
        tail = "" if frag < 0 else rest[frag:]
        rest = rest[:q + 1] + _mask_query(query) + tail
    return url[:start] + authority + rest


def redact_text(text: str) -> str:
    """Every http(s) URL inside ``text`` passed through :func:`redact`."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


#: Query parameters that sign a URL for one method (AWS SigV4 and SigV2, Google Cloud
#: Storage V4 and V2): a HEAD of such a URL can never pass, since the method is signed.
_SIGNING = (frozenset({"x-amz-signature"}), frozenset({"signature", "awsaccesskeyid"}),
            frozenset({"x-goog-signature"}), frozenset({"signature", "googleaccessid"}))


def is_presigned(url: str) -> bool:
    """True for a URL signed for one method in its query (S3 or GCS presigned URLs)."""
    if "?" not in url:  # most URLs: no parsing (``add -i`` asks this of every one)
        return False
    query = urlsplit(url).query
    if not query:
        return False
    names = {name.lower() for name, _ in parse_qsl(query, keep_blank_values=True)}
    return any(signed <= names for signed in _SIGNING)


#: Every query parameter a presigned URL's signature adds (AWS SigV4 and SigV2, GCS V4 and
#: V2): a URL signed again for the same object differs from the first only in these.
_SIGNATURE_PARAMS = frozenset({
    "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
    "x-amz-signedheaders", "x-amz-signature", "x-amz-security-token", "awsaccesskeyid",
    "expires", "signature", "x-goog-algorithm", "x-goog-credential", "x-goog-date",
    "x-goog-expires", "x-goog-signedheaders", "x-goog-signature", "googleaccessid",
})


def unsigned(url: str) -> str | None:
    """A presigned URL without its signature's parameters (the object it names), or None
    for a URL that is not presigned."""
    if not is_presigned(url):
        return None
    parts = urlsplit(url)
    kept = "&".join(pair for pair in parts.query.split("&")
                    if pair and pair.split("=", 1)[0].lower() not in _SIGNATURE_PARAMS)
    return parts._replace(query=kept).geturl()
