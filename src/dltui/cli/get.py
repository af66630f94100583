"""`dltui get URL…`: add and download in one process, in the foreground, like aria2c or curl.

The same ledger, ops and resume rules as `add` + `run`: the jobs are ordinary jobs, and a
download stopped with Ctrl-C resumes at the next `dltui get` (or `dltui run`) of the same URL.
The worker pool leases only this command's jobs, so a shared ledger's queue is left alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from dltui import requests
from dltui.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    _human_bytes,
    _offer_carry_over,
    _request_defaults,
    _settings,
    _transfer_options,
)
from dltui.ledger import Ledger, actions, batched, jobs, reconcile
from dltui.model import Job, JobState
from dltui.rates import SmoothedRate
from dltui.shown import shown
from dltui.urls import redact

#: States in which `get` has nothing more to wait for.
_ENDED = frozenset({JobState.FINALIZED, JobState.FAILED, JobState.CANCELLED, JobState.PAUSED})


def _line(job: Job, rate: float) -> str:
    """One aria2c-style progress entry: ``[#3 file.iso 12MiB/100MiB(12%) DL:5.1MiB ETA:17s]``."""
    done, total = job.bytes_committed, job.bytes_total
    size = f"{_human_bytes(done)}/{_human_bytes(total)}" if total else _human_bytes(done)
    pct = f"({done * 100 // total}%)" if total else ""
    eta = ""
    if total and rate > 0:
        left = int((total - done) / rate)
        eta = f" ETA:{left // 60}m{left % 60:02d}s" if left >= 60 else f" ETA:{left}s"
    state = "" if job.state in (JobState.STREAMING, JobState.FINALIZING) else \
        f" {job.state.value.lower()}"
    return f"[#{job.id} {shown(job.display_name[:30])} {size}{pct} " \
           f"DL:{_human_bytes(int(rate))}/s" \
           f"{eta}{state}]"


def cmd_get(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Add the URLs and download them now; exit 0 when every one is finished, else 1."""
    from dltui.worker import WorkerPool

    settings = _transfer_options(args, _settings(args))
    specs = requests.from_arguments(args.urls, args.dir, args.name, None,
                                    checksum=args.checksum, sent=_request_defaults(args))
    results = jobs.add(ledger, specs, by="get")
    carried = _offer_carry_over(ledger, results, quiet=False, out=sys.stderr)
    # A job carried over to an older one's part: that one downloads in its place.
    results = [jobs.AddResult(carried[r.job.id], False) if r.job.id in carried else r
               for r in results]
    ids, there = [], []
    for result in results:  # a job from an earlier get (or add) is taken up again
        job = result.job
        if job.state is JobState.FINALIZED:
            if job.final_path and os.path.lexists(job.final_path):
                there.append(job.id)  # done before, and the file is where it was put
                continue
            # Finished earlier and its file is gone: removed on purpose, but asked for again.
            actions.download_again(ledger, job.id, reason="asked for again; its file was "
                                                          "removed", by="get")
        elif job.state is JobState.FAILED:
            actions.retry(ledger, job.id, by="get")
        elif job.state is JobState.PAUSED:
            actions.resume(ledger, job.id, by="get")
        ids.append(job.id)
    if not ids:
        return _summary(ledger, there, 0.0, interrupted=False, out=out, there=set(there))
    reconcile.reconcile(ledger, by="get", link_mode=settings.link_mode)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    tty = sys.stderr.isatty()
    pool = WorkerPool(ledger, settings, workers=min(len(ids), settings.workers), only=ids)
    meters = {job_id: SmoothedRate() for job_id in ids}
    began = time.monotonic()
    pool.start()
    try:
        last = 0.0
        while not stop.wait(0.1):
            now = time.monotonic()
            if pool.fatal is not None:
                break
            current = batched.get_many(ledger.conn, ids)  # one query, ten times a second
            for job in current:
                meters[job.id].add(now, job.bytes_committed)
            if all(j.state in _ENDED for j in current) and not pool.active():
                break
            if tty and now - last >= 0.5:
                last = now
                busy = [j for j in current if j.state not in _ENDED]
                line = " ".join(_line(j, meters[j.id].rate) for j in busy[:3])
                more = f" (+{len(busy) - 3} more)" if len(busy) > 3 else ""
                sys.stderr.write(f"\r\x1b[K{line}{more}")
                sys.stderr.flush()
    finally:
        if tty:
            sys.stderr.write("\r\x1b[K")
        pool.stop()  # a stopped download checkpoints and goes back to the queue
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pool.fatal is not None:
        raise pool.fatal
    return _summary(ledger, sorted([*ids, *there]), time.monotonic() - began,
                    interrupted=stop.is_set(), out=out, there=set(there))


def _summary(ledger: Ledger, ids: list[int], seconds: float, *, interrupted: bool,
             out: TextIO, there: set[int] | None = None) -> int:
    """aria2c's "Download Results": one line per job, then what to do about the rest."""
    final = batched.get_many(ledger.conn, ids)
    out.write("Download Results:\n")
    for job in final:
        if job.state is JobState.FINALIZED:
            done = " (already downloaded)" if there and job.id in there else ""
            wanted = job.file_name or job.requested_name
            if not done and wanted and job.final_path and Path(job.final_path).name != wanted:
                # Never overwritten: the name was taken, so the file has the next free one.
                done = f" ({wanted} was taken by another file, which is left as it is)"
            elif job.adopted and not done:
                done = " (the file was there already, with these bytes)"
            out.write(f"OK   #{job.id}  {_human_bytes(job.bytes_total)}  {job.final_path}"
                      f"{done}\n")
        elif job.state is JobState.FAILED:
            out.write(f"ERR  #{job.id}  {redact(job.url)}: {job.error}\n")
        else:
            kept = ""
            if job.bytes_committed:
                have = _human_bytes(job.bytes_committed)
                kept = f", {have} kept" if job.accept_ranges else (
                    f", {have} downloaded that the next run starts over: its server "
                    + ("takes no byte ranges" if job.accept_ranges is False else
                       "has not said it takes byte ranges"))
            out.write(f"INPR #{job.id}  {redact(job.url)} ({job.state.value.lower()}{kept}; "
                      "`dltui get` it again or `dltui run` to finish)\n")
    ok = sum(j.state is JobState.FINALIZED for j in final)
    if interrupted:
        sys.stderr.write(f"dltui get: stopped after {seconds:.1f}s; unfinished downloads "
                         "resume where they stopped\n")
    return EXIT_OK if ok == len(final) else EXIT_FAILURE

