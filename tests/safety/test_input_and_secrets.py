"""Hostile and careless input: one line and exit 2, secrets masked, private files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from dltui import paths
from dltui.ledger import Ledger, events, jobs
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV

SECRET_URL = "http://bob:Hunter2@example.com/f.bin?token=TOPSECRET&X-Amz-Signature=S1G&keep=1"
SECRETS = ("Hunter2", "TOPSECRET", "S1G", "bob:")


def _no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text!r}"


def test_secrets_are_masked_in_add_status_json_and_events(run, home, dest) -> None:
    code, out, _ = run("add", SECRET_URL, "--dir", str(dest))
    assert code == 0
    _no_secrets(out)
    assert "http://***@example.com/f.bin?token=***&X-Amz-Signature=***&keep=1" in out
    with Ledger(home) as led:  # an error naming the URL, as a failed request's would
        jobs.update(led, 1, owner=None, error=f"HTTP 500 Internal Server Error from {SECRET_URL}")
    code, out, _ = run("status")
    _no_secrets(out)
    assert "[HTTP 500 Internal Server Error from http://***@example.com/" in out
    code, out, _ = run("status", "--json")
    _no_secrets(out)
    assert json.loads(out)["url"].startswith("http://***@example.com/")
    code, out, _ = run("status", "--json", "--show-secrets")
    assert json.loads(out)["url"] == SECRET_URL
    with Ledger(home) as led:
        for event in events.recent(led):
            _no_secrets(json.dumps(event.data))


def test_errors_naming_a_url_are_masked(run, home, dest) -> None:
    code, _, err = run("add", "http://bob:Hunter2@a..b/f?token=TOPSECRET", "--dir", str(dest))
    assert code == 2 and err.count("\n") == 1
    _no_secrets(err)


def test_home_ledger_parts_and_store_are_private_whatever_the_umask(tmp_path, origin) -> None:
    home = tmp_path / "h"
    dest = tmp_path / "d"
    dest.mkdir()
    origin.add("/x.bin", b"x" * 5000)
    env = {**os.environ, "DLTUI_HOME": str(home), "DLTUI_TRUST_ENV": "0", "DLTUI_MIN_FREE": "0"}
    cmd = [sys.executable, "-c", "import os, sys; os.umask(0o022); from dltui.cli import main; "
           "sys.exit(main(sys.argv[1:]))"]
    subprocess.run([*cmd, "add", origin.url("/x.bin"), "-d", str(dest)], env=env, check=True,
                   capture_output=True)
    subprocess.run([*cmd, "run", "--until-idle"], env=env, check=True, capture_output=True)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.ledger_path(home).stat().st_mode) == 0o600
    for d in (paths.parts_dir(home), paths.store_dir(home)):
        if d.exists():
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


@pytest.mark.parametrize("argv", [
    ["pause", str(1 << 63)], ["cancel", str(1 << 63)], ["retry", "99999999999999999999"],
    ["resume", str(1 << 64)], ["status", str(1 << 63)],
])
def test_huge_job_ids_are_one_line(run, argv) -> None:
    code, _, err = run(*argv)
    assert code == 2 and "too large" in err and err.count("\n") == 1


@pytest.mark.parametrize("url,needle", [
    ("http://a..b/f", "empty label"),
    ("http://xn--invalid-.com/f", "xn--invalid-"),
    ("http://x.example/\udcff", "not UTF-8"),
])
def test_bad_urls_are_refused_at_add(run, dest, url, needle) -> None:
    code, _, err = run("add", url, "--dir", str(dest))
    assert code == 2 and needle in err and err.count("\n") == 1


def test_input_file_nul_and_empty_dir_are_refused(run, dest, tmp_path) -> None:
    listing = tmp_path / "in.txt"
    listing.write_text("http://example.com/a\n  dir=\n")
    code, _, err = run("add", "-i", str(listing), "--dir", str(dest))
    assert code == 2 and "dir= is empty" in err
    listing.write_text("http://example.com/a\n  dir=/tmp/a\x00b\n")
    code, _, err = run("add", "-i", str(listing), "--dir", str(dest))
    assert code == 2 and "NUL" in err
    code, out, _ = run("status")
    assert code == 0 and out == "no jobs\n"  # nothing was added


@pytest.mark.parametrize("var,value", [
    ("DLTUI_CONTROL_POLL", "inf"), ("DLTUI_READ_TIMEOUT", "nan"),
    ("DLTUI_CONNECT_TIMEOUT", "inf"), ("DLTUI_BACKOFF_MAX", "-1"),
    ("DLTUI_CONTROL_POLL", "1e300"), ("DLTUI_WORKERS", "100000"),
])
def test_non_finite_negative_or_huge_settings_are_refused(run, dest, monkeypatch, var,
                                                          value) -> None:
    run("add", "http://example.com/a", "--dir", str(dest))
    monkeypatch.setenv(var, value)
    code, _, err = run("run", "--until-idle")
    assert code == 2 and var in err and err.count("\n") == 1


def test_worker_counts_are_capped_with_a_message(run, dest) -> None:
    code, _, err = run("run", "--until-idle", "-w", "100000")
    assert code == 0
    assert "--workers 100000 is more than useful; using 256" in err


def test_readd_with_another_digest_is_refused(run, dest) -> None:
    url = "http://example.com/a"
    assert run("add", url, "--dir", str(dest), "--sha256", "a" * 64)[0] == 0
    assert run("add", url, "--dir", str(dest), "--sha256", "a" * 64)[0] == 0
    code, _, err = run("add", url, "--dir", str(dest), "--sha256", "b" * 64)
    assert code == 2 and "already exists" in err and "a" * 64 in err


def test_read_only_commands_do_not_create_a_ledger(run, home) -> None:
    for argv in (["status"], ["status", "--json"], ["pause", "1"], ["reconcile"]):
        code, _, err = run(*argv)
        assert code == 2 and f"no ledger at {paths.ledger_path(home)}" in err, argv
        assert err.count("\n") == 1
    assert not paths.ledger_path(home).exists()


def test_status_piped_into_head_is_quiet(home, dest, tmp_path) -> None:
    env = {**os.environ, "DLTUI_HOME": str(home)}
    urls = [f"http://example.com/{i}" for i in range(3000)]
    listing = tmp_path / "u.txt"
    listing.write_text("\n".join(urls))
    subprocess.run([sys.executable, "-m", "dltui", "add", "-i", str(listing), "-d", str(dest)],
                   env=env, check=True, capture_output=True)
    proc = subprocess.run(f"{sys.executable} -m dltui status --json | head -1",
                          shell=True, env=env, capture_output=True, text=True)
    assert proc.stderr == "" and proc.stdout.count("\n") == 1


def test_cancel_of_a_finishing_job_is_refused(run, home, dest) -> None:
    from dltui.model import JobState
    from tests.conftest import force_state

    run("add", "http://example.com/a", "--dir", str(dest))
    with Ledger(home) as led:
        force_state(led, 1, JobState.FINALIZING, lease_owner="elsewhere:1:1:t",
                    lease_until=4e9)
    code, _, err = run("cancel", "1")
    assert code == 2 and "job 1 is finishing" in err
    with Ledger(home) as led:
        assert jobs.get(led, 1).control == "run"


def test_temp_names_are_cut_by_bytes(tmp_path) -> None:
    from dltui.store import _temp_beside

    name = "é" * 127 + ".bin"  # 258 bytes: within the name limit only once cut
    tmp = _temp_beside(tmp_path / name)
    assert len(tmp.name.encode()) <= 255
    tmp.write_bytes(b"x")  # the filesystem accepts it


def test_no_exception_text_keeps_a_request_value(ledger, dest, origin, settings) -> None:
    """A header value httpx cannot encode (a row written by an older dltui, or another host's
    without the add-time check): the job fails, and neither its error nor the internal-error
    event (once `repr(exc)`, the whole value) holds the secret, in any form."""
    import dataclasses

    from dltui import requests
    from dltui.model import RequestOptions
    from tests.engine.helpers import run_pool

    secret = "sécrét€Tok3n"
    url = origin.add("/s.bin", b"x" * 100)
    options = RequestOptions(headers=(("X-Token", secret), ("Cookie", f"pref=café{secret}")))
    checked = dataclasses.replace(requests.request(url, dest), options=options)
    [added] = jobs.add(ledger, [checked])
    run_pool(ledger, settings.replace(retries=1), 1)
    job = jobs.get(ledger, added.job.id)
    assert job.state is JobState.FAILED
    texts = [job.error or ""] + [json.dumps(e.data) + repr(e.data)
                                 for e in events.for_job(ledger, job.id, 100)]
    assert any(e.kind == "internal_error" for e in events.for_job(ledger, job.id, 100))
    for text in texts:
        for form in (secret, "sécrét", "s\\xe9cr\\xe9t", "s\\u00e9cr\\u00e9t", "Tok3n"):
            assert form not in text, (form, text)


def _cmdline(pid: int) -> str:
    return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_credentials_leave_ps_at_start_up(tmp_path, origin, form) -> None:
    """`-H` values and a `--user` password given on the command line stay in `ps` only until
    the command line is parsed (curl blanks its -u the same way); they still reach the
    server. Options abbreviated the way argparse takes them are masked too."""
    import base64
    import time

    url = origin.add("/slow.bin", Resource(data=b"s" * 150_000, rate=100_000))
    home, dest = tmp_path / "home", tmp_path / "dl"
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    secrets = ["-H", "X-Token: TOPSECRET42", "--user", "bob:PASSW0RD"] if form == "separate" \
        else ["-HX-Token: TOPSECRET42", "--user=bob:PASSW0RD", "--head", "X-More: ABBRSECRET"]
    proc = subprocess.Popen([sys.executable, "-m", "dltui", "get", *secrets, url, "-d",
                             str(dest)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not origin.requests("/slow.bin") and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = _cmdline(proc.pid)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "TOPSECRET42" not in shown and "PASSW0RD" not in shown, shown
    assert "ABBRSECRET" not in shown, shown
    assert "X-Token: ***" in shown and "bob:***" in shown, shown
    sent = origin.requests("/slow.bin")[-1].headers
    assert sent["x-token"] == "TOPSECRET42"
    assert sent["authorization"] == "Basic " + base64.b64encode(b"bob:PASSW0RD").decode()


def test_headers_from_a_file_and_the_password_from_the_environment(tmp_path, origin) -> None:
    """`-H @FILE` (curl's form) and `--user NAME` with $DLTUI_PASSWORD put no secret on the
    command line at all; a bad line of the file is named by its number, its value never."""
    import base64

    url = origin.add("/f.bin", b"f" * 1000)
    home, dest = tmp_path / "home", tmp_path / "dl"
    headers = tmp_path / "headers.txt"
    headers.write_text("# tokens for the mirror\nX-Token: FILESECRET\n\nX-Other: two\n")
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_PASSWORD": "ENVPASS"}
    done = subprocess.run([sys.executable, "-m", "dltui", "get", "-H", f"@{headers}",
                           "--user", "carol", url, "-d", str(dest)], env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    sent = origin.requests("/f.bin")[-1].headers
    assert sent["x-token"] == "FILESECRET" and sent["x-other"] == "two"
    assert sent["authorization"] == "Basic " + base64.b64encode(b"carol:ENVPASS").decode()
    headers.write_text("X-Token: FILESECRET\nX Bad: LINESECRET\n")
    bad = subprocess.run([sys.executable, "-m", "dltui", "add", "-H", f"@{headers}", url,
                          "-d", str(dest)], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "LINESECRET" not in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = subprocess.run([sys.executable, "-m", "dltui", "add", "-H", "@/nonexistent/h",
                              url, "-d", str(dest)], env=env, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "-H @/nonexistent/h: cannot read it" in missing.stderr
    nopass = {k: v for k, v in env.items() if k != "DLTUI_PASSWORD"}
    asked = subprocess.run([sys.executable, "-m", "dltui", "add", "--user", "carol", url, "-d",
                            str(dest)], env=nopass, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert asked.returncode == 2 and "$DLTUI_PASSWORD" in asked.stderr, asked.stderr
