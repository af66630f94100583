"""`dltui ledger copy --to URL`: a one-host SQLite ledger moves into PostgreSQL, ids and
history kept, and the fleet carries on from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dltui.errors import LedgerError
from dltui.ledger import Ledger, actions, flags, jobs, ops
from dltui.ledger.liveness import HOST_NAME_ENV
from dltui.model import JobState
from tests.conftest import TEST_ENV, force_state, wait_for
from tests.fleet.cli import dltui


def test_copy_moves_every_row_and_the_fleet_carries_on(tmp_path, pg_url, monkeypatch) -> None:
    monkeypatch.delenv("DLTUI_LEDGER", raising=False)
    home, dest = tmp_path / "home", tmp_path / "dl"
    with Ledger(home) as led:
        ids = [r.job.id for r in jobs.add(led, [jobs.JobSpec(f"https://e.example/{n}", dest)
                                              for n in range(5)])]
        force_state(led, ids[0], JobState.FINALIZED, sha256="ab" * 32)
        force_state(led, ids[1], JobState.PAUSED, bytes_committed=4096)
        force_state(led, ids[2], JobState.FAILED, error="HTTP 404 Not Found")
        ops.run_effect(led, ops.op_key("HEAD", ids[0], n=0), lambda: {"ok": 1},
                       job_id=ids[0], kind=ops.OpKind.HEAD)
        flags.set_flag(led, "fsync", False, by="cli")
    before = dltui(home, "status", "--json")
    done = dltui(home, "ledger", "copy", "--to", pg_url, env={HOST_NAME_ENV: "dl-01"})
    assert done.returncode == 0, done.stderr
    assert "copied 5 jobs" in done.stdout and "postgresql://***@" in done.stdout
    after = dltui(home, "status", "--json", "--ledger", pg_url)
    assert after.returncode == 0, after.stderr
    strip = ("part_host", "lease_live", "heartbeat_age")
    old = [{k: v for k, v in json.loads(x).items() if k not in strip}
           for x in before.stdout.splitlines()]
    new = [{k: v for k, v in json.loads(x).items() if k not in strip}
           for x in after.stdout.splitlines()]
    assert new == old
    with Ledger(home, location=pg_url) as pg:
        assert jobs.get(pg, ids[1]).part_host == "dl-01"  # its 4096 bytes are on this host
        assert jobs.get(pg, ids[0]).part_host is None
        assert [o.kind for o in ops.for_job(pg, ids[0])] == ["HEAD"]
        assert flags.get(pg, "fsync") is False
        # New jobs continue after the copied ids.
        [added] = jobs.add(pg, [jobs.JobSpec("https://e.example/new", dest)])
        assert added.job.id == max(ids) + 1
    # A second copy into it would mix two ledgers: refused, one line, exit 2.
    again = dltui(home, "ledger", "copy", "--to", pg_url)
    assert again.returncode == 2 and "already holds jobs" in again.stderr
    assert len(again.stderr.splitlines()) == 1
    bad = dltui(home, "ledger", "copy", "--to", str(tmp_path / "x.db"))
    assert bad.returncode == 2 and "postgresql://" in bad.stderr


def test_the_copied_sqlite_ledger_takes_no_more_changes(tmp_path, pg_cluster) -> None:
    """After `ledger copy`, a job added (or run) on the SQLite ledger would never reach the
    fleet: every change is refused with one line naming the copy; `status` still reads it,
    saying where the jobs went; a copy into another empty database is still possible."""
    home, dest = tmp_path / "home", tmp_path / "dl"
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec("https://e.example/a", dest)])
    target = pg_cluster.database()
    assert dltui(home, "ledger", "copy", "--to", target).returncode == 0
    shown = target.replace("dltui@", "***@")
    for argv in (["add", "https://e.example/b", "-d", str(dest)], ["run", "--until-idle"],
                 ["pause", "1"], ["flags", "fsync=off"]):
        done = dltui(home, *argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        [line] = done.stderr.strip().splitlines()
        assert f"was copied to {shown}" in line and f"DLTUI_LEDGER={shown}" in line, line
    status = dltui(home, "status")
    assert status.returncode == 0 and "a" in status.stdout
    assert f"this ledger was copied to {shown}" in status.stderr
    with Ledger(home) as led:
        assert [j.url for j in jobs.list_jobs(led)] == ["https://e.example/a"]
    with Ledger(home, migrate=False) as led:  # as the TUI's writer opens it
        assert led.moved_to == shown
        with pytest.raises(LedgerError, match="was copied to"):
            actions.pause(led, 1, by="tui")
    second = pg_cluster.database()
    assert dltui(home, "ledger", "copy", "--to", second).returncode == 0
    assert second.rsplit("/", 1)[1] in dltui(home, "add", "https://e.example/c", "-d",
                                             str(dest)).stderr


def test_a_copy_cut_by_a_server_restart_copies_nothing_and_says_so(tmp_path, pg_cluster
                                                                    ) -> None:
    """The server restarts half-way through the copy: one line, no traceback;
    the destination holds no job, the SQLite ledger takes changes as before, and the copy
    run again succeeds."""
    import psycopg

    home, dest = tmp_path / "home", tmp_path / "dl"
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec(f"https://e.example/{n}", dest) for n in range(50)])
    target = pg_cluster.database()
    # Held inside the copy's transaction: past BEGIN (which a new connection may run again)
    # the copy waits for this table, so the restart cuts it half-way.
    holder = psycopg.connect(target)
    holder.execute("LOCK TABLE meta IN ACCESS EXCLUSIVE MODE")
    env = {k: v for k, v in os.environ.items() if k != "DLTUI_LEDGER"}
    env.update({**TEST_ENV, "DLTUI_HOME": str(home)})
    copy = subprocess.Popen([sys.executable, "-m", "dltui", "ledger", "copy", "--to", target],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def waiting() -> bool:
            with psycopg.connect(target, autocommit=True) as probe:
                rows = probe.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = "
                                     "'relation' AND NOT granted").fetchone()
            return bool(rows and rows[0])

        wait_for(waiting, "the copy never waited for the table", timeout=30)
        pg_cluster.restart()
        _, err = copy.communicate(timeout=60)
    finally:
        copy.kill()
        holder.close()
    assert copy.returncode == 2 and "Traceback" not in err, err
    [line] = err.strip().splitlines()
    assert "ledger copy to postgresql://***@" in line and "nothing was copied" in line, line
    with Ledger(home, location=target) as pg:
        assert jobs.list_jobs(pg) == []
    assert dltui(home, "add", "https://e.example/late", "-d", str(dest)).returncode == 0
    again = dltui(home, "ledger", "copy", "--to", target)
    assert again.returncode == 0 and "copied 51 jobs" in again.stdout, again.stderr
