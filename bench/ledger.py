"""Ledger benchmark: bulk add, leasing under contention, the TUI's "changed since" poll, and
both backends side by side: lease-and-finish throughput with 1, 4 and 16 workers in 1 and 2
processes on SQLite and on PostgreSQL (a throw-away local cluster), and how soon a TUI on
PostgreSQL hears of a commit (LISTEN/NOTIFY).

Run: .venv/bin/python bench/ledger.py   (or `make bench-ledger`). Uses a temp dir; no network
beyond loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dltui.ledger import Ledger, jobs, leases  # noqa: E402
from tests.ledger.racer import race  # noqa: E402
from tests.pg import Cluster  # noqa: E402


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
    cursor = jobs.cursor_now(led)
    step = n // changed
    for job_id in range(1, n + 1, step)[:changed]:
        jobs.update(led, job_id, owner=None, bytes_committed=job_id)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows, _ = jobs.changes(led, cursor)
        samples.append(time.perf_counter() - t0)
        assert len(rows) == changed
    led.close()
    return statistics.median(samples), min(samples)


def bench_lease_fleet(location: str, home: Path, n: int, threads: int, processes: int) -> float:
    """Lease and finish ``n`` jobs with ``threads`` threads in each of ``processes`` processes
    (racer subprocesses), all on the ledger at ``location``; seconds from go to the last."""
    env = {**os.environ, "DLTUI_LEDGER": location, "PYTHONPATH": str(ROOT)}
    with Ledger(home, location=location) as led:
        jobs.add(led, _specs(n, home / "dl", f"fleet-{threads}-{processes}"))
    procs = [subprocess.Popen([sys.executable, "-m", "tests.ledger.racer", str(home), "finish",
                               str(threads)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    done = [j for p in procs for j in json.loads(p.stdout.readline())]  # type: ignore[union-attr]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.stdin.close()  # type: ignore[union-attr]
        p.wait(timeout=60)
    assert len(done) == len(set(done)) == n, "a job was lost or leased twice"
    return elapsed


def bench_notify(location: str, home: Path, repeats: int) -> tuple[float, float]:
    """Seconds from a commit to a waiting reader's wake-up (PostgreSQL LISTEN/NOTIFY)."""
    from dltui.ledger.notify import ChangeWaiter

    stop = threading.Event()
    with Ledger(home, location=location) as led:
        [job_id] = [r.job.id for r in jobs.add(led, _specs(1, home / "dl", "notify"))]
        waiter = ChangeWaiter(led)
        assert waiter.listening
        samples = []
        for i in range(repeats):
            woke = threading.Event()

            def listen(flag: threading.Event = woke) -> None:
                if waiter.wait(5, stop):
                    flag.set()

            t = threading.Thread(target=listen)
            t.start()
            time.sleep(0.02)  # the reader is waiting
            t0 = time.perf_counter()
            jobs.update(led, job_id, owner=None, bytes_committed=i)
            t.join()
            assert woke.is_set()
            samples.append(time.perf_counter() - t0)
        waiter.close()
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--lease-jobs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--fleet-jobs", type=int, default=2_000)
    args = parser.parse_args()
    fleet_rows = []
    with tempfile.TemporaryDirectory(prefix="dltui-bench-") as tmp:
        base = Path(tmp)
        add = bench_add(base / "add", args.jobs)
        lease = bench_lease(base / "lease", args.lease_jobs, args.threads)
        poll_med, poll_min = bench_poll(base / "poll", args.jobs, 50, 200)
        cluster = Cluster()
        try:
            for workers in (1, 4, 16):
                for processes in (1, 2):
                    if workers < processes:
                        continue  # one worker lives in one process
                    per = workers // processes
                    cells = []
                    for name in ("sqlite", "postgresql"):
                        home = base / f"fleet-{name}-{workers}-{processes}"
                        location = str(home / "ledger.db") if name == "sqlite" \
                            else cluster.database()
                        took = bench_lease_fleet(location, home, args.fleet_jobs, per,
                                                 processes)
                        cells.append(args.fleet_jobs / took)
                    fleet_rows.append((workers, processes, *cells))
            notify_med, notify_max = bench_notify(cluster.database(), base / "notify", 50)
        finally:
            cluster.stop()
    print("| ledger benchmark | result |")
    print("| --- | --- |")
    print(f"| add {args.jobs:,} jobs (one batch) | {add:.2f} s ({args.jobs / add:,.0f} jobs/s) |")
    print(f"| lease + finish {args.lease_jobs:,} jobs, {args.threads} threads | {lease:.2f} s "
          f"({args.lease_jobs / lease:,.0f} jobs/s) |")
    print(f"| poll the changes since the last read, {args.jobs:,} jobs, 50 changed | "
          f"{poll_med * 1e3:.2f} ms median ({poll_min * 1e3:.2f} ms min) |")
    print(f"| TUI hears of a commit on PostgreSQL (LISTEN/NOTIFY) | {notify_med * 1e3:.1f} ms "
          f"median ({notify_max * 1e3:.1f} ms max; SQLite: the poll interval, 0.5 s) |")
    print()
    # The cluster is the tests' own: local, fsync off (SQLite in WAL does not fsync each
    # commit either); a real server adds its network round trips to every statement.
    print(f"| lease + finish {args.fleet_jobs:,} jobs (local cluster) | SQLite jobs/s | "
          "PostgreSQL jobs/s | PostgreSQL / SQLite |")
    print("| --- | --- | --- | --- |")
    for workers, processes, lite, pg in fleet_rows:
        print(f"| {workers} worker(s) in {processes} process(es) | {lite:,.0f} | {pg:,.0f} | "
              f"{pg / lite:.2f} |")


if __name__ == "__main__":
    main()
