"""Request options: headers, cookies, logins, referer and user agent reach the job's own host
(on every path: HEAD, the small-file lane, one stream, segments), never another host a
redirect leads to, and are never shown."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
from pathlib import Path

from dltui.ledger import Ledger, events, jobs
from dltui.model import JobState
from dltui.origin import Origin, Resource
from tests.engine.helpers import blob
from tests.support.cli import dltui

SECRET = "s3cret-token-value"
PASSWORD = "pw-never-shown"


def _dltui(home: Path, *args: str, env: dict[str, str] | None = None,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return dltui(home, *args, env=env, stdin=stdin)


def _cookies(path: Path) -> Path:
    path.write_text(
        "# Netscape HTTP Cookie File\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc123\n"
        "#HttpOnly_127.0.0.1\tFALSE\t/\tFALSE\t0\thidden\txyz\n"
        "127.0.0.1\tFALSE\t/other\tFALSE\t0\telsewhere\tno\n"  # another path
        "127.0.0.1\tFALSE\t/\tTRUE\t0\tsecure_only\tno\n"  # https only
        "127.0.0.1\tFALSE\t/\tFALSE\t1\texpired\tno\n"  # expired in 1970
        "example.org\tTRUE\t/\tFALSE\t0\tforeign\tno\n")
    return path


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_options_reach_the_own_host_and_never_another(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    with Origin() as other:
        small, big = blob(40_000, seed=61), blob(4 << 20, seed=62)
        # localhost and 127.0.0.1 are different hosts to a client, on the same loopback.
        other.add("/small.bin", small)
        other.add("/big.bin", big)
        away_small = origin.add("/away-small", Resource(
            redirect=f"http://localhost:{other.port}/small.bin"))
        away_big = origin.add("/away-big", Resource(
            redirect=f"http://localhost:{other.port}/big.bin"))
        origin.add("/here.bin", blob(30_000, seed=63))
        here = origin.add("/here", Resource(redirect="/here.bin"))
        done = _dltui(home, "get", away_small, away_big, here, "-d", str(dest), "-x", "4",
                      "-H", f"X-Token: {SECRET}", "--user", f"bob:{PASSWORD}",
                      "--cookies", str(_cookies(tmp_path / "cookies.txt")),
                      "--referer", "https://portal.example/list", "-U", "fetcher/2.0",
                      env={"DLTUI_SPLIT_BELOW_RATE": "0", "DLTUI_MIN_SEGMENT_SIZE": "1M"})
        assert done.returncode == 0, done.stdout + done.stderr
        assert (dest / "small.bin").read_bytes() == small
        assert (dest / "big.bin").read_bytes() == big

        own = origin.requests("/away-small") + origin.requests("/away-big") + \
            origin.requests("/here") + origin.requests("/here.bin")
        assert {r.method for r in own} == {"HEAD", "GET"} or {r.method for r in own} == {"GET"}
        for r in own:
            assert r.headers["x-token"] == SECRET
            assert r.headers["authorization"] == _basic("bob", PASSWORD)
            assert r.headers["cookie"] == "session=abc123; hidden=xyz"
            assert r.headers["referer"] == "https://portal.example/list"
            assert r.headers["user-agent"] == "fetcher/2.0"
        # The redirected requests, the ranged segments among them, carry none of the secrets.
        away = other.requests("/small.bin") + other.requests("/big.bin")
        assert len([r for r in away if "range" in r.headers]) >= 3  # segments ran
        for r in away:
            assert not {"x-token", "authorization", "cookie"} & r.headers.keys(), r.headers
            assert r.headers["user-agent"] == "fetcher/2.0"
            assert r.headers["referer"] == "https://portal.example/list"

    # Stored for the workers, shown nowhere.
    status = _dltui(home, "status")
    as_json = _dltui(home, "status", "--json", "--show-secrets")
    for shown in (done.stdout, done.stderr, status.stdout, as_json.stdout):
        assert SECRET not in shown and PASSWORD not in shown and "abc123" not in shown
    first = json.loads(as_json.stdout.splitlines()[0])
    assert first["request"] == {"headers": ["X-Token", "Authorization", "Cookie"],
                                "referer": "https://portal.example/list",
                                "user_agent": "fetcher/2.0"}
    conn = sqlite3.connect(home / "ledger.db")
    for table in ("events", "ops"):
        text = " ".join(str(row) for row in conn.execute(f"SELECT * FROM {table}"))
        assert SECRET not in text and PASSWORD not in text, table
    conn.close()


def test_input_file_options_and_their_errors(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    a, b = origin.add("/a.bin", blob(2000, seed=64)), origin.add("/b.bin", blob(2000, seed=65))
    listing = tmp_path / "urls.txt"
    listing.write_text(
        f"{a}\n"
        "  header=X-One: 1\n"
        "  header=X-Two: 2\n"
        "  referer=https://ref.example/\n"
        "  user-agent=agent-a\n"
        "  http-user=alice\n"
        f"  http-passwd={PASSWORD}\n"
        f"  load-cookies={_cookies(tmp_path / 'c.txt')}\n"
        f"{b}\n")
    added = _dltui(home, "add", "-i", str(listing), "-d", str(dest), "-H", "X-All: yes")
    assert added.returncode == 0, added.stderr
    ran = _dltui(home, "run", "--until-idle")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    got_a = origin.requests("/a.bin", "GET")[-1].headers
    assert (got_a["x-all"], got_a["x-one"], got_a["x-two"]) == ("yes", "1", "2")
    assert got_a["referer"] == "https://ref.example/" and got_a["user-agent"] == "agent-a"
    assert got_a["authorization"] == _basic("alice", PASSWORD)
    assert got_a["cookie"] == "session=abc123; hidden=xyz"
    got_b = origin.requests("/b.bin", "GET")[-1].headers
    assert got_b["x-all"] == "yes"
    assert not {"x-one", "authorization", "cookie", "referer"} & got_b.keys()

    bad = tmp_path / "bad.txt"
    bad.write_text(f"{a}\n  dir=/tmp\n  max-tries=3\n")
    refused = _dltui(home, "add", "-i", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:3: unknown option 'max-tries'; known options: dir=, out=, checksum=, " \
           "header=" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    bad.write_text(f"{a}\n  header=Range: bytes=0-\n")
    refused = _dltui(home, "add", "-i", str(bad))
    assert refused.returncode == 2 and f"{bad}:2: " in refused.stderr
    assert "sets this header itself" in refused.stderr
    bad.write_text(f"{a}\n  http-passwd=x\n")
    refused = _dltui(home, "add", "-i", str(bad))
    assert refused.returncode == 2 and "needs an http-user= line" in refused.stderr


def test_bad_request_options_are_one_line_errors(tmp_path) -> None:
    """A refused header never echoes its value any more (`-H 'X Bad: TOPSECRET42'` printed
    it), and a value HTTP cannot send (non-ASCII) is refused here, not by the worker."""
    home, url = tmp_path / "home", "http://127.0.0.1:9/x"
    cookies = tmp_path / "c.txt"
    cookies.write_text("127.0.0.1\tFALSE\t/\n")
    accented = tmp_path / "accented.txt"
    accented.write_text("127.0.0.1\tFALSE\t/\tFALSE\t0\tpref\tcaf\u00e9SECRET\n")
    cases = [
        (["-H", "NoColonHere"], "give a header as 'Name: value'"),
        (["-H", "X-Empty:"], "X-Empty: no value"),
        (["-H", "X Bad: TOPSECRET42"], "'X Bad': not a header name"),
        (["-H", "X-Token: s\u00e9cr\u00e9t\u20acSECRET"], "X-Token: the value holds characters"),
        (["--cookies", str(accented)], "cookie pref holds characters HTTP cannot send"),
        (["-H", "Accept-Encoding: gzip"], "sets this header itself"),
        (["--cookies", str(tmp_path / "missing.txt")], "cannot read it"),
        (["--cookies", str(cookies)], f"{cookies}:1: not a Netscape cookie line"),
        (["--user", "bob"], "give the password in $DLTUI_PASSWORD (or USER:PASSWORD)"),
        (["--user", "bob:pw", "-H", "Authorization: Bearer x"], "not both"),
        (["--referer", " "], "give one line of text"),
    ]
    for extra, message in cases:
        done = _dltui(home, "add", url, *extra, stdin="")
        assert done.returncode == 2, (extra, done.stderr)
        assert message in done.stderr, (extra, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
        assert "SECRET" not in done.stderr
    with Ledger(home) as led:
        assert jobs.list_jobs(led) == []  # bad input changes nothing


def test_netrc_login_for_the_own_host(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login carol password {PASSWORD}\n")
    url = origin.add("/n.bin", blob(5000, seed=66))
    own = origin.add("/own.bin", blob(5000, seed=67))
    env = {"DLTUI_NETRC": "1", "NETRC": str(netrc)}
    assert _dltui(home, "add", url, "-d", str(dest)).returncode == 0
    assert _dltui(home, "add", own, "-d", str(dest), "--user", "dave:x").returncode == 0
    ran = _dltui(home, "run", "--until-idle", env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert origin.requests("/n.bin", "GET")[-1].headers["authorization"] == \
        _basic("carol", PASSWORD)
    # A job's own login wins over the file's.
    assert origin.requests("/own.bin", "GET")[-1].headers["authorization"] == _basic("dave", "x")

    # A netrc file that cannot be parsed fails the job at once, naming the file and the
    # line, never the token it choked on (that may be a password).
    netrc.write_text("machine 127.0.0.1 login carol password x MYNETRCSECRET2\n")
    broken = origin.add("/broken.bin", blob(5000, seed=68))
    assert _dltui(home, "add", broken, "-d", str(dest)).returncode == 0
    ran = _dltui(home, "run", "--until-idle", env=env)
    assert ran.returncode == 1
    with Ledger(home) as led:
        job = next(j for j in jobs.list_jobs(led) if j.url == broken)
        assert job.state is JobState.FAILED
        assert f"cannot read {netrc}: it does not parse at line " in (job.error or "")
        assert "MYNETRCSECRET2" not in (job.error or "")
        assert not [e for e in events.for_job(led, job.id, 100)
                    if "MYNETRCSECRET2" in str(e.data)]
    assert origin.requests("/broken.bin") == []


def test_status_json_masks_the_referer_like_any_url(tmp_path) -> None:
    home = tmp_path / "home"
    added = _dltui(home, "add", "http://127.0.0.1:9/x", "-d", str(tmp_path), "--referer",
                   "https://alice:REFPASS@ex.com/p?token=REFSECRET")
    assert added.returncode == 0, added.stderr
    shown = _dltui(home, "status", "--json")
    assert "REFPASS" not in shown.stdout and "REFSECRET" not in shown.stdout
    assert '"referer": "https://***@ex.com/p?token=***"' in shown.stdout
