"""Ledger benchmark: bulk add, leasing under contention, and the TUI's "changed since" poll.

Run: .venv/bin/python bench/ledger.py   (or `make bench-ledger`). Uses a temp dir; no network.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dltui.ledger import Ledger, jobs, leases  # noqa: E402
from tests.ledger.racer import race  # noqa: E402


def _specs(n: int, dest: Path, prefix: str) -> list[jobs.JobSpec]:
    return [jobs.JobSpec(f"https://example.com/{prefix}/{i}.bin", dest) for i in range(n)]


def bench_add(home: Path, n: int) -> float:
    led = Ledger(home)
    specs = _specs(n, home / "dl", "add")
    t0 = time.perf_counter()
    jobs.add(led, specs)
    elapsed = time.perf_counter() - t0
    led.close()
    return elapsed


def bench_lease(home: Path, n: int, threads: int) -> float:
    led = Ledger(home)
    jobs.add(led, _specs(n, home / "dl", "lease"))
    barrier = threading.Barrier(threads + 1)
    done: list[int] = []

    def worker() -> None:
        barrier.wait()
        done.extend(race(led, leases.owner_id(), "finish"))

    pool = [threading.Thread(target=worker, name=f"w{i}") for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    assert sorted(done) == list(range(1, n + 1)), "a job was lost or leased twice"
    led.close()
    return elapsed


def bench_poll(home: Path, n: int, changed: int, repeats: int) -> tuple[float, float]:
    led = Ledger(home)
    jobs.add(led, _specs(n, home / "dl", "poll"))
    cursor = jobs.current_rev(led)
    step = n // changed
    for job_id in range(1, n + 1, step)[:changed]:
        jobs.update(led, job_id, owner=None, bytes_committed=job_id)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = jobs.changed_since(led, cursor)
        samples.append(time.perf_counter() - t0)
        assert len(rows) == changed
    led.close()
    return statistics.median(samples), min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--lease-jobs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dltui-bench-") as tmp:
        base = Path(tmp)
        add = bench_add(base / "add", args.jobs)
        lease = bench_lease(base / "lease", args.lease_jobs, args.threads)
        poll_med, poll_min = bench_poll(base / "poll", args.jobs, 50, 200)
    print("| ledger benchmark | result |")
    print("| --- | --- |")
    print(f"| add {args.jobs:,} jobs (one batch) | {add:.2f} s ({args.jobs / add:,.0f} jobs/s) |")
    print(f"| lease + finish {args.lease_jobs:,} jobs, {args.threads} threads | {lease:.2f} s "
          f"({args.lease_jobs / lease:,.0f} jobs/s) |")
    print(f"| poll 'changed since rev N', {args.jobs:,} jobs, 50 changed | "
          f"{poll_med * 1e3:.2f} ms median ({poll_min * 1e3:.2f} ms min) |")


if __name__ == "__main__":
    main()
