"""The small-file lane against the loopback origin: same ledger story as JobRun, fewer commits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger, events, flags, jobs, leases, ops
from dltui.model import JobState
from dltui.origin import Resource
from dltui.store import Store
from dltui.worker import JobRun, WorkerPool, lane
from tests.conftest import TEST_ENV, assert_placed_once
from tests.engine.helpers import blob, fetch_all, sha

MiB = 1 << 20


def add_small(origin, count: int, prefix: str = "/s") -> dict[str, bytes]:
    payloads = {f"{prefix}{i:03d}.bin": blob(1_000 + 997 * i, seed=i) for i in range(count)}
    for path, data in payloads.items():
        origin.add(path, data)
    return payloads


def story(ledger: Ledger, job_id: int) -> list[str]:
    """The job's events after it was added: state targets and decisions, in order."""
    out = []
    for e in events.for_job(ledger, job_id, 100):
        if e.kind == "state":
            out.append(e.data["to"])
        elif e.kind == "decision":
            out.append(f"decision:{e.data['mode']}")
    return out


def batched(done: list) -> int:
    """Jobs that finished in the same transaction as another job (same finished_at)."""
    counts = Counter(j.finished_at for j in done)
    return sum(n for n in counts.values() if n > 1)


def test_many_small_files_take_the_lane(ledger, home, dest, origin, settings) -> None:
    payloads = add_small(origin, 40)
    done = fetch_all(ledger, dest, settings, *(origin.url(p) for p in payloads))
    for job in done:
        data = payloads["/" + Path(job.url).name]
        assert job.state is JobState.FINALIZED, job.error
        assert Path(job.final_path).read_bytes() == data
        assert job.sha256 == sha(data) and job.bytes_committed == job.bytes_total == len(data)
        assert (job.decision, job.decision_reason) == ("fresh", "no_part")
        assert job.lease_owner is None
        assert story(ledger, job.id) == ["LEASED", "PRECHECKED", "decision:fresh", "STREAMING",
                                         "FINALIZING", "FINALIZED"]
        job_ops = ops.for_job(ledger, job.id)
        assert [(o.kind, o.status, o.runs) for o in job_ops] == [
            ("STREAM", "done", 1), ("FINALIZE", "done", 1), ("LINK", "done", 1)]
        assert job_ops[0].result["sha256"] == job.sha256
        assert job_ops[2].result["dest"] == job.final_path
        assert len(origin.requests("/" + Path(job.url).name, "GET")) == 1
    assert batched(done) >= 20, "the jobs finished one transaction each"
    store = Store(paths.store_dir(home))
    assert all(os.stat(j.final_path).st_ino == os.stat(store.object_path(j.sha256)).st_ino
               for j in done)
    parts = paths.parts_dir(home)
    assert not parts.exists() or not any(parts.iterdir())


def test_flag_off_runs_each_job_alone(ledger, dest, origin, settings) -> None:
    flags.set_flag(ledger, "batch", False, by="test")
    payloads = add_small(origin, 12)
    done = fetch_all(ledger, dest, settings, *(origin.url(p) for p in payloads))
    assert all(j.state is JobState.FINALIZED for j in done)
    assert batched(done) == 0


def test_what_the_lane_cannot_carry_goes_through_jobrun(ledger, dest, origin, settings) -> None:
    payloads = add_small(origin, 10)
    big = blob(2 * MiB, seed=5)
    origin.add("/big.bin", big)
    origin.add("/gone.bin", Resource(status=404))
    origin.add("/flaky.bin", Resource(data=b"x" * 3000, statuses=[503]))
    origin.add("/chunked.bin", Resource(data=b"c" * 5000, chunked=True))
    origin.add("/named", Resource(data=b"n" * 4000, content_disposition='attachment; '
                                                                       'filename="report.csv"'))
    origin.add("/target.bin", b"t" * 2500)
    origin.add("/hop", Resource(redirect="/target.bin"))
    origin.add("/lies.bin", b"l" * 1500)
    urls = [origin.url(p) for p in [*payloads, "/big.bin", "/gone.bin", "/flaky.bin",
                                    "/chunked.bin", "/named", "/hop"]]
    added = jobs.add(ledger, [jobs.JobSpec(u, dest) for u in urls])
    liar = jobs.add(ledger, [jobs.JobSpec(origin.url("/lies.bin"), dest, sha256="0" * 64)])
    pool = WorkerPool(ledger, settings, workers=1)
    pool.run_until_idle()
    by_path = {Path(r.job.url).name: jobs.get(ledger, r.job.id) for r in added + liar}

    assert by_path["big.bin"].state is JobState.FINALIZED
    assert Path(by_path["big.bin"].final_path).read_bytes() == big
    gone = by_path["gone.bin"]
    assert gone.state is JobState.FAILED and "404" in gone.error
    assert len(origin.requests("/gone.bin", "GET")) == 1, "the lane's answer was not reused"
    flaky = by_path["flaky.bin"]
    assert flaky.state is JobState.FINALIZED
    assert [e.kind for e in events.for_job(ledger, flaky.id) if e.kind == "retry"] == ["retry"]
    assert len(origin.requests("/flaky.bin", "GET")) == 2
    assert Path(by_path["chunked.bin"].final_path).read_bytes() == b"c" * 5000
    assert Path(by_path["named"].final_path).name == "report.csv"
    assert Path(by_path["hop"].final_path).read_bytes() == b"t" * 2500
    lies = by_path["lies.bin"]
    assert lies.state is JobState.FAILED and "SHA-256 mismatch" in lies.error
    assert not list(dest.glob("lies*"))
    for name in payloads:
        assert jobs.get(ledger, by_path[name[1:]].id).state is JobState.FINALIZED
    assert batched([by_path[n[1:]] for n in payloads]) >= 2


def test_a_stop_before_the_fetch_ends_the_job_as_asked(ledger, dest, origin,
                                                               settings) -> None:
    payloads = add_small(origin, 4)
    added = jobs.add(ledger, [jobs.JobSpec(origin.url(p), dest) for p in payloads])
    pool = WorkerPool(ledger, settings, workers=1)
    owner = leases.owner_id()
    leased = leases.lease_batch(ledger, owner, settings.lease_ttl, 4)
    assert [j.id for j in leased] == [r.job.id for r in added]
    runs = [JobRun(pool, job, owner) for job in leased]
    runs[0].request_stop("pause")
    runs[1].request_stop("cancel")
    try:
        carried = lane.carry(pool, runs)
        left = [run for run, _ in carried.left]
        assert left == runs[:2]  # not fetched: JobRun ends them as the operator asked
        assert carried.finished == runs[2:]
        for run in left:
            run.run()
    finally:
        pool.client.close()
    assert [len(origin.requests(p, "GET")) for p in payloads] == [0, 0, 1, 1]
    states = [jobs.get(ledger, r.job.id).state for r in runs]
    assert states == [JobState.PAUSED, JobState.CANCELLED, JobState.FINALIZED,
                      JobState.FINALIZED]
    assert ops.for_job(ledger, runs[0].job.id) == []
    assert not paths.part_path(ledger.home, runs[1].job.id).exists()


def test_a_lost_lease_hands_the_batch_back(ledger, dest, origin, settings) -> None:
    payloads = add_small(origin, 3)
    jobs.add(ledger, [jobs.JobSpec(origin.url(p), dest) for p in payloads])
    pool = WorkerPool(ledger, settings, workers=1)
    owner = leases.owner_id()
    runs = [JobRun(pool, job, owner) for job in leases.lease_batch(ledger, owner, 10.0, 3)]
    jobs.update(ledger, runs[2].job.id, owner=None, lease_owner="elsewhere:1:1:t")
    try:
        carried = lane.carry(pool, runs)
    finally:
        pool.client.close()
    # Nothing was recorded for any of them: the first transaction rolled back whole.
    assert [run for run, _ in carried.left] == runs and carried.stale
    assert [jobs.get(ledger, r.job.id).state for r in runs] == [JobState.LEASED] * 3
    assert all(ops.for_job(ledger, r.job.id) == [] for r in runs)


# -- SIGKILL between a lane effect and its record -----------------------------------------------
POINTS = ["write_part", "promote", "link", "finish_many_in"]


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_inside_the_lane_heals(tmp_path, origin, point) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    payloads = add_small(origin, 8)
    payloads["/twin.bin"] = payloads["/s001.bin"]
    origin.add("/twin.bin", payloads["/twin.bin"])
    with Ledger(home) as led:
        jobs.add(led, [jobs.JobSpec(origin.url(p), dest) for p in payloads])
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home)}
    crashed = subprocess.run([sys.executable, "-m", "tests.worker.lane_crasher", point],
                             env=env, capture_output=True, timeout=60)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()
    with Ledger(home) as led:
        mid = [j.state for j in jobs.list_jobs(led)]
    assert set(mid) - {JobState.FINALIZED}, "the crash came after the batch finished"

    rerun = subprocess.run([sys.executable, "-m", "dltui", "run", "--until-idle"], env=env,
                           capture_output=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr.decode()
    with Ledger(home) as led:
        store = Store(paths.store_dir(home))
        for job in jobs.list_jobs(led):
            data = payloads["/" + Path(job.url).name]
            assert job.state is JobState.FINALIZED, (job.id, job.state, job.error)
            assert Path(job.final_path).read_bytes() == data
            assert Path(job.final_path).name == Path(job.url).name
            kinds = Counter(o.kind for o in ops.for_job(led, job.id) if o.status == "done")
            assert kinds["FINALIZE"] == kinds["LINK"] == 1, (job.id, kinds)
            assert not [o for o in ops.for_job(led, job.id) if o.status == "started"]
        assert store.has(sha(payloads["/twin.bin"]))
        assert_placed_once(paths.store_dir(home), jobs.list_jobs(led))
    assert sorted(p.name for p in dest.iterdir()) == sorted(p[1:] for p in payloads)
    objects = [p.name for p in paths.store_dir(home).rglob("*") if p.is_file()]
    assert sorted(objects) == sorted({sha(d) for d in payloads.values()})
    parts = paths.parts_dir(home)
    assert not parts.exists() or not any(parts.iterdir())
