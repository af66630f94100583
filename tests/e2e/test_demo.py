"""`make run` starts `dltui demo`: its origin and queue work end to end (headless here)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from dltui import demo
from dltui.ledger import Ledger, jobs, segments
from dltui.model import JobState
from dltui.worker import WorkerPool
from tests.conftest import TEST_SETTINGS


def test_demo_queue_downloads_fails_and_segments(tmp_path) -> None:
    origin, home, dest = demo.start(tmp_path)
    settings = TEST_SETTINGS.replace(retries=8)
    try:
        with Ledger(home) as led:
            pool = WorkerPool(led, settings, workers=3)
            thread = threading.Thread(target=pool.run_until_idle, daemon=True)
            thread.start()
            served = {f.path: f.resource for f in demo.demo_files()}
            by_path = {j.url.split(str(origin.port), 1)[1]: j.id for j in jobs.list_jobs(led)}
            big = by_path["/iso/debian-netinst.iso"]
            seen_segments = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                seen_segments = seen_segments or bool(segments.for_job(led, big))
                done = {p: jobs.get(led, i).state for p, i in by_path.items()}
                if done["/iso/debian-netinst.iso"] is JobState.FINALIZED and \
                        done["/data/missing.bin"] is JobState.FAILED and \
                        done["/data/report.pdf"] is JobState.FINALIZED:
                    break
                time.sleep(0.02)
            pool.stop()
            thread.join(30)
            assert seen_segments, "the 96 MiB demo file was not downloaded in segments"
            iso = jobs.get(led, big)
            assert iso.state is JobState.FINALIZED, iso.error
            assert iso.sha256 == hashlib.sha256(served["/iso/debian-netinst.iso"].data).hexdigest()
            assert Path(iso.final_path).stat().st_size == 96 << 20
            assert "404" in (jobs.get(led, by_path["/data/missing.bin"]).error or "")
            report = jobs.get(led, by_path["/data/report.pdf"])
            assert Path(report.final_path).name == "Quarterly report.pdf"
            # Whatever was still running went back to the queue for the next start.
            for job in jobs.list_jobs(led):
                assert job.state in (JobState.FINALIZED, JobState.FAILED, JobState.PLANNED)
    finally:
        origin.stop()
    assert dest.is_dir()


def test_a_demo_in_a_temp_dir_leaves_nothing_behind(tmp_path) -> None:
    with demo.session() as (_origin, home, dest):
        root = home.parent
        assert home.is_dir() and root.name.startswith("dltui-demo-")
        (dest / "partial.bin").parent.mkdir(parents=True, exist_ok=True)
        (dest / "partial.bin").write_bytes(b"x" * 1000)
    assert not root.exists()
    with demo.session(tmp_path / "kept") as (_origin, home, _dest):
        pass
    assert home.is_dir()  # asked to keep it: kept
