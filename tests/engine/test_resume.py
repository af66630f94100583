"""The resume decision, exhaustively: a pure function of validators, part and flags."""

from __future__ import annotations

import itertools

import pytest

from dltui.engine.resume import (
    PREFIX_BYTES,
    Mode,
    PartState,
    ResumeDecision,
    Wire,
    check_response,
    confirm_prefix,
    decide,
    same_object,
)
from dltui.model import REASONS
from dltui.model import ServerValidators as V

STRONG = '"abc"'
STRONG2 = '"xyz"'
WEAK = 'W/"abc"'
LM = "Tue, 14 Nov 2023 22:13:20 GMT"
LM2 = "Wed, 15 Nov 2023 22:13:20 GMT"
N = 1_000_000


def part(committed: int = 500_000, etag=STRONG, lm=LM, length=N, prefix="p" * 64) -> PartState:
    return PartState(committed, prefix, V(etag=etag, last_modified=lm, length=length))


def server(etag=STRONG, lm=LM, length=N, ranges=True) -> V:
    return V(etag=etag, last_modified=lm, length=length, accept_ranges=ranges)


def test_no_part_is_fresh() -> None:
    assert decide(server(), None) == ResumeDecision(Mode.FRESH, 0, "no_part")
    assert decide(server(), part(committed=0)).reason == "no_part"


def test_resume_flag_off() -> None:
    d = decide(server(), part(), resume_enabled=False)
    assert (d.mode, d.offset, d.reason) == (Mode.FRESH, 0, "resume_disabled")


def test_server_without_ranges() -> None:
    assert decide(server(ranges=False), part()).reason == "no_ranges"


def test_unknown_ranges_support_still_tries() -> None:
    d = decide(server(ranges=None), part())
    assert d.mode is Mode.RESUME and d.if_range == STRONG


def test_strong_etag_match_resumes_with_if_range() -> None:
    d = decide(server(), part())
    assert d == ResumeDecision(Mode.RESUME, 500_000, "validators_match", if_range=STRONG)
    assert not d.needs_prefix_check


@pytest.mark.parametrize(
    ("srv", "why"),
    [
        (server(etag=STRONG2), "etag changed"),
        (server(length=N + 1), "length changed"),
        (server(lm=LM2), "last-modified changed"),
        (server(etag=WEAK.replace("abc", "zzz")), "weak etag changed"),
        (server(length=400_000), "object shorter than the part"),
    ],
)
def test_any_changed_validator_discards(srv, why) -> None:
    d = decide(srv, part())
    assert (d.mode, d.offset) == (Mode.DISCARD, 0), why
    assert d.reason == "validators_mismatch"


@pytest.mark.parametrize(
    ("srv", "p", "reason"),
    [
        (server(etag=WEAK), part(etag=WEAK), "weak_etag"),
        (server(etag=None), part(etag=None), "validators_missing"),
        (server(etag=None, lm=None), part(etag=None, lm=None), "validators_missing"),
        (server(etag=None, lm=None, length=None), part(etag=None, lm=None, length=None),
         "validators_missing"),
    ],
)
def test_without_strong_validator_needs_the_prefix_check(srv, p, reason) -> None:
    d = decide(srv, p)
    assert (d.mode, d.offset, d.reason) == (Mode.RESUME, p.bytes_committed, reason)
    assert d.needs_prefix_check and d.if_range is None
    assert confirm_prefix(d, True) == ResumeDecision(Mode.RESUME, p.bytes_committed, "prefix_ok")
    assert confirm_prefix(d, False) == ResumeDecision(Mode.DISCARD, 0, "prefix_mismatch")


def test_weak_etag_is_never_sent_in_if_range() -> None:
    for srv_etag, part_etag in itertools.product([WEAK, STRONG, None], repeat=2):
        d = decide(server(etag=srv_etag), part(etag=part_etag))
        assert d.if_range is None or not d.if_range.startswith("W/")


@pytest.mark.parametrize(
    ("p", "enabled"),
    [(part(etag=WEAK), False), (part(etag=WEAK, prefix=None), True),
     (part(etag=WEAK, committed=PREFIX_BYTES - 1), True)],
    ids=["flag-off", "no-prefix-hash", "part-shorter-than-prefix"],
)
def test_prefix_check_impossible_discards(p, enabled) -> None:
    d = decide(server(etag=WEAK), p, prefix_check_enabled=enabled)
    assert (d.mode, d.offset, d.reason) == (Mode.DISCARD, 0, "no_prefix")


def test_cached_only_with_proven_same_object() -> None:
    assert decide(server(), None, cached=V(etag=STRONG, length=N)).mode is Mode.CACHED
    assert decide(server(), part(), cached=V(etag=STRONG)).reason == "not_modified"
    assert decide(server(), None, cached=V(etag=STRONG2)).mode is Mode.FRESH
    assert decide(server(etag=WEAK), None, cached=V(etag=WEAK)).mode is Mode.FRESH
    assert decide(server(etag=None), None, cached=V(last_modified=LM, length=N)).mode \
        is Mode.FRESH


def test_every_reason_has_a_sentence() -> None:
    produced = {"no_part", "resume_disabled", "no_ranges", "validators_match",
                "validators_mismatch", "weak_etag", "validators_missing", "prefix_ok",
                "prefix_mismatch", "no_prefix", "not_modified", "range_ignored",
                "bad_content_range", "range_not_satisfiable", "part_missing"}
    assert produced <= set(REASONS)
    assert "resume @ 10" in ResumeDecision(Mode.RESUME, 10, "validators_match").describe()


def test_same_object() -> None:
    assert same_object(V(etag=STRONG), V(etag=STRONG)) is True
    assert same_object(V(etag=STRONG), V(etag=STRONG2)) is False
    assert same_object(V(etag=WEAK), V(etag=WEAK)) is None
    assert same_object(V(), V()) is None
    assert same_object(V(etag=STRONG, length=1), V(etag=STRONG, length=2)) is False


@pytest.mark.parametrize(
    ("offset", "status", "content_range", "expected", "action", "reason"),
    [
        (0, 200, None, N, Wire.CONTINUE, None),
        (10, 200, None, N, Wire.RESTART, "range_ignored"),
        (10, 206, f"bytes 10-{N - 1}/{N}", N, Wire.CONTINUE, None),
        (10, 206, f"bytes 10-{N - 1}/*", N, Wire.CONTINUE, None),
        (10, 206, f"bytes 0-{N - 1}/{N}", N, Wire.DISCARD, "bad_content_range"),
        (10, 206, f"bytes 10-{N}/{N + 1}", N, Wire.DISCARD, "bad_content_range"),
        (10, 206, None, N, Wire.DISCARD, "bad_content_range"),
        (10, 206, "bytes garbage", N, Wire.DISCARD, "bad_content_range"),
        (N, 416, f"bytes */{N}", N, Wire.COMPLETE, "range_not_satisfiable"),
        (N, 416, f"bytes */{N}", None, Wire.COMPLETE, "range_not_satisfiable"),
        (10, 416, f"bytes */{N}", N, Wire.DISCARD, "range_not_satisfiable"),
        (10, 416, None, N, Wire.DISCARD, "range_not_satisfiable"),
        (0, 416, "bytes */0", 0, Wire.DISCARD, "range_not_satisfiable"),
        (0, 206, f"bytes 0-{N - 1}/{N}", N, Wire.CONTINUE, None),
    ],
)
def test_check_response(offset, status, content_range, expected, action, reason) -> None:
    verdict = check_response(offset, status, content_range, expected)
    assert (verdict.action, verdict.reason) == (action, reason)


def test_check_response_rejects_other_statuses() -> None:
    with pytest.raises(ValueError):
        check_response(0, 500, None, None)
