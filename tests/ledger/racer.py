"""A leasing racer run as a subprocess by the lease tests.

Usage: python -m tests.ledger.racer HOME MODE [THREADS]   (MODE: hold | finish)
Prints "ready", waits for "go" on stdin, leases until nothing is left, prints the leased ids
as JSON, then (in hold mode, still holding every lease) waits for stdin to close before exiting.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from dltui.ledger import Ledger, jobs, leases
from dltui.model import JobState

FINISH_PATH = (JobState.PRECHECKED, JobState.STREAMING, JobState.FINALIZING, JobState.FINALIZED)


def finish(ledger: Ledger, job_id: int, owner: str) -> None:
    for state in FINISH_PATH:
        jobs.transition(ledger, job_id, state, owner=owner)
    leases.release(ledger, job_id, owner)


def race(ledger: Ledger, owner: str, mode: str, ttl: float = 3600.0) -> list[int]:
    taken: list[int] = []
    while (job := leases.lease_next(ledger, owner, ttl)) is not None:
        taken.append(job.id)
        if mode == "finish":
            finish(ledger, job.id, owner)
        # SQLite's busy handler sleeps in milliseconds while a tight loop re-takes the write
        # lock at once; real workers download between leases, and so the others get a turn.
        time.sleep(0.001)
    return taken


def main() -> None:
    home, mode = Path(sys.argv[1]), sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    ledger = Ledger(home)
    print("ready", flush=True)  # the parent starts the race once every racer is here
    sys.stdin.readline()
    if threads == 1:
        taken = race(ledger, leases.owner_id(), mode)
    else:  # several racers in this process, as a worker pool's threads
        found: list[list[int]] = [[] for _ in range(threads)]

        def run(i: int) -> None:
            found[i] = race(ledger, leases.owner_id(), mode)

        pool = [threading.Thread(target=run, args=(i,), name=f"racer-{i}")
                for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        taken = [j for ids in found for j in ids]
    print(json.dumps(taken), flush=True)
    sys.stdin.read()
    ledger.close()


if __name__ == "__main__":
    main()
