import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dltui.errors import LeaseLost
from dltui.ledger import Ledger, events, jobs, leases, ops
from dltui.model import JobState
from tests.conftest import add_job, force_state
from tests.ledger.racer import race

ROOT = Path(__file__).resolve().parents[2]
N_JOBS = 1000
N_RACERS = 8


def _n(ledger: Ledger) -> int:
    # Each PostgreSQL write is a few round trips over TCP: fewer jobs make the same race.
    return 300 if ledger.pg else N_JOBS
FOREIGN = "elsewhere:1:1:worker"


def _fill(ledger: Ledger, dest: Path, n: int) -> None:
    jobs.add(ledger, [jobs.JobSpec(f"http://example.com/f{i}", dest) for i in range(n)])


def _assert_each_job_leased_once(ledger: Ledger, taken: list[list[int]]) -> None:
    flat = [j for ids in taken for j in ids]
    assert len(flat) == len(set(flat)) == _n(ledger)
    assert sum(1 for ids in taken if ids) >= 2, "the race never happened"
    attempts = {r[0] for r in ledger.conn.execute("SELECT DISTINCT attempts FROM jobs")}
    assert attempts == {1}


@pytest.mark.parametrize("mode", ["hold", "finish"])
def test_threads_race(ledger, dest, mode: str) -> None:
    _fill(ledger, dest, _n(ledger))
    results: list[list[int]] = [[] for _ in range(N_RACERS)]
    barrier = threading.Barrier(N_RACERS)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = race(ledger, leases.owner_id(), mode)

    threads = [threading.Thread(target=run, args=(i,), name=f"racer-{i}") for i in range(N_RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_each_job_leased_once(ledger, results)
    expected = JobState.LEASED if mode == "hold" else JobState.FINALIZED
    assert jobs.counts(ledger)[expected] == _n(ledger)


@pytest.mark.parametrize("mode", ["hold", "finish"])
def test_processes_race(ledger, home, dest, mode: str) -> None:
    _fill(ledger, dest, _n(ledger))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.racer", str(home), mode],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(N_RACERS)
    ]
    try:
        for p in procs:  # a real barrier: every racer has imported and opened the ledger
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        taken = [json.loads(p.stdout.readline()) for p in procs]
        # Every racer is still alive here, holding its leases: none may have been taken twice.
        _assert_each_job_leased_once(ledger, taken)
        owners = {r[0] for r in ledger.conn.execute("SELECT DISTINCT lease_owner FROM jobs")}
        if mode == "hold":
            assert len(owners) == sum(1 for ids in taken if ids)
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=30)


def test_expiry_and_takeover(ledger, dest, clock) -> None:
    job_id = add_job(ledger, dest)
    first = leases.lease_next(ledger, FOREIGN, ttl=0.2)
    assert first is not None and first.id == job_id
    assert leases.lease_next(ledger, "me:2:2:t", ttl=60) is None  # live lease: not taken
    clock.advance(0.3)
    second = leases.lease_next(ledger, "me:2:2:t", ttl=60)
    assert second is not None and second.id == job_id
    assert second.lease_owner == "me:2:2:t" and second.attempts == 2
    kinds = [(e.data.get("to"), e.data.get("reason")) for e in events.for_job(ledger, job_id)]
    assert ("PLANNED", "lease expired") in kinds
    # The old holder can no longer touch the job.
    with pytest.raises(LeaseLost):
        leases.renew(ledger, job_id, FOREIGN)
    with pytest.raises(LeaseLost):
        jobs.update(ledger, job_id, owner=FOREIGN, bytes_committed=5)
    with pytest.raises(LeaseLost):
        jobs.transition(ledger, job_id, JobState.PRECHECKED, owner=FOREIGN)
    with pytest.raises(LeaseLost):
        ops.run_effect(ledger, "k", lambda: 1, job_id=job_id, kind="HEAD", owner=FOREIGN)
    leases.release(ledger, job_id, FOREIGN)  # a no-op for a non-holder
    assert jobs.get(ledger, job_id).lease_owner == "me:2:2:t"


def test_renew_extends_only_for_holder(ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    leases.lease_next(ledger, FOREIGN, ttl=0.5)
    before = jobs.get(ledger, job_id)
    until = leases.renew(ledger, job_id, FOREIGN, ttl=100)
    after = jobs.get(ledger, job_id)
    assert after.lease_until == until > before.lease_until
    assert after.rev > before.rev
    with pytest.raises(LeaseLost):
        leases.renew(ledger, job_id, "other:1:1:t")


def test_release_clears_lease(ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    leases.lease_next(ledger, FOREIGN)
    leases.release(ledger, job_id, FOREIGN)
    job = jobs.get(ledger, job_id)
    assert (job.lease_owner, job.lease_until, job.heartbeat_at) == (None, None, None)


def test_expired_lease_with_pending_pause_or_cancel(ledger, dest) -> None:
    a = add_job(ledger, dest, "http://example.com/a")
    b = add_job(ledger, dest, "http://example.com/b")
    for job_id, control in ((a, "pause"), (b, "cancel")):
        force_state(ledger, job_id, JobState.STREAMING, lease_owner=FOREIGN, lease_until=1.0,
                    control=control)
    assert leases.lease_next(ledger, "me:1:1:t") is None
    assert jobs.get(ledger, a).state is JobState.PAUSED
    assert jobs.get(ledger, b).state is JobState.CANCELLED


def test_dead_local_owner_counts_as_expired_at_once(home, ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ledger.racer", str(home), "hold"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline()) == [job_id]
    owner = jobs.get(ledger, job_id).lease_owner
    assert owner.split(":")[1] == str(proc.pid)
    assert leases.lease_is_live(owner, jobs.get(ledger, job_id).lease_until)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not leases.lease_is_live(owner, jobs.get(ledger, job_id).lease_until)
    taken = leases.lease_next(ledger, leases.owner_id(), ttl=60)  # TTL of 3600 s not waited out
    assert taken is not None and taken.id == job_id


def test_owner_id_shape_and_pid_reuse() -> None:
    host, pid, start, thread = leases.owner_id().split(":", 3)
    assert int(pid) == os.getpid() and thread == threading.current_thread().name
    assert not leases.owner_is_dead(leases.owner_id())
    # Same pid, different start time: the pid was reused by another process.
    assert leases.owner_is_dead(f"{host}:{pid}:{int(start) + 1 if start != '0' else 1}:x")
    assert not leases.owner_is_dead("another-host:1:1:x")
