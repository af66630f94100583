"""`dltui run` SIGKILLed at random moments, again and again: nothing is lost or spliced."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger, jobs, ops
from dltui.model import JobState
from dltui.origin import Resource
from dltui.store import Store
from tests.conftest import TEST_ENV, assert_placed_once
from tests.engine.helpers import blob, sha

MiB = 1 << 20
KILLS = 22


def _env(home: Path) -> dict[str, str]:
    # Files of 4 MiB and more download as 2-3 segments, so kills land mid-segment too.
    return {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_CHECKPOINT_BYTES": "256K",
            "DLTUI_CONNECTIONS_PER_FILE": "3", "DLTUI_MIN_SEGMENT_SIZE": "2M"}


def _run(home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dltui", "run", "--workers", "3", "--processes", "1",
         "--until-idle"],
        env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


# Ten kills in every `make test`; the full soak (`make test-all`) lands KILLS of them.
@pytest.mark.parametrize("wanted", [10, pytest.param(KILLS, marks=pytest.mark.slow)])
def test_sigkill_and_restart_many_times(tmp_path, origin, wanted: int) -> None:
    rng = random.Random(20261122)
    home, dest = tmp_path / "home", tmp_path / "dl"
    payloads: dict[str, bytes] = {}
    for i, size in enumerate([6 * MiB, 5 * MiB, 4 * MiB, 3 * MiB, 2 * MiB, 700_000, 1]):
        payloads[f"/file{i}.bin"] = blob(size, seed=100 + i)
    payloads["/twin-a.bin"] = payloads["/twin-b.bin"] = blob(3 * MiB, seed=999)
    for path, data in payloads.items():
        # Throttled (per connection: segments run in parallel) so that kills land mid-stream as
        # well as in start-up and finalizing.
        origin.add(path, Resource(data=data, rate=MiB // 2))
    led = Ledger(home)
    jobs.add(led, [jobs.JobSpec(origin.url(p), dest) for p in payloads])

    kills = runs = 0
    while kills < wanted and runs < 3 * wanted:
        runs += 1
        proc = _run(home)
        time.sleep(rng.uniform(0.2, 1.2))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills >= wanted * 4 // 5, f"only {kills} kills landed before the batch finished"

    with origin.lock:  # the kills are done: the last run may go at full speed
        for resource in origin.resources.values():
            resource.rate = None
    final = _run(home)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()

    by_name: dict[str, bytes] = {Path(p).name: d for p, d in payloads.items()}
    store = Store(paths.store_dir(home))
    for job in jobs.list_jobs(led):
        assert job.state is JobState.FINALIZED, (job.id, job.state, job.error)
        expected = by_name[Path(job.url).name]
        assert job.sha256 == sha(expected)
        target = Path(job.final_path)
        assert target.parent == dest and target.name == Path(job.url).name
        assert hashlib.sha256(target.read_bytes()).hexdigest() == job.sha256
        assert store.has(job.sha256)
        job_ops = ops.for_job(led, job.id)
        for kind in ("FINALIZE", "LINK"):
            done = [o for o in job_ops if o.kind == kind]
            assert len(done) == 1 and done[0].status == "done", (job.id, kind, done)
        assert not [o for o in job_ops if o.status == "started"]
    assert_placed_once(paths.store_dir(home), jobs.list_jobs(led))
    # Every effect happened once: one object per distinct content, one file per job, no extras.
    objects = [p for p in paths.store_dir(home).rglob("*") if p.is_file()]
    assert sorted(o.name for o in objects) == sorted({sha(d) for d in payloads.values()})
    assert sorted(p.name for p in dest.iterdir()) == sorted(by_name)
    created = [o.result for j in jobs.list_jobs(led) for o in ops.for_job(led, j.id)
               if o.kind == "FINALIZE" and o.result.get("applied")]
    assert len(created) <= len(objects)
    # Segments resumed from their checkpoints: ranged GETs that start inside a segment.
    segmented = [r for p in ("/file0.bin", "/file1.bin", "/file2.bin")
                 for r in origin.requests(p, "GET")
                 if re.match(r"^bytes=\d+-\d+$", r.headers.get("range", ""))]
    assert segmented and all(r.headers.get("if-range") for r in segmented)
    bounds = {0, 2 * MiB, 4 * MiB, 5 * MiB // 2}
    starts = {int(r.headers["range"][6:].split("-")[0]) for r in segmented}
    assert starts - bounds, "no segment was resumed from a checkpoint"
    assert led.conn.execute("SELECT count(*) FROM segments").fetchone()[0] == 0
    parts_dir = paths.parts_dir(home)
    assert not parts_dir.exists() or not any(parts_dir.iterdir())
    outside = [p for p in tmp_path.rglob("*")
               if p.is_file() and home not in p.parents and dest not in p.parents]
    assert outside == []
    led.close()
