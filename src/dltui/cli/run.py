"""The sub-commands that run downloads: run (the headless worker pool), the TUI, demo."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TextIO

from dltui import config, paths
from dltui.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    _apply_env_flags,
    _capped,
    _human_bytes,
    _report,
    _select_ledger,
    _settings,
    _transfer_options,
)
from dltui.errors import (
    DltuiError,
    UsageError,
)
from dltui.ledger import Ledger, jobs, reconcile
from dltui.ledger.liveness import hostname
from dltui.model import JobState
from dltui.rates import SmoothedRate
from dltui.shown import shown


# -- run ---------------------------------------------------------------------------------------
def _rate(n: float) -> str:
    return _human_bytes(int(n)) + "/s"


def auto_processes(ledger: Ledger, workers: int) -> int:
    """Processes for a run left to choose: one per core (at most four) while more jobs are
    queued than one process runs at once, since Python runs one thread at a time and small
    files are CPU-bound; else one, which large files on few connections need no more than."""
    queued, _ = jobs.pending_work(ledger)
    if queued <= workers:
        return 1
    return max(1, min(os.cpu_count() or 1, 4, -(-queued // workers)))


def cmd_run(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Run the worker pool headless; stop on SIGINT/SIGTERM (jobs go back to the queue)."""
    from dltui.worker import WorkerPool

    settings = _transfer_options(args, _settings(args))
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    workers = _capped("--workers", workers, "workers")
    processes = args.processes if args.processes is not None else settings.processes
    if processes < 0 or (args.processes is not None and processes < 1):
        raise UsageError(f"--processes must be at least 1, got {processes}")
    if processes == 0:
        processes = 1 if args.worker_process else auto_processes(ledger, workers)
        if args.workers is None:  # the setting counts downloads over all the chosen processes
            workers = max(1, -(-workers // processes))
    processes = _capped("--processes", processes, "processes")
    child = args.worker_process
    if not child and processes > 1 and settings.max_bandwidth:
        # The limit is for the whole run: each process meters its share of it.
        settings = settings.replace(max_bandwidth=max(1, settings.max_bandwidth // processes))
    tty = sys.stderr.isatty() and not child
    if not child:
        report = reconcile.reconcile(ledger, by="run", link_mode=settings.link_mode)
        if report.total and tty:
            summary = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v)
            sys.stderr.write(f"dltui run: reconciled: {summary}\n")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    helpers = [] if child else _start_helpers(args, ledger, workers, processes - 1, settings)
    parent = os.getppid()
    pool = WorkerPool(ledger, settings, workers=workers)
    pool.start()
    smoothed = SmoothedRate()
    smoothed.add(time.monotonic(), 0)
    last_t = time.monotonic()
    try:
        # Check often (the end of a batch should not wait out a long sleep); print twice a second.
        while not stop.wait(0.05):
            if child and os.getppid() != parent:
                stop.set()  # the process that started this one is gone: do not outlive it
                break
            now = time.monotonic()
            if tty and now - last_t >= 0.5:
                smoothed.add(now, pool.stats.bytes)
                rate, last_t = smoothed.rate, now
                counts = jobs.counts(ledger)
                sys.stderr.write(
                    f"\r\x1b[Kdltui run: {len(pool.active())} active, "
                    f"{counts[JobState.PLANNED]} queued, {counts[JobState.FINALIZED]} done, "
                    f"{counts[JobState.FAILED]} failed"
                    # Counted like the TUI's Failed tab, which lists both.
                    + (f", {counts[JobState.CANCELLED]} cancelled"
                       if counts[JobState.CANCELLED] else "")
                    + f", {_rate(rate)}"
                )
                sys.stderr.flush()
            if pool.fatal is not None:
                break
            if args.until_idle and not pool.active() and pool.idle():
                break
    finally:
        if tty:
            sys.stderr.write("\r\x1b[K")
        if stop.is_set():
            for helper in helpers:
                helper.terminate()  # each checkpoints and requeues its own downloads
        pool.stop()
        helper_failed = _wait_helpers(helpers)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pool.fatal is not None:
        raise pool.fatal
    if stop.is_set() and tty:
        sys.stderr.write("dltui run: stopped; active downloads were checkpointed and requeued\n")
    if args.until_idle and not child:
        elsewhere = jobs.pinned_elsewhere(ledger, hostname())
        if elsewhere:
            hosts = ", ".join(f"{shown(h)} {n}" for h, n in elsewhere.items())
            sys.stderr.write(f"dltui run: left {sum(elsewhere.values())} job(s) pinned to other "
                             f"hosts to them ({hosts})\n")
    failed = pool.stats.failed or helper_failed
    return EXIT_FAILURE if failed and args.until_idle else EXIT_OK


def _start_helpers(args: argparse.Namespace, ledger: Ledger, workers: int, count: int,
                   settings: config.Settings) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` more `dltui run` processes on the same ledger (see ``processes``),
    each with this run's options: its connections and its share of the bandwidth limit
    (``settings`` has the share already); the rest they read as this process did (the
    environment, the same config file)."""
    cmd = [sys.executable, "-m", "dltui", "--home", str(ledger.home)]
    if args.config is not None:
        cmd += ["--config", str(args.config)]
    cmd += ["run", "--workers", str(workers), "--worker-process",
            "-x", str(settings.connections_per_file)]
    if settings.max_bandwidth:
        cmd += ["--max-bandwidth", str(settings.max_bandwidth)]
    if args.until_idle:
        cmd.append("--until-idle")
    return [subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            for _ in range(count)]


def _wait_helpers(helpers: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> bool:
    """Wait for the helper processes; True when one reported failed jobs or crashed."""
    failed = False
    deadline = time.monotonic() + timeout
    for helper in helpers:
        try:
            code = helper.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            helper.kill()  # its leases die with it; the next run takes the jobs over
            code = helper.wait()
        failed = failed or code != EXIT_OK
    return failed


def _tui(args: argparse.Namespace) -> int:
    """``dltui`` with no command: the TUI, with in-process workers unless ``--workers 0``."""
    home = (args.home if args.home is not None else paths.default_home()).expanduser()
    try:
        _select_ledger(args)
        settings = _settings(args)
        if args.workers is not None and args.workers < 0:
            raise UsageError(f"--workers must be 0 or more, got {args.workers}")
        if args.workers:
            args.workers = _capped("--workers", args.workers, "workers")
        with Ledger(home) as ledger:
            _apply_env_flags(ledger)
    except DltuiError as exc:
        return _report("dltui", exc)
    from dltui.tui.app import DltuiApp

    DltuiApp(home, settings, workers=args.workers, theme=args.theme).run()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """A loopback origin, a demo ledger under a temp home, and the TUI with workers running."""
    from dltui import demo
    from dltui.tui.app import DltuiApp

    settings = _settings(args).replace(trust_env=False, retries=8, backoff_max=2.0)
    with demo.session(args.demo_dir) as (_origin, home, dest):
        # The demo's throw-away ledger, whatever DLTUI_LEDGER names.
        os.environ[paths.LEDGER_ENV] = str(paths.ledger_path(home))
        DltuiApp(home, settings, workers=args.workers or 3, theme=args.theme).run()
    if args.demo_dir is not None:
        sys.stderr.write(f"dltui demo: ledger in {home}, files in {dest}\n")
    return EXIT_OK
