"""Command line: argument parsing and wiring; one function per sub-command."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from dltui import __version__, config, paths, requests
from dltui.errors import (
    DltuiError,
    IllegalTransition,
    LedgerError,
    NotApplicable,
    UnknownJob,
    UsageError,
)
from dltui.ledger import Ledger, db_error, flags, jobs, reconcile, segments
from dltui.model import Job, JobState, Segment
from dltui.units import human_size
from dltui.urls import redact, redact_text

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
MAX_JOB_ID = (1 << 63) - 1  # SQLite's INTEGER range
_CREATING = frozenset({"add", "run", "flags"})


class _Parser(argparse.ArgumentParser):
    """argparse, but every error is one line naming the problem and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _human_bytes(n: int | None) -> str:
    return human_size(n, compact=False)


def _progress(job: Job) -> str:
    if job.bytes_total:
        return f"{100 * job.bytes_committed / job.bytes_total:5.1f}%"
    return "  -  " if job.bytes_committed == 0 else "  ?  "


def _status_dict(job: Job, segs: list[Segment] | None = None, *,
                 secrets: bool = False) -> dict[str, object]:
    return {
        "id": job.id,
        "url": job.url if secrets else redact(job.url),
        "name": job.display_name,
        "dest_dir": job.dest_dir,
        "state": job.state.value,
        "control": job.control.value,
        "bytes_committed": job.bytes_committed,
        "bytes_total": job.bytes_total,
        "sha256": job.sha256,
        "expected_sha256": job.expected_sha256,
        "final_path": job.final_path,
        "decision": job.decision,
        "reason": job.decision_reason,
        "attempts": job.attempts,
        "lease_owner": job.lease_owner,
        "lease_until": job.lease_until,
        "error": job.error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        # Only while a segmented download runs: each range and its written / fsynced bytes.
        **({"segments": [{"index": s.index, "start": s.start, "end": s.end, "done": s.done,
                          "fsynced": s.durable} for s in segs]} if segs else {}),
    }


# -- add ---------------------------------------------------------------------------------------
def _read_text(source: str) -> str:
    """An input file's text (``-`` for stdin)."""
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read input file {source!r}: {reason}") from None


def cmd_add(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Queue downloads; re-adding the same URL and destination reports the existing job."""
    listing = None if not args.input_file else (args.input_file, _read_text(args.input_file))
    specs = requests.from_arguments(args.urls, args.dir, args.name, args.sha256,
                                    input_file=listing)
    for result in jobs.add(ledger, specs):
        job = result.job
        if args.json:
            out.write(json.dumps({**_status_dict(job), "created": result.created}) + "\n")
        elif result.created:
            out.write(f"added job {job.id}: {redact(job.url)} -> {job.dest_dir}\n")
        else:
            out.write(f"job {job.id} already exists ({job.state}): {redact(job.url)} -> "
                      f"{job.dest_dir}\n")
    return EXIT_OK


# -- status ------------------------------------------------------------------------------------
def _parse_states(values: Sequence[str]) -> list[JobState] | None:
    if not values:
        return None
    states = []
    for value in values:
        for item in value.split(","):
            try:
                states.append(JobState(item.strip().upper()))
            except ValueError:
                raise UsageError(
                    f"unknown state {item!r}; use one of {', '.join(s.value for s in JobState)}"
                ) from None
    return states


def cmd_status(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """List jobs as a table, or one JSON object per line with ``--json``."""
    states = _parse_states(args.state)
    if args.jobs:
        selected = [jobs.get(ledger, j) for j in args.jobs]
        if states is not None:
            selected = [j for j in selected if j.state in states]
    else:
        selected = jobs.list_jobs(ledger, states)
    if args.json:
        segs = segments.by_job(ledger)
        for job in selected:
            out.write(json.dumps(_status_dict(job, segs.get(job.id),
                                              secrets=args.show_secrets)) + "\n")
        return EXIT_OK
    if not selected:
        out.write("no jobs\n" if states is None else "no jobs in that state\n")
        return EXIT_OK
    out.write(f"{'ID':>6}  {'STATE':<10}  {'DONE':>6}  {'SIZE':>10}  NAME\n")
    for job in selected:
        line = (f"{job.id:>6}  {job.state.value:<10}  {_progress(job):>6}  "
                f"{_human_bytes(job.bytes_total):>10}  {job.display_name}")
        if job.error:
            line += f"  [{job.error}]"
        out.write(line + "\n")
    return EXIT_OK


# -- pause / resume / retry / cancel -----------------------------------------------------------
_ACTIONS: dict[str, Callable[..., str]] = {
    "pause": jobs.pause,
    "resume": jobs.resume,
    "retry": jobs.retry,
    "cancel": jobs.cancel,
}


def cmd_control(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Apply an operator action to the named jobs (all validated first) or to ``--all``."""
    action = _ACTIONS[args.command]
    if args.all and args.jobs:
        raise UsageError("give job ids or --all, not both")
    if not args.all and not args.jobs:
        raise UsageError(f"no jobs given; pass job ids or --all to {args.command} every job")
    if args.all:
        targets = [j.id for j in jobs.list_jobs(ledger)]
    else:
        targets = list(dict.fromkeys(args.jobs))
        for job_id in targets:
            jobs.get(ledger, job_id)  # raises UnknownJob before anything changes
    applied = skipped = 0
    problems: list[str] = []
    for job_id in targets:
        try:
            outcome = action(ledger, job_id, by="cli")
        except (NotApplicable, IllegalTransition) as exc:
            skipped += 1
            if not args.all:
                problems.append(str(exc))
            continue
        applied += 1
        out.write(f"job {job_id}: {outcome}\n")
    if args.all:
        out.write(f"{args.command}: {applied} job(s) changed, {skipped} not applicable\n")
    for problem in problems:
        sys.stderr.write(f"dltui {args.command}: {problem}\n")
    return EXIT_FAILURE if problems else EXIT_OK


def _check_controls(args: argparse.Namespace, ledger: Ledger) -> None:
    """Refuse the whole command when any named job cannot take the action (nothing changes)."""
    if args.all or not args.jobs:
        return
    for job_id in dict.fromkeys(args.jobs):
        jobs.check_action(jobs.get(ledger, job_id), args.command)


# -- reconcile / flags -------------------------------------------------------------------------
def cmd_reconcile(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Heal crash leftovers; ``--dry-run`` only reports."""
    report = reconcile.reconcile(ledger, dry_run=args.dry_run, by="cli",
                                 link_mode=_settings(args).link_mode)
    if args.json:
        out.write(json.dumps({
            "dry_run": report.dry_run,
            "counts": report.counts,
            "actions": [{"kind": a.kind, "job_id": a.job_id, "detail": a.detail}
                        for a in report.actions],
        }) + "\n")
        return EXIT_OK
    verb = "would" if args.dry_run else "did"
    for action in report.actions:
        target = f"job {action.job_id}" if action.job_id is not None else "-"
        out.write(f"{action.kind:<14} {target:<10} {action.detail}\n")
    summary = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v) or "nothing to do"
    out.write(f"reconcile {verb}: {summary}\n")
    return EXIT_OK


_REMEDIES: dict[str | None, str] = {"reconcile": "; `dltui reconcile` heals it",
                                    "deep": "; `dltui check --deep` re-hashes it"}


def cmd_check(args: argparse.Namespace, home: Path, out: TextIO) -> int:
    """Report what is wrong with the ledger and the store; changes nothing."""
    from dltui.ledger import check

    with Ledger(home, create=False, migrate=False) as ledger:
        problems = check.check(ledger, deep=args.deep)
        if args.json:
            for p in problems:
                out.write(json.dumps({"kind": p.kind, "job_id": p.job_id, "detail": p.detail,
                                      "remedy": p.remedy}) + "\n")
        else:
            for p in problems:
                target = f"job {p.job_id}" if p.job_id is not None else "-"
                out.write(f"{p.kind:<20} {target:<10} {p.detail}{_REMEDIES.get(p.remedy, '')}\n")
            what = "ledger and store" if args.deep else "ledger"
            out.write(f"check: {len(problems)} problem(s) in {ledger.path}\n" if problems
                      else f"check: {what} OK ({ledger.path})\n")
    return EXIT_FAILURE if problems else EXIT_OK


def cmd_flags(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Show flags, or set them with NAME=on|off (all validated before any is written)."""
    changes: list[tuple[str, bool]] = []
    for item in args.assignments:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected NAME=on|off, got {item!r}")
        changes.append((flags.check_name(name), flags.parse_value(value, what=name)))
    for name, value in changes:
        changed = flags.set_flag(ledger, name, value, by="cli")
        out.write(f"{name} = {'on' if value else 'off'}{'' if changed else ' (unchanged)'}\n")
    if changes:
        return EXIT_OK
    states = flags.all_flags(ledger)
    if args.json:
        for f in states:
            out.write(json.dumps({"name": f.name, "value": f.value, "default": f.default,
                                  "updated_at": f.updated_at, "updated_by": f.updated_by}) + "\n")
        return EXIT_OK
    for f in states:
        origin = "default" if f.updated_by is None else f"set by {f.updated_by}"
        out.write(f"{f.name:<16} {'on ' if f.value else 'off'}  {f.description} ({origin})\n")
    return EXIT_OK


# -- run ---------------------------------------------------------------------------------------
def _rate(n: float) -> str:
    return _human_bytes(int(n)) + "/s"


def cmd_run(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Run the worker pool headless; stop on SIGINT/SIGTERM (jobs go back to the queue)."""
    from dltui.worker import WorkerPool

    settings = _settings(args)
    workers = args.workers if args.workers is not None else settings.workers
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    workers = _capped("--workers", workers, "workers")
    processes = args.processes if args.processes is not None else settings.processes
    if processes < 1:
        raise UsageError(f"--processes must be at least 1, got {processes}")
    processes = _capped("--processes", processes, "processes")
    child = args.worker_process
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
    helpers = [] if child else _start_helpers(args, ledger, workers, processes - 1)
    parent = os.getppid()
    pool = WorkerPool(ledger, settings, workers=workers)
    pool.start()
    last_bytes, last_t = 0, time.monotonic()
    try:
        # Check often (the end of a batch should not wait out a long sleep); print twice a second.
        while not stop.wait(0.05):
            if child and os.getppid() != parent:
                stop.set()  # the process that started this one is gone: do not outlive it
                break
            now = time.monotonic()
            if tty and now - last_t >= 0.5:
                rate = (pool.stats.bytes - last_bytes) / max(now - last_t, 1e-6)
                last_bytes, last_t = pool.stats.bytes, now
                counts = jobs.counts(ledger)
                sys.stderr.write(
                    f"\r\x1b[Kdltui run: {len(pool.active())} active, "
                    f"{counts[JobState.PLANNED]} queued, {counts[JobState.FINALIZED]} done, "
                    f"{counts[JobState.FAILED]} failed, {_rate(rate)}"
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
    failed = pool.stats.failed or helper_failed
    return EXIT_FAILURE if failed and args.until_idle else EXIT_OK


def _capped(option: str, value: int, setting: str) -> int:
    """``value`` limited to the setting's maximum, saying so on stderr when it is cut."""
    limit = config.MAX_COUNTS[setting]
    if value > limit:
        sys.stderr.write(f"dltui: {option} {value} is more than useful; using {limit}\n")
        return limit
    return value


def _start_helpers(args: argparse.Namespace, ledger: Ledger, workers: int,
                   count: int) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` more `dltui run` processes on the same ledger (see ``processes``)."""
    cmd = [sys.executable, "-m", "dltui", "--home", str(ledger.home)]
    if args.config is not None:
        cmd += ["--config", str(args.config)]
    cmd += ["run", "--workers", str(workers), "--worker-process"]
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
    origin, home, dest = demo.start(args.demo_dir)
    try:
        DltuiApp(home, settings, workers=args.workers or 3, theme=args.theme).run()
    finally:
        origin.stop()
    sys.stderr.write(f"dltui demo: ledger in {home}, files in {dest}\n")
    return EXIT_OK


def _report(prog: str, exc: DltuiError) -> int:
    """One line on stderr; exit code 2 for bad input or an unusable ledger, else 1."""
    text = redact_text(str(exc)).replace("\n", " ")
    if isinstance(exc, UnknownJob):
        text += "; `dltui status` lists the jobs"
    sys.stderr.write(f"{prog}: error: {text}\n")
    return EXIT_USAGE if isinstance(exc, UsageError | LedgerError) else EXIT_FAILURE


def _apply_env_flags(ledger: Ledger) -> None:
    """``DLTUI_FLAG_<NAME>=0|1`` set flags when a command starts (audited as ``by=env``)."""
    for name, value in flags.env_overrides(os.environ).items():
        flags.set_flag(ledger, name, value, by="env")


def _settings(args: argparse.Namespace) -> config.Settings:
    explicit = args.config is not None or paths.CONFIG_ENV in os.environ
    path = args.config if args.config is not None else paths.default_config_path()
    return config.load(path, required=explicit)


# -- wiring ------------------------------------------------------------------------------------
def _job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"job id must be a number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"job id must be positive, got {text!r}")
    if value > MAX_JOB_ID:
        raise argparse.ArgumentTypeError(f"job id {text} is too large; no job has an id above "
                                         f"{MAX_JOB_ID}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(prog="dltui", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dltui {__version__}")
    parser.add_argument(
        "--home", type=Path, default=None,
        help=f"dltui home holding the ledger, parts and store (env {paths.HOME_ENV}; "
             f"default {paths.default_home()})",
    )
    # --home is accepted after the sub-command too (`dltui status --home X`), as people type it.
    common = _Parser(add_help=False)
    common.add_argument("--home", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--theme", metavar="NAME", default=None,
                        help="TUI theme (dltui-dark, dltui-light, dltui-high-contrast, …)")
    parser.add_argument("-w", "--workers", type=int, metavar="N", default=None,
                        help="TUI: downloads run by the TUI itself (0: only watch and steer)")
    parser.add_argument(
        "--config", type=Path, default=None,
        help=f"TOML settings file (env {paths.CONFIG_ENV}; default {paths.default_config_path()})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help)

    p = command("add", help="queue downloads")
    p.add_argument("urls", nargs="*", metavar="URL", help="http:// or https:// URLs")
    p.add_argument("-i", "--input-file", metavar="FILE",
                   help="read URLs from FILE ('-' for stdin), one per line; indented "
                        "dir=/out=/checksum=sha-256= lines apply to the URL above")
    p.add_argument("-d", "--dir", metavar="DIR", help="destination directory (default: cwd)")
    p.add_argument("-o", "--name", metavar="NAME", help="file name (single URL only)")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 (single URL only)")
    p.add_argument("--json", action="store_true", help="print one JSON object per job")
    p.set_defaults(func=cmd_add)

    p = command("status", help="list jobs")
    p.add_argument("jobs", nargs="*", type=_job_id, metavar="JOB", help="only these job ids")
    p.add_argument("--state", action="append", default=[], metavar="S",
                   help="only jobs in state S (repeat or comma-separate)")
    p.add_argument("--json", action="store_true", help="one JSON object per job per line")
    p.add_argument("--show-secrets", action="store_true",
                   help="--json: print URLs with their user info and tokens unmasked")
    p.set_defaults(func=cmd_status)

    for name, text in (("pause", "pause jobs (at the next checkpoint when running)"),
                       ("resume", "resume paused jobs"),
                       ("retry", "re-queue failed jobs"),
                       ("cancel", "cancel jobs and delete their partial files")):
        p = command(name, text)
        p.add_argument("jobs", nargs="*", type=_job_id, metavar="JOB")
        p.add_argument("--all", action="store_true", help="every job it applies to")
        p.set_defaults(func=cmd_control)

    p = command("run", help="download queued jobs headless (the worker pool)")
    p.add_argument("-w", "--workers", type=int, metavar="N",
                   help="concurrent downloads (default: the workers setting, 4)")
    p.add_argument("-p", "--processes", type=int, metavar="N",
                   help="worker processes, each running --workers downloads (default: the "
                        "processes setting, 1)")
    p.add_argument("--until-idle", action="store_true",
                   help="exit when nothing is queued and no job is held by a live worker")
    # Set on the extra processes a `run --processes N` starts: no reconcile, no progress line.
    p.add_argument("--worker-process", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = command("demo", help="try dltui: a local origin, sample downloads, the TUI")
    p.add_argument("--dir", dest="demo_dir", type=Path, default=None,
                   help="keep the demo's ledger and files here (default: a new temp dir)")
    p.set_defaults(func=cmd_demo)

    p = command("reconcile", help="heal expired leases, interrupted ops, vanished files")
    p.add_argument("--dry-run", action="store_true", help="report what would be done")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_reconcile)

    p = command("check", help="check the ledger and the store; changes nothing")
    p.add_argument("--deep", action="store_true", help="also re-hash every store object")
    p.add_argument("--json", action="store_true", help="one JSON object per problem")
    p.set_defaults(func=cmd_check)

    p = command("flags", help="show or set feature flags")
    p.add_argument("assignments", nargs="*", metavar="NAME=on|off")
    p.add_argument("--json", action="store_true", help="one JSON object per flag")
    p.set_defaults(func=cmd_flags)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dltui`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return _tui(args)
    home = args.home if args.home is not None else paths.default_home()
    prog = f"dltui {args.command}"
    if args.command == "demo":
        try:
            return cmd_demo(args)
        except DltuiError as exc:
            return _report(prog, exc)
    if args.command == "check":  # opens the ledger itself: no migration, no flags written
        try:
            return cmd_check(args, home.expanduser(), sys.stdout)
        except DltuiError as exc:
            return _report(prog, exc)
        except sqlite3.Error as exc:
            _report(prog, db_error(paths.ledger_path(home.expanduser()), exc))
            return EXIT_FAILURE
    home = home.expanduser()
    try:
        flags.env_overrides(os.environ)  # a bad DLTUI_FLAG_* fails before the ledger is opened
        # Only commands that queue or run work may start a ledger; the others say it is missing.
        with Ledger(home, create=args.command in _CREATING) as ledger:
            _apply_env_flags(ledger)
            if args.func is cmd_control:
                _check_controls(args, ledger)
            return int(args.func(args, ledger, sys.stdout))
    except DltuiError as exc:
        return _report(prog, exc)
    except sqlite3.Error as exc:
        return _report(prog, db_error(paths.ledger_path(home), exc))
    except BrokenPipeError:
        # `dltui status | head`: the reader left; say nothing more.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
