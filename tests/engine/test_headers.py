import pytest

from dltui.engine.headers import (
    filename_from_disposition,
    filename_from_url,
    parse_content_range,
    parse_retry_after,
    validators_from,
)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ('attachment; filename="report.pdf"', "report.pdf"),
        ("attachment; filename=plain.txt", "plain.txt"),
        ('attachment; filename="a;b.txt"', "a;b.txt"),
        ('attachment; filename="quo\\"te.txt"', 'quo"te.txt'),
        ("attachment; filename*=UTF-8''na%C3%AFve.txt", "na\u00efve.txt"),
        ("attachment; filename=\"fallback.txt\"; filename*=UTF-8''real%20name.txt",
         "real name.txt"),
        ("attachment; filename*=iso-8859-1'en'%E9t%E9.txt", "\u00e9t\u00e9.txt"),
        ("attachment; filename*=bogus-charset''x.txt; filename=ok.txt", "ok.txt"),
        ("inline", None),
        ("", None),
        (None, None),
    ],
)
def test_content_disposition(value, name) -> None:
    assert filename_from_disposition(value) == name


def test_filename_from_url() -> None:
    assert filename_from_url("http://h/a/b%20c.iso?x=1") == "b c.iso"
    assert filename_from_url("http://h/") is None


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("bytes 0-99/1000", (0, 99, 1000)),
        ("bytes 10-19/*", (10, 19, None)),
        ("bytes */1000", (None, None, 1000)),
        ("BYTES 5-5/6", (5, 5, 6)),
        ("bytes 9-1/10", None),
        ("items 0-1/2", None),
        (None, None),
    ],
)
def test_content_range(value, parsed) -> None:
    assert parse_content_range(value) == parsed


def test_retry_after() -> None:
    assert parse_retry_after("120", now=0) == 120.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=40.0) == 0.0
    assert parse_retry_after("soon", now=0) is None
    assert parse_retry_after(None, now=0) is None


def test_validators() -> None:
    v = validators_from({"etag": '"x"', "last-modified": "LM", "content-length": "10",
                         "accept-ranges": "bytes"})
    assert (v.etag, v.last_modified, v.length, v.accept_ranges) == ('"x"', "LM", 10, True)
    assert validators_from({"accept-ranges": "none"}).accept_ranges is False
    assert validators_from({}).accept_ranges is None
    partial = validators_from({"content-range": "bytes 5-9/100", "content-length": "5"},
                              status=206)
    assert partial.length == 100 and partial.accept_ranges is True
