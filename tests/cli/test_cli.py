"""The CLI through its real entry points: in-process ``main`` and the installed ``dltui``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger, events, jobs
from dltui.ledger.liveness import hostname
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV, dump, force_state, wait_for
from tests.engine.helpers import blob

DIGEST = "a" * 64


def _status(run) -> list[dict]:
    code, out, _ = run("status", "--json")
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


def test_add_is_idempotent(run, dest) -> None:
    code, out, _ = run("add", "http://example.com/a.iso", "--dir", str(dest))
    assert code == 0 and out.startswith("added job 1:")
    code, out, _ = run("add", "HTTP://EXAMPLE.com:80/./a.iso#x", "--dir", str(dest))
    assert code == 0 and "job 1 already exists (PLANNED)" in out
    code, out, _ = run("add", "http://example.com/a.iso", "--dir", str(dest / "elsewhere"))
    assert "added job 2" in out
    assert [j["id"] for j in _status(run)] == [1, 2]


def test_add_json_and_input_file(run, dest, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(
        "# batch\n"
        "http://example.com/one\n"
        "\n"
        f"http://example.com/two\n  out=second.bin\n  dir={dest / 'sub'}\n"
        f"  checksum=sha-256={DIGEST}\n"
    )
    code, out, _ = run("add", "-i", str(listing), "--dir", str(dest), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["created"], r["name"], r["dest_dir"]) for r in rows] == [
        (True, "one", str(dest)),
        (True, "second.bin", str(dest / "sub")),
    ]
    assert rows[1]["expected_sha256"] == DIGEST


def test_status_json_fields_and_filter(run, dest) -> None:
    run("add", "http://example.com/a", "http://example.com/b", "--dir", str(dest))
    run("pause", "2")
    rows = _status(run)
    required = {"id", "url", "state", "bytes_committed", "bytes_total", "sha256", "final_path",
                "decision", "reason", "attempts", "error"}
    assert all(required <= set(r) for r in rows)
    code, out, _ = run("status", "--json", "--state", "paused")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [2]
    code, out, _ = run("status")
    assert code == 0 and "PAUSED" in out and "PLANNED" in out


def test_control_commands(run, home, dest) -> None:
    run("add", "http://example.com/a", "http://example.com/b", "http://example.com/c",
        "--dir", str(dest))
    assert run("pause", "1", "2")[1] == "job 1: paused\njob 2: paused\n"
    assert run("resume", "1")[1] == "job 1: resumed\n"
    with Ledger(home) as led:
        force_state(led, 3, JobState.FAILED, error="HTTP 503")
    assert run("retry", "3")[1] == "job 3: queued for retry\n"
    code, out, _ = run("cancel", "--all")
    assert code == 0 and "3 job(s) changed" in out
    assert {r["state"] for r in _status(run)} == {"CANCELLED"}


def test_flags_command(run) -> None:
    code, out, _ = run("flags", "fsync=off", "resume=on")
    assert code == 0 and "fsync = off" in out and "resume = on (unchanged)" in out
    code, out, _ = run("flags", "--json")
    values = {json.loads(line)["name"]: json.loads(line)["value"] for line in out.splitlines()}
    assert values["fsync"] is False and values["resume"] is True


def test_env_flag_applied_at_start(run, home, monkeypatch) -> None:
    monkeypatch.setenv("DLTUI_FLAG_DEDUPE", "0")
    run("flags")
    with Ledger(home) as led:
        assert events.recent(led, kind="flag")[-1].data == {
            "name": "dedupe", "old": True, "new": False, "by": "env"}


def test_reconcile_command(run, home, dest) -> None:
    run("add", "http://example.com/a", "--dir", str(dest))
    with Ledger(home) as led:
        force_state(led, 1, JobState.STREAMING, lease_owner="x:1:1:t", lease_until=1.0)
    code, out, _ = run("reconcile", "--dry-run")
    assert code == 0 and "reconcile would: lease_expired 1" in out
    code, out, _ = run("reconcile", "--json")
    assert json.loads(out)["counts"]["lease_expired"] == 1
    assert _status(run)[0]["state"] == "PLANNED"


BAD_INPUTS = [
    (["add", "not a url"], "no scheme"),
    (["add", "example.com/x"], "no scheme"),
    (["add", "http://"], "no host"),
    (["add", "file:///etc/passwd"], "unsupported scheme 'file:'"),
    (["add", "ftp://example.com/x"], "unsupported scheme 'ftp:'"),
    (["add", "http://example.com/x", "--sha256", "xyz"], "not a SHA-256 digest"),
    (["add", "http://example.com/x", "--sha256", "g" * 64], "not a SHA-256 digest"),
    (["add", "-i", "/nonexistent/urls.txt"], "cannot read input file"),
    (["add", "http://example.com/x", "--name", "../evil"], "plain file name"),
    (["add", "http://a/1", "http://a/2", "--name", "x"], "--name applies to a single URL"),
    (["add"], "no URLs given"),
    (["pause", "99"], "no job 99"),
    (["resume", "1", "99"], "no job 99"),
    (["cancel", "abc"], "job id must be a number"),
    (["retry", "1"], "retry applies to jobs in FAILED"),
    (["flags", "turbo=on"], "unknown flag 'turbo'"),
    (["flags", "fsync=maybe"], "not a flag value"),
    (["flags", "fsync"], "expected NAME=on|off"),
    (["status", "--state", "DONE"], "unknown state 'DONE'"),
    (["status", "42"], "no job 42"),
    (["pause"], "no jobs given"),
    (["frobnicate"], "invalid choice"),
    (["https://u:pw@example.com/x.iso"], "'https://***@example.com/x.iso' is not a command; "
                                         "`dltui get URL` downloads it now"),
    (["add", "http://example.com/y", "-H", "Range: bytes=0-"], "sets this header itself"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    run, home, dest, tmp_path, argv, needle
) -> None:
    run("add", "http://example.com/existing", "--dir", str(dest))
    before = dump(paths.ledger_path(home))
    code, _, err = run(*argv)
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and err.startswith("dltui")
    assert dump(paths.ledger_path(home)) == before


def test_unreadable_input_file(run, home, dest, tmp_path) -> None:
    if os.geteuid() == 0:
        bad = tmp_path / "binary.txt"
        bad.write_bytes(b"\xff\xfe\x00garbage")
    else:
        bad = tmp_path / "secret.txt"
        bad.write_text("http://example.com/x\n")
        bad.chmod(0)
    code, _, err = run("add", "-i", str(bad))
    assert code == 2 and "cannot read input file" in err


def test_input_file_bad_line_rejects_whole_batch(run, home, tmp_path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("http://example.com/ok\nftp://example.com/bad\n")
    code, _, err = run("add", "-i", str(listing))
    assert code == 2 and "ftp:" in err
    code, out, _ = run("status", "--json")
    assert out == ""


def test_installed_entry_point(tmp_path, dest) -> None:
    exe = shutil.which("dltui", path=str(Path(sys.executable).parent))
    assert exe, "the dltui console script is not installed next to this interpreter"
    env = {**os.environ, "DLTUI_HOME": str(tmp_path / "h")}
    ok = subprocess.run([exe, "add", "https://example.com/f", "--dir", str(dest)],
                        capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([exe, "add", "gopher://example.com/"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "gopher" in bad.stderr
    status = subprocess.run([exe, "status", "--json"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert json.loads(status.stdout)["url"] == "https://example.com/f"


def test_home_option_before_or_after_command(run, tmp_path, dest) -> None:
    elsewhere = tmp_path / "other-home"
    assert run("--home", str(elsewhere), "add", "http://example.com/a", "--dir", str(dest))[0] == 0
    code, out, _ = run("status", "--json", "--home", str(elsewhere))
    assert code == 0 and json.loads(out)["url"] == "http://example.com/a"
    assert run("status", "--json")[1] == ""  # the default home is untouched


def test_run_rejects_bad_settings(run, tmp_path, monkeypatch) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("workers = 'lots'\n")
    code, _, err = run("--config", str(cfg), "run", "--until-idle")
    assert code == 2 and "not a valid int" in err and err.count("\n") == 1
    code, _, err = run("run", "--until-idle", "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "does not exist" in err
    monkeypatch.setenv("DLTUI_READ_TIMEOUT", "soon")
    code, _, err = run("run", "--until-idle")
    assert code == 2 and "DLTUI_READ_TIMEOUT" in err
    monkeypatch.delenv("DLTUI_READ_TIMEOUT")
    code, _, err = run("run", "--until-idle", "--workers", "0")
    assert code == 2 and "--workers" in err


def test_run_until_idle_on_an_empty_ledger(run) -> None:
    code, _, err = run("run", "--until-idle")
    assert code == 0 and err == ""


def test_status_json_shows_segments_of_a_segmented_download(run, home, dest) -> None:
    from dltui.ledger import segments
    from dltui.model import plan_segments

    run("add", "http://example.com/big", "http://example.com/small", "--dir", str(dest))
    with Ledger(home) as led, led.write() as conn:
        plan = plan_segments(100 << 20, 4, 20 << 20)
        segments.save_in(conn, 1, [s.__class__(s.index, s.start, s.end, 1000 * s.index, 0)
                                   for s in plan])
    big, small = _status(run)
    assert [(s["start"], s["done"]) for s in big["segments"]] == \
        [(s.start, 1000 * s.index) for s in plan]
    assert "segments" not in small


def test_run_with_two_processes_shares_the_queue(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    payloads = {f"/p{i:03d}.bin": bytes([i]) * (2_000 + i) for i in range(120)}
    for path, data in payloads.items():
        origin.add(path, Resource(data=data, rate=200_000))
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec(origin.url(p), dest) for p in payloads])
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "dltui", "run", "--until-idle", "--workers",
                           "2", "--processes", "2"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    with Ledger(home) as led:
        finished = jobs.list_jobs(led)
        assert all(j.state is JobState.FINALIZED for j in finished)
        owners = {e.data["owner_id"].split(":")[1] for e in events.recent(led, 10_000, "state")
                  if e.data.get("to") == "LEASED"}
    assert len(owners) == 2, f"one process did all the work: {owners}"
    assert sorted(p.name for p in dest.iterdir()) == sorted(p[1:] for p in payloads)


def test_run_refuses_zero_processes(tmp_path) -> None:
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(tmp_path / "home")}
    bad = subprocess.run([sys.executable, "-m", "dltui", "run", "--processes", "0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [
        "dltui run: error: --processes must be at least 1, got 0"]


def test_processes_are_chosen_from_the_queue_and_the_cores(tmp_path) -> None:
    from dltui.cli.run import auto_processes

    with Ledger(tmp_path / "home") as led:
        assert auto_processes(led, 4) == 1  # nothing queued
        jobs.add(led, [jobs.JobSpec(f"http://127.0.0.1:9/{i}", tmp_path) for i in range(3)])
        assert auto_processes(led, 4) == 1  # one process runs all three at once
        jobs.add(led, [jobs.JobSpec(f"http://127.0.0.1:9/m{i}", tmp_path) for i in range(200)])
        assert auto_processes(led, 4) == min(os.cpu_count() or 1, 4)


def test_add_quiet_and_many_urls_in_one_line(tmp_path) -> None:
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(tmp_path / "home")}
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"http://127.0.0.1:9/f{i}\n" for i in range(50)))
    many = subprocess.run([sys.executable, "-m", "dltui", "add", "-i", str(listing), "-d",
                           str(tmp_path)], env=env, capture_output=True, text=True)
    assert many.returncode == 0
    assert many.stdout == "added 50 jobs (0 already existed): ids 1-50\n"
    quiet = subprocess.run([sys.executable, "-m", "dltui", "add", "-q", "http://127.0.0.1:9/x",
                            "-d", str(tmp_path)], env=env, capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_status_marks_a_dead_workers_job_stale(tmp_path) -> None:
    home = tmp_path / "home"
    with Ledger(home) as led:
        job_id = jobs.add(led, [jobs.JobSpec("http://127.0.0.1:9/x", tmp_path)])[0].job.id
        # Held by a process on this host that no longer exists (pid 2**22 + 1 is never used).
        force_state(led, job_id, "STREAMING", lease_owner=f"{hostname()}:4194305:1:1",
                    lease_until=time.time() + 600, heartbeat_at=time.time() - 64)
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    text = subprocess.run([sys.executable, "-m", "dltui", "status"], env=env,
                          capture_output=True, text=True)
    assert "[stale 6" in text.stdout and "no live worker holds it" in text.stdout, text.stdout
    js = subprocess.run([sys.executable, "-m", "dltui", "status", "--json"], env=env,
                        capture_output=True, text=True)
    row = json.loads(js.stdout)
    assert row["lease_live"] is False and 63 <= row["heartbeat_age"] <= 70
    assert row["failed_tries"] == 0


def test_status_shows_rate_and_eta_of_running_jobs(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    url = origin.add("/rated.bin", Resource(data=blob(8 << 20, seed=9), rate=1 << 20))
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    assert subprocess.run([sys.executable, "-m", "dltui", "add", "-q", url, "-d", str(dest)],
                          env=env).returncode == 0
    runner = subprocess.Popen([sys.executable, "-m", "dltui", "run", "--until-idle"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def sample():
            js = subprocess.run([sys.executable, "-m", "dltui", "status", "--json"], env=env,
                                capture_output=True, text=True)
            row = json.loads(js.stdout)
            return row if row["rate"] and row["bytes_committed"] > (2 << 20) else None

        row = wait_for(sample, "no rate recorded", timeout=20)
        assert 0.7 <= row["rate"] / (1 << 20) <= 1.4  # the origin sends 1 MiB/s
        assert row["eta"] is not None and 0 < row["eta"] < 10
        text = subprocess.run([sys.executable, "-m", "dltui", "status"], env=env,
                              capture_output=True, text=True).stdout
        assert "/s ETA " in text
    finally:
        runner.kill()
        runner.wait()


def test_run_progress_line_on_a_terminal_counts_cancelled_like_the_tui(tmp_path,
                                                                        origin) -> None:
    import pty

    home, dest = tmp_path / "home", tmp_path / "dl"
    with Ledger(home) as led:
        kept = jobs.add(led, [jobs.JobSpec(origin.add("/p.bin", Resource(
            data=blob(2 << 20, seed=11), rate=1 << 20)), dest)])[0].job.id
        gone = jobs.add(led, [jobs.JobSpec("http://127.0.0.1:9/c", dest)])[0].job.id
        force_state(led, gone, JobState.CANCELLED)
    main, sub = pty.openpty()
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "dltui", "run", "--until-idle"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sub)
    os.close(sub)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(timeout=30) == 0
    text = seen.decode(errors="replace")
    assert "dltui run: 1 active, 0 queued, 0 done, 0 failed, 1 cancelled, " in text, text
    with Ledger(home) as led:
        assert jobs.get(led, kept).state is JobState.FINALIZED


def test_bulk_retry_shows_progress_on_a_terminal_and_sums_up(tmp_path) -> None:
    import pty

    home = tmp_path / "home"
    with Ledger(home) as led:
        added = jobs.add(led, [jobs.JobSpec(f"https://e.example/f{i}", tmp_path / "dl")
                               for i in range(12_000)])
        ids = [r.job.id for r in added]
        for job_id in ids[:3]:
            force_state(led, job_id, JobState.FINALIZED)
        with led.write() as conn:  # 12,000 failures, as a bad night leaves them
            conn.executemany("UPDATE jobs SET state = 'FAILED' WHERE id = ?",
                             [(i,) for i in ids[3:]])
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "dltui", "retry", "--all"],
                            env={**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's far end closed
            break
        if not chunk:
            break
        shown += chunk
    out = proc.communicate(timeout=60)[0]
    os.close(master)
    assert proc.returncode == 0
    assert out == "retry: 11997 job(s) changed, 3 not applicable\n"  # one line, not 12,000
    # The count shows from half a second on: 12,000 retries take about twice that here.
    assert b"\rretry: " in shown and b"/12,000 jobs (" in shown, shown[:200]
    with Ledger(home) as led:
        assert jobs.get(led, ids[-1]).state is JobState.PLANNED
        assert jobs.get(led, ids[0]).state is JobState.FINALIZED
