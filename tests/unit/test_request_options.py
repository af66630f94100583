"""Request options as values: cookie matching, header checks, the own-host rule."""

from __future__ import annotations

import httpx
import pytest

from dltui.engine.client import _same_host, job_request
from dltui.errors import UsageError
from dltui.model import RequestOptions
from dltui.requests import RequestDefaults, parse_cookies
from dltui.tui.screens.add import build_specs

JAR = parse_cookies(
    ".example.com\tTRUE\t/\tFALSE\t0\twide\t1\n"
    "example.com\tFALSE\t/files\tTRUE\t0\tnarrow\t2\n", "jar")


@pytest.mark.parametrize(("url", "sent"), [
    ("https://example.com/files/a.iso", "wide=1; narrow=2"),
    ("http://example.com/files/a.iso", "wide=1"),  # narrow is https-only
    ("https://cdn.example.com/files/a.iso", "wide=1"),  # narrow is for example.com alone
    ("https://example.com/filesystem", "wide=1"),  # /files is a path prefix, not a string one
    ("https://badexample.com/", None),
])
def test_cookies_match_as_a_browser_would(url, sent) -> None:
    headers = dict(RequestDefaults(cookies=JAR).for_url(url, at=0).headers)
    assert headers.get("Cookie") == sent


def test_user_agent_and_referer_given_as_headers_are_not_secrets() -> None:
    sent = RequestDefaults.parse(["User-Agent: x/1", "Referer: https://r/", "X-K: v"])
    assert (sent.user_agent, sent.referer, sent.headers) == ("x/1", "https://r/", (("X-K", "v"),))


def test_header_names_only_in_every_rendering() -> None:
    opts = RequestOptions(headers=(("Authorization", "Bearer SECRET"),), referer="https://r/")
    assert "SECRET" not in repr(opts) and "SECRET" not in opts.describe()
    assert RequestOptions.from_json(opts.to_json()) == opts
    assert RequestOptions().to_json() is None and not RequestOptions()


@pytest.mark.parametrize(("home", "url", "same"), [
    ("http://a.example/x", "http://a.example/y", True),
    ("http://a.example/x", "https://a.example/y", True),  # an upgrade on the same name
    ("https://a.example/x", "http://a.example/y", False),  # a downgrade: no secrets in clear
    ("http://a.example:8080/x", "http://a.example:8081/y", False),
    ("http://a.example/x", "http://b.example/x", False),
    ("http://127.0.0.1:5/x", "http://localhost:5/x", False),
])
def test_own_host(home, url, same) -> None:
    ext = job_request(home)["extensions"]
    [(where, _)] = ext.values()
    assert _same_host(where, httpx.URL(url)) is same


def test_add_form_splits_headers_on_bars() -> None:
    [spec] = build_specs("https://e.example/f", "/tmp", "", "",
                         "A: 1|2 | B-2: x | y")
    assert spec.options.headers == (("A", "1|2"), ("B-2", "x | y"))
    with pytest.raises(UsageError, match="give a header as 'Name: value'"):
        build_specs("https://e.example/f", "/tmp", "", "", "just text")
