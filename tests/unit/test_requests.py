"""Operator input goes through one module: every front end gives the same request and error."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltui import requests
from dltui.errors import UsageError

URL = "http://example.com/a.iso"


def test_arguments_input_file_and_form_make_the_same_request(tmp_path) -> None:
    digest = "A" * 64
    by_args = requests.from_arguments([URL], str(tmp_path), "x.iso", digest)
    by_file = requests.from_input_file(f"{URL}\n  dir={tmp_path}\n  out=x.iso\n"
                                       f"  checksum=sha-256={digest}\n", "in.txt", Path("/"))
    by_form = requests.from_form(f"{URL}\n", str(tmp_path), "x.iso", digest)
    assert by_args == by_file == by_form == [requests.DownloadRequest(
        URL, URL, tmp_path, "x.iso", "a" * 64)]


@pytest.mark.parametrize("bad,needle", [
    ({"url": "ftp://example.com/a"}, "unsupported scheme"),
    ({"url": "http://a..b/x"}, "empty label"),
    ({"name": "a/b"}, "plain file name"),
    ({"digest": "abc"}, "not a SHA-256 digest"),
])
def test_every_front_end_refuses_bad_input_with_the_same_words(tmp_path, bad, needle) -> None:
    url, name, digest = bad.get("url", URL), bad.get("name"), bad.get("digest")
    attempts = [
        lambda: requests.from_arguments([url], str(tmp_path), name, digest),
        lambda: requests.from_form(url, str(tmp_path), name or "", digest or ""),
    ]
    for attempt in attempts:
        with pytest.raises(UsageError, match=needle):
            attempt()


def test_input_file_errors_name_the_line(tmp_path) -> None:
    with pytest.raises(UsageError, match=r"^in\.txt:3: .*empty label"):
        requests.from_input_file(f"{URL}\n\nhttp://a..b/x\n", "in.txt", tmp_path)
    with pytest.raises(UsageError, match=r"^in\.txt:2: unknown option 'split'; known options: "
                                         r"dir=, out="):
        requests.from_input_file(f"{URL}\n  split=4\n", "in.txt", tmp_path)
    # The given text is no longer echoed: a header line is where secrets are.
    with pytest.raises(UsageError, match=r"^in\.txt:2: header=: give a header as"):
        requests.from_input_file(f"{URL}\n  header=x\n", "in.txt", tmp_path)


def test_a_name_or_digest_applies_to_one_url(tmp_path) -> None:
    with pytest.raises(UsageError, match="--name applies to a single URL, but 2"):
        requests.from_arguments([URL, URL + "2"], str(tmp_path), "x", None)
    with pytest.raises(UsageError, match="a SHA-256 applies to a single URL, but 2"):
        requests.from_form(f"{URL}\n{URL}2", str(tmp_path), "", "a" * 64)


def test_an_input_file_with_a_byte_order_mark_and_dot_dot_directories(tmp_path,
                                                                       monkeypatch) -> None:
    """A UTF-8 BOM was taken as part of the first URL ("has no scheme"); `dir=../x` was
    stored as written, so the same directory made two jobs."""
    from dltui import requests

    (tmp_path / "x").mkdir()
    base = tmp_path / "lists"
    base.mkdir()
    monkeypatch.chdir(base)  # relative dir= values are taken from where the command runs
    text = "\ufeffhttps://example.com/a.iso\n  dir=../x\nhttps://example.com/b.iso\n  dir=./../x/\n"
    found = requests.from_input_file(text, "urls.txt", base)
    assert [r.url for r in found] == ["https://example.com/a.iso", "https://example.com/b.iso"]
    assert {str(r.dest_dir) for r in found} == {str(tmp_path / "x")}
