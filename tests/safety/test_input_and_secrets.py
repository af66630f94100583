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
