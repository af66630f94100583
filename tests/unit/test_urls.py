import pytest

from dltui.errors import InvalidURL
from dltui.urls import canonical_url


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("HTTP://Example.COM/a", "http://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/a?q=1#frag", "http://example.com/a?q=1"),
        ("http://example.com/a?", "http://example.com/a"),
        ("http://example.com/%7efoo", "http://example.com/~foo"),
        ("http://example.com/%41%42c", "http://example.com/ABc"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a%2Fb", "http://example.com/a%2Fb"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/caf\u00e9", "http://example.com/caf%C3%A9"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://example.com/%zz", "http://example.com/%25zz"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/../../etc", "http://example.com/etc"),
        ("http://example.com/a/b/..", "http://example.com/a/"),
        ("http://example.com/?x=%7e&y=%2B", "http://example.com/?x=~&y=%2B"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://[0:0:0:0:0:0:0:1]/x", "http://[::1]/x"),
        ("http://127.0.0.1:80/x", "http://127.0.0.1/x"),
        ("http://User:Pw@Example.com/", "http://User:Pw@example.com/"),
        ("http://b\u00fccher.de/x", "http://xn--bcher-kva.de/x"),
        ("  http://example.com/trim  ", "http://example.com/trim"),
    ],
)
def test_canonical_form(raw: str, canonical: str) -> None:
    assert canonical_url(raw) == canonical


def test_canonical_is_idempotent() -> None:
    for raw in ("HTTP://A.com:80/%7e/./x y?q=%2f#f", "https://b\u00fccher.de/caf\u00e9"):
        once = canonical_url(raw)
        assert canonical_url(once) == once


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "empty URL"),
        ("file:///etc/passwd", "unsupported scheme 'file:'"),
        ("ftp://example.com/x", "unsupported scheme 'ftp:'"),
        ("javascript:alert(1)", "no scheme"),
        ("example.com/file.iso", "no scheme"),
        ("http://", "no host"),
        ("http:///path", "no host"),
        ("http://example.com:99999/", "invalid port"),
        ("http://example.com:0/", "invalid port"),
        ("http://example.com:abc/", "invalid port"),
        ("http://exa mple.com/", "invalid host"),
        ("http://example.com/\x00", "control characters"),
        ("http://[::1/", "malformed URL"),
    ],
)
def test_rejects_bad_urls(raw: str, needle: str) -> None:
    with pytest.raises(InvalidURL, match=needle.replace("(", r"\(")):
        canonical_url(raw)


def test_presigned_urls_are_told_by_their_signing_parameters() -> None:
    from dltui.urls import is_presigned

    assert is_presigned("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                        "&X-Amz-Credential=a&X-Amz-Signature=ab")  # SigV4
    assert is_presigned("https://b.s3.amazonaws.com/k?AWSAccessKeyId=A&Expires=1&Signature=x")
    assert is_presigned("https://storage.googleapis.com/b/o?X-Goog-Signature=f")
    assert is_presigned("https://storage.googleapis.com/b/o?GoogleAccessId=a&Signature=s")
    assert not is_presigned("https://example.com/f?signature=only")  # no key id: not a scheme
    assert not is_presigned("https://example.com/f?token=x")
    assert not is_presigned("https://example.com/f")
