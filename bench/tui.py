"""TUI benchmark: start-up, one poll with 50 changed rows, and peak RSS, at 1k/10k/100k jobs.

Run: .venv/bin/python bench/tui.py  (or `make bench-tui`). Each size runs in its own process so
its peak RSS is its own. No network: the ledger is filled directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dltui.ledger import Ledger, jobs  # noqa: E402
from dltui.tui.app import DltuiApp  # noqa: E402


def _fill(home: Path, n: int) -> None:
    with Ledger(home) as led:
        for start in range(0, n, 20_000):
            count = min(20_000, n - start)
            jobs.add(led, [jobs.JobSpec(f"https://example.com/set/{start + i}.bin", home / "dl")
                           for i in range(count)])


async def _measure(home: Path, n: int) -> dict[str, float]:
    app = DltuiApp(home, workers=0, poll_interval=None)
    t0 = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        startup = time.perf_counter() - t0
        assert len(app.book.jobs) == n
        led = Ledger(home, migrate=False)
        polls = []
        for round_ in range(20):
            for k in range(50):
                job_id = 1 + (round_ * 997 + k * 7919) % n
                jobs.update(led, job_id, owner=None, bytes_committed=round_ * 1000 + k)
            t1 = time.perf_counter()
            message = app._read(led, app._cursor, app.table.current, app._event_id)
            app._cursor, app._event_id = message.cursor, message.event_id
            app._apply(message, tick=True)
            await pilot.pause()
            polls.append(time.perf_counter() - t1)
            assert len(message.changed) == 50
        led.close()
    return {"jobs": n, "startup_s": startup, "poll_ms": statistics.median(polls) * 1e3,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def one(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dltui-bench-tui-") as tmp:
        home = Path(tmp) / "home"
        _fill(home, n)
        print(json.dumps(asyncio.run(_measure(home, n))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    if args.one:
        one(args.one)
        return
    print("| jobs | start-up | poll, 50 changed rows (median of 20) | peak RSS |")
    print("| ---: | ---: | ---: | ---: |")
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True,
                             text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {n:,} | {r['startup_s']:.2f} s | {r['poll_ms']:.1f} ms | "
              f"{r['rss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
