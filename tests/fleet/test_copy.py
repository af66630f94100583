"""`dltui ledger copy --to URL`: a one-host SQLite ledger moves into PostgreSQL, ids and
history kept, and the fleet carries on from there."""

from __future__ import annotations

import json

from dltui.ledger import Ledger, flags, jobs, ops
from dltui.ledger.liveness import HOST_NAME_ENV
from dltui.model import JobState
from tests.conftest import force_state
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
    # A second copy would mix two ledgers: refused, one line, exit 2.
    again = dltui(home, "ledger", "copy", "--to", pg_url)
    assert again.returncode == 2 and "already holds jobs" in again.stderr
    assert len(again.stderr.splitlines()) == 1
    bad = dltui(home, "ledger", "copy", "--to", str(tmp_path / "x.db"))
    assert bad.returncode == 2 and "postgresql://" in bad.stderr
