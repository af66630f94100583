"""Hosts of a fleet: each judges only its own processes; other hosts' leases end by TTL."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dltui import paths
from dltui.ledger import Ledger, actions, jobs, leases, reconcile
from dltui.ledger.liveness import HOST_NAME_ENV, lease_is_live, owner_id
from dltui.model import JobState
from tests.conftest import force_state


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_host_never_judges_another_hosts_lease_by_its_own_process_table(
        monkeypatch, tmp_path, pg_url, clock) -> None:
    pid = _dead_pid()  # gone from this machine's process table
    monkeypatch.setenv(paths.LEDGER_ENV, pg_url)
    monkeypatch.setenv(HOST_NAME_ENV, "host-a")
    assert owner_id("w0").startswith("host-a:")
    until = clock() + 60
    assert not lease_is_live(f"host-a:{pid}:1:w0", until)  # ours, and gone: dead at once
    assert lease_is_live(f"host-b:{pid}:1:w0", until)  # theirs: alive until its TTL
    assert not lease_is_live(f"host-b:{pid}:1:w0", clock() - 1)

    with Ledger(tmp_path / "home-a") as led:
        [job] = [r.job for r in jobs.add(led, [jobs.JobSpec("https://e.example/x", tmp_path)])]
        force_state(led, job.id, JobState.STREAMING, lease_owner=f"host-b:{pid}:1:w0",
                    lease_until=until, heartbeat_at=clock())
        # Host A reconciles and leases: host B's job is left alone while its lease runs.
        assert reconcile.reconcile(led, by="test").counts["lease_expired"] == 0
        assert leases.lease_next(led, owner_id("w0"), ttl=30) is None
        clock.advance(61)
        taken = leases.lease_next(led, owner_id("w0"), ttl=30)
        assert taken is not None and taken.id == job.id
        assert taken.lease_owner.startswith("host-a:")

    # The same dead owner, seen from host B itself, is judged at once.
    monkeypatch.setenv(HOST_NAME_ENV, "host-b")
    assert not lease_is_live(f"host-b:{pid}:1:w0", clock() + 60)


def test_a_pool_reports_itself_to_the_fleet_and_leaves_when_it_stops(
        monkeypatch, home, settings, pg_url) -> None:
    from dltui.ledger import fleet
    from dltui.worker import WorkerPool
    from tests.conftest import wait_for

    monkeypatch.setenv(paths.LEDGER_ENV, pg_url)
    monkeypatch.setenv(HOST_NAME_ENV, "dl-07")
    with Ledger(home) as led:
        pool = WorkerPool(led, settings, workers=3)
        pool.start()
        try:
            wait_for(lambda: fleet.processes(led), "the pool never reported itself", timeout=10)
            [proc] = fleet.processes(led)
            assert (proc.host, proc.workers) == ("dl-07", 3)
            assert proc.process == owner_id("x").rsplit(":", 1)[0]
        finally:
            pool.stop()
        assert fleet.processes(led) == []


async def test_a_tui_on_postgresql_hears_of_changes_at_once(monkeypatch, home, dest,
                                                             pg_url) -> None:
    from dltui.tui.app import DltuiApp
    from tests.conftest import TEST_SETTINGS, until

    monkeypatch.setenv(paths.LEDGER_ENV, pg_url)
    app = DltuiApp(home, TEST_SETTINGS, workers=0, poll_interval=60.0)  # polls once a minute
    async with app.run_test() as pilot:
        await pilot.pause(0.5)  # the first poll is in, the next is a minute away
        with Ledger(home) as led:  # another host adds a job
            [added] = jobs.add(led, [jobs.JobSpec("https://e.example/heard", dest)])
        await until(pilot, lambda: added.job.id in app.book.jobs, timeout=5)
        with Ledger(home) as led:
            actions.pause(led, added.job.id, by="another host")
        await until(pilot, lambda: app.book.jobs[added.job.id].state is JobState.PAUSED,
                    timeout=5)


def test_a_host_dying_between_link_and_commit_leaves_one_file(
        monkeypatch, tmp_path, settings, origin, pg_url) -> None:
    import dataclasses

    from dltui.ledger import ops
    from tests.engine.helpers import blob, run_pool, sha

    data = blob(300_000, seed=77)
    digest = sha(data)
    shared = tmp_path / "shared"
    shared.mkdir()
    url = origin.add("/report.pdf", data)
    monkeypatch.setenv(paths.LEDGER_ENV, pg_url)
    monkeypatch.setenv(HOST_NAME_ENV, "host-b")
    with Ledger(tmp_path / "home-b") as led:
        [job] = [r.job for r in jobs.add(led, [jobs.JobSpec(url, shared)])]
        # Host A downloaded it, placed the file in the shared directory, and died before the
        # LINK op and the FINALIZED state were committed; its lease has run out.
        (shared / "report.pdf").write_bytes(data)
        force_state(led, job.id, JobState.FINALIZING, sha256=digest, file_name="report.pdf",
                    bytes_committed=len(data), bytes_total=len(data), part_host="host-a",
                    lease_owner="host-a:4242:1:w0", lease_until=1.0, heartbeat_at=1.0)
        with led.write() as conn:
            ops.start_in(conn, ops.link_key(job.id, digest, shared), job_id=job.id,
                         kind=ops.OpKind.LINK,
                         args={"sha256": digest, "dest": str(shared / "report.pdf")})
        run_pool(led, dataclasses.replace(settings, affinity_grace=0.0), workers=1)
        done = jobs.get(led, job.id)
        assert done.state is JobState.FINALIZED, (done.state, done.error)
        assert done.final_path == str(shared / "report.pdf")
        assert [p.name for p in shared.iterdir()] == ["report.pdf"]  # never "report (1).pdf"
        assert (shared / "report.pdf").read_bytes() == data
        [link] = [o for o in ops.for_job(led, job.id) if o.kind == "LINK"]
        assert link.status == "done"


def test_a_ledger_rides_out_a_server_restart(monkeypatch, tmp_path, pg_cluster) -> None:
    import threading

    url = pg_cluster.database()
    with Ledger(tmp_path / "home", location=url) as led:
        [first] = jobs.add(led, [jobs.JobSpec("https://e.example/before", tmp_path)])
        # The server restarts while this ledger is idle; the next write waits for it to come
        # back on a new connection instead of failing.
        stopped = threading.Event()

        def restart() -> None:
            pg_cluster.restart(pause=1.0, stopped=stopped)

        t = threading.Thread(target=restart)
        t.start()
        stopped.wait(30)
        [second] = jobs.add(led, [jobs.JobSpec("https://e.example/after", tmp_path)])
        t.join()
        assert second.job.id == first.job.id + 1
        assert [j.url for j in jobs.list_jobs(led)] == ["https://e.example/before",
                                                        "https://e.example/after"]


def test_a_running_pool_rides_out_a_server_restart(monkeypatch, tmp_path, settings, origin,
                                                   pg_cluster) -> None:
    from dltui.ledger import fleet
    from dltui.worker import WorkerPool
    from tests.conftest import wait_for
    from tests.engine.helpers import blob

    url = pg_cluster.database()
    monkeypatch.setenv(paths.LEDGER_ENV, url)
    data = blob(50_000, seed=78)
    with Ledger(tmp_path / "home") as led:
        pool = WorkerPool(led, settings, workers=2)
        pool.start()
        try:
            wait_for(lambda: fleet.processes(led), "the pool never reported itself")
            pg_cluster.restart(pause=1.0)  # the pool is idle, polling for work
            [added] = jobs.add(led, [jobs.JobSpec(origin.add("/after.bin", data),
                                                  tmp_path / "dl")])
            wait_for(lambda: jobs.get(led, added.job.id).state is JobState.FINALIZED,
                     "the pool did not carry on after the restart", timeout=30)
            assert pool.fatal is None
        finally:
            pool.stop()
    assert (tmp_path / "dl" / "after.bin").read_bytes() == data


def test_a_one_host_ledger_keeps_its_parts_when_the_host_is_renamed(
        monkeypatch, tmp_path, settings, origin) -> None:
    # A SQLite ledger's parts are in its home, whatever the machine is called now (a container
    # gets a new hostname each run): nothing waits for the old name, nothing is discarded.
    from tests.engine.helpers import blob, run_pool

    monkeypatch.delenv(paths.LEDGER_ENV, raising=False)
    monkeypatch.setenv(HOST_NAME_ENV, "container-2")
    data = blob(40_000, seed=79)
    with Ledger(tmp_path / "home") as led:
        [job] = [r.job for r in jobs.add(led, [jobs.JobSpec(origin.add("/r.bin", data),
                                                            tmp_path / "dl")])]
        force_state(led, job.id, JobState.PLANNED, bytes_committed=1000, part_host="container-1")
        taken = leases.lease_next(led, owner_id("w0"), ttl=30)  # at once, no affinity wait
        assert taken is not None and taken.id == job.id
        leases.release(led, job.id, taken.lease_owner)
        run_pool(led, settings, workers=1)
        done = jobs.get(led, job.id)
        assert done.state is JobState.FINALIZED
        assert not (done.decision_reason or "").startswith("part_on_host")


def test_a_server_that_stays_gone_fails_once_per_timeout_then_fast(tmp_path,
                                                                     pg_cluster) -> None:
    import threading
    import time

    from dltui.errors import LedgerError
    from dltui.ledger import ledger_errors

    url = pg_cluster.database()
    with Ledger(tmp_path / "home", location=url, busy_timeout=1.5) as led:
        jobs.add(led, [jobs.JobSpec("https://e.example/a", tmp_path)])
        stopped = threading.Event()
        t = threading.Thread(target=lambda: pg_cluster.restart(pause=2.5, stopped=stopped))
        t.start()
        try:
            assert stopped.wait(30)
            t0 = time.monotonic()
            with pytest.raises(LedgerError, match="Connection refused"), ledger_errors(led.path):
                jobs.counts(led)  # waits out the timeout for the server, then says why
            assert time.monotonic() - t0 >= 1.0
            # A process stopping on that error releases leases and says goodbye: each of those
            # steps fails at once while the server stays gone, not after another timeout.
            t1 = time.monotonic()
            with pytest.raises(LedgerError, match="Connection refused"), ledger_errors(led.path):
                jobs.add(led, [jobs.JobSpec("https://e.example/b", tmp_path)])
            assert time.monotonic() - t1 < 1.0
        finally:
            t.join(60)
        # Back: the same ledger carries on at once, though its pool's own reconnection may be
        # waiting out a backoff that grew during the outage.
        assert jobs.counts(led)[JobState.PLANNED] == 1


def test_a_running_pool_rides_out_transactions_cut_off_mid_way(monkeypatch, tmp_path, settings,
                                                                origin, pg_cluster) -> None:
    # A server restart or a failover drops connections in the middle of a worker's
    # transaction. Each is rolled back: the job goes back to the queue and resumes from its
    # last checkpoint, and the pool carries on rather than stopping every download.
    import os
    import threading
    import time

    import psycopg

    from dltui.origin import Resource
    from dltui.worker import WorkerPool
    from tests.engine.helpers import blob

    url = pg_cluster.database()
    monkeypatch.setenv(paths.LEDGER_ENV, url)
    monkeypatch.setenv(HOST_NAME_ENV, "cut-host")
    me = f"dltui cut-host {os.getpid()}"
    bodies = [blob(1 << 20, seed=90 + i) for i in range(2)]
    urls = [origin.add(f"/cut{i}.bin", Resource(data=body, rate=640 * 1024))
            for i, body in enumerate(bodies)]
    hits: list[int] = []
    stop = threading.Event()

    def cut() -> None:  # terminate our backends caught between two statements of a transaction
        with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
            while not stop.is_set() and len(hits) < 3:
                row = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s AND state = 'idle in transaction'",
                    (me,)).fetchone()
                if row and row[0]:
                    hits.append(int(row[0]))
                    time.sleep(0.2)  # let the pool get going again between cuts
                time.sleep(0.001)

    with Ledger(tmp_path / "home") as led:
        jobs.add(led, [jobs.JobSpec(u, tmp_path / "dl") for u in urls])
        pool = WorkerPool(led, settings.replace(checkpoint_interval=0.01), workers=2)
        cutter = threading.Thread(target=cut)
        cutter.start()
        try:
            pool.run_until_idle()
        finally:
            stop.set()
            cutter.join(10)
        assert pool.fatal is None
        assert hits, "no transaction was caught mid-way"
        done = jobs.list_jobs(led)
        assert {j.state for j in done} == {JobState.FINALIZED}
    for i, body in enumerate(bodies):
        assert (tmp_path / "dl" / f"cut{i}.bin").read_bytes() == body
