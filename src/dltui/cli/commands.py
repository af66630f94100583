"""The sub-commands that read or change jobs.

add, status, pause/resume/retry/cancel, reconcile, check and flags.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from dltui import files, paths, requests
from dltui.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    BulkProgress,
    _human_bytes,
    _offer_carry_over,
    _progress,
    _rate_eta,
    _request_defaults,
    _settings,
    _status_dict,
)
from dltui.errors import (
    IllegalTransition,
    NotApplicable,
    UsageError,
)
from dltui.ledger import Ledger, actions, flags, jobs, reconcile, removal, segments
from dltui.ledger.liveness import lease_is_live
from dltui.model import ACTIVE_STATES, JobState
from dltui.shown import shown
from dltui.store import Store
from dltui.urls import redact


# -- add ---------------------------------------------------------------------------------------
def _read_text(source: str) -> str:
    """An input file's text (``-`` for stdin)."""
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read input file {source!r}: {reason}") from None


#: More URLs (or jobs acted on) than this are summed up in one line instead of one line each.
_LIST_ADDED = 20
#: Jobs one transaction of a bulk pause, resume or retry takes: fewer commits, and a reader
#: waits for one transaction at most this long.
_BATCH = 500


def cmd_add(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Queue downloads; re-adding the same URL and destination reports the existing job."""
    listing = None if not args.input_file else (args.input_file, _read_text(args.input_file))
    specs = requests.from_arguments(args.urls, args.dir, args.name, args.sha256,
                                    input_file=listing, checksum=args.checksum,
                                    sent=_request_defaults(args))
    if args.host is not None:
        host = requests.check_host_name(args.host)
        specs = [dataclasses.replace(s, host=host) for s in specs]
    if args.resume_from is not None:
        if len(specs) != 1:
            raise UsageError("--resume-from takes one URL: the job's URL signed anew")
        job = jobs.resign(ledger, args.resume_from, specs[0])
        if not args.quiet:
            out.write(f"job {job.id} carries on from its {_human_bytes(job.bytes_committed)} "
                      f"under the new URL: {redact(job.url)}\n")
        return EXIT_OK
    results = jobs.add(ledger, specs)
    _offer_carry_over(ledger, results, quiet=args.quiet, out=out)
    if args.quiet:
        return EXIT_OK
    if len(results) > _LIST_ADDED and not args.json:
        created = sum(r.created for r in results)
        out.write(f"added {created} jobs ({len(results) - created} already existed): "
                  f"ids {results[0].job.id}-{results[-1].job.id}\n")
        return EXIT_OK
    for result in results:
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
    at = time.time()
    dead: dict[str, bool] = {}  # one liveness answer per owner for the whole listing
    held = files.part_bytes(ledger.home)
    if args.json:
        segs = segments.by_job(ledger)
        for job in selected:
            out.write(json.dumps(_status_dict(job, segs.get(job.id), secrets=args.show_secrets,
                                              at=at, dead=dead,
                                              part_bytes=held.get(job.id))) + "\n")
        return EXIT_OK
    if ledger.moved_to is not None:
        sys.stderr.write(f"dltui status: note: this ledger was copied to {ledger.moved_to}; "
                         "its jobs go on there\n")
    if not selected:
        out.write("no jobs\n" if states is None else "no jobs in that state\n")
        return EXIT_OK
    out.write(f"{'ID':>6}  {'STATE':<10}  {'DONE':>6}  {'SIZE':>10}  NAME\n")
    for job in selected:
        line = (f"{job.id:>6}  {job.state.value:<10}  {_progress(job):>6}  "
                f"{_human_bytes(job.bytes_total):>10}  {job.display_name}")
        moving = _rate_eta(job, at, dead)
        if moving["rate"] is not None:
            line += f"  {_human_bytes(int(moving['rate']))}/s"
            if moving["eta"] is not None:
                line += f" ETA {_eta(moving['eta'])}"
        if job.state in ACTIVE_STATES and not lease_is_live(job.lease_owner, job.lease_until,
                                                            at, dead):
            beat = job.heartbeat_at or job.updated_at
            line += (f"  [stale {max(0, int(at - beat))}s: no live worker holds it; the next "
                     "run or `dltui reconcile` takes it over]")
        why = job.waiting(at) or job.error
        if why:
            line += f"  [{why}]"
        out.write(line + "\n")
    if held:
        n = len(held)
        out.write(f"parts: {n} unfinished job{'s' if n != 1 else ''} hold "
                  f"{_human_bytes(sum(held.values()))} in {paths.parts_dir(ledger.home)}\n")
    return EXIT_OK


def _eta(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


# -- pause / resume / retry / cancel -----------------------------------------------------------
_ACTIONS: dict[str, Callable[..., str]] = {
    "pause": actions.pause,
    "resume": actions.resume,
    "retry": actions.retry,
    "cancel": actions.cancel,
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
    costs: list[str] = []
    if args.command == "pause" and len(targets) <= _LIST_ADDED:
        # Said, not asked (a script may be pausing): what a server without ranges loses.
        costs = [c for j in targets if (c := jobs.get(ledger, j).lost_on_stop()) is not None]
    # Many jobs: one line at the end, a count on the terminal meanwhile, and (but for cancel,
    # whose part deletions must follow their own commit) a few hundred jobs per transaction.
    many = len(targets) > _LIST_ADDED
    step = _BATCH if many and args.command != "cancel" else 1
    with BulkProgress(args.command, len(targets)) as progress:
        for start in range(0, len(targets), step):
            with ledger.write() if step > 1 else contextlib.nullcontext():
                for job_id in targets[start:start + step]:
                    try:
                        outcome = action(ledger, job_id, by="cli")
                    except (NotApplicable, IllegalTransition) as exc:
                        skipped += 1
                        if not args.all:
                            problems.append(str(exc))
                        continue
                    applied += 1
                    if not many:
                        out.write(f"job {job_id}: {outcome}\n")
            progress.advance(min(step, len(targets) - start))
    if args.all or many:
        out.write(f"{args.command}: {applied} job(s) changed, {skipped} not applicable\n")
    for problem in problems:
        sys.stderr.write(f"dltui {args.command}: {shown(problem)}\n")
    for cost in costs:
        sys.stderr.write(f"dltui pause: note: {shown(cost)}\n")
    return EXIT_FAILURE if problems else EXIT_OK


def _check_controls(args: argparse.Namespace, ledger: Ledger) -> None:
    """Refuse the whole command when any named job cannot take the action (nothing changes)."""
    if args.all or not args.jobs:
        return
    for job_id in dict.fromkeys(args.jobs):
        actions.check_action(jobs.get(ledger, job_id), args.command)


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
        wrong = [p for p in problems if not p.note]
        if args.json:
            for p in problems:
                out.write(json.dumps({"kind": p.kind, "job_id": p.job_id, "detail": p.detail,
                                      "remedy": p.remedy, "note": p.note}) + "\n")
        else:
            for p in problems:
                target = f"job {p.job_id}" if p.job_id is not None else "-"
                kind = f"note: {p.kind}" if p.note else p.kind
                out.write(f"{kind:<20} {target:<10} {p.detail}{_REMEDIES.get(p.remedy, '')}\n")
            what = "ledger and store" if args.deep else "ledger"
            notes = len(problems) - len(wrong)
            noted = f", {notes} note{'s' if notes != 1 else ''}" if notes else ""
            out.write(f"check: {len(wrong)} problem(s){noted} in {ledger.path}\n" if wrong
                      else f"check: {what} OK{noted} ({ledger.path})\n")
    return EXIT_FAILURE if wrong else EXIT_OK


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


# -- remove ------------------------------------------------------------------------------------
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``7d`` -> seconds (units s, m, h, d, w)."""
    m = _AGE.match(text)
    if not m:
        raise UsageError(f"--older-than {text!r} is not an age; use a number and s, m, h, d or "
                         "w, e.g. 7d")
    return float(m.group(1)) * _AGE_UNITS[m.group(2)]


def cmd_remove(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Remove the rows of finished, failed or cancelled jobs; files stay unless asked."""
    if bool(args.jobs) == bool(args.state):
        raise UsageError("give job ids or --state (e.g. --state finalized,failed), not both "
                         "or neither")
    if args.older_than is not None and not args.state:
        raise UsageError("--older-than goes with --state")
    if args.jobs:
        ids = list(dict.fromkeys(args.jobs))
    else:
        states = _parse_states(args.state) or []
        refused = sorted(s.value for s in states if s not in removal.REMOVABLE)
        if refused:
            raise UsageError(f"{', '.join(refused)} jobs cannot be removed; remove applies to "
                             f"{', '.join(sorted(s.value for s in removal.REMOVABLE))}")
        before = None if args.older_than is None else \
            time.time() - parse_age(args.older_than)
        ids = removal.select(ledger, states, finished_before=before)
    gone = removal.remove(ledger, ids, by="cli")
    if not args.delete_files:
        out.write(f"removed {len(gone)} job{'s' if len(gone) != 1 else ''}\n")
        return EXIT_OK
    report = removal.delete_files(ledger, gone, Store(paths.store_dir(ledger.home)))
    for path, why in report.kept:
        out.write(f"kept {path}: {why}\n")
    summary = (f"removed {len(gone)} job{'s' if len(gone) != 1 else ''}, deleted "
               f"{report.files} file{'s' if report.files != 1 else ''}")
    if report.kept:
        summary += f", kept {len(report.kept)}"
    out.write(f"{summary}; freed {_human_bytes(report.freed)}\n")
    return EXIT_OK


# -- store -------------------------------------------------------------------------------------
def cmd_store(args: argparse.Namespace, ledger: Ledger, out: TextIO) -> int:
    """Show what the store holds, or (``gc``) give back what nothing keeps."""
    from dltui.ledger import storegc

    budget = _settings(args).store_size
    store = Store(paths.store_dir(ledger.home))
    if args.store_action != "gc":
        if args.dry_run:
            raise UsageError("--dry-run goes with gc: dltui store gc --dry-run")
        s = storegc.survey(ledger, store, budget=budget)
        if args.json:
            out.write(json.dumps({"path": str(store.root), "objects": s.objects,
                                  "bytes": s.bytes, "alone_bytes": s.alone,
                                  "alone_objects": s.alone_objects, "held": s.held,
                                  "budget": s.budget, "quarantined": s.quarantined,
                                  "quarantined_bytes": s.quarantined_bytes}) + "\n")
            return EXIT_OK
        out.write(f"store        {store.root}\n"
                  f"objects      {s.objects} ({_human_bytes(s.bytes)})\n"
                  f"store only   {_human_bytes(s.alone)} in {s.alone_objects} object"
                  f"{'s' if s.alone_objects != 1 else ''} (the rest share a finished file's "
                  "inode or extents)\n"
                  f"in use       {s.held} object{'s' if s.held != 1 else ''} of unfinished "
                  "jobs\n"
                  f"budget       {_human_bytes(s.budget)} (setting store_size)\n")
        if s.quarantined:
            out.write(f"quarantine   {s.quarantined} file{'s' if s.quarantined != 1 else ''} "
                      f"({_human_bytes(s.quarantined_bytes)}), kept "
                      f"{storegc.QUARANTINE_DAYS} days\n")
        return EXIT_OK
    report = storegc.collect(ledger, store, budget=budget, dry_run=args.dry_run, by="cli")
    verb = "would delete" if args.dry_run else "deleted"
    if args.json:
        out.write(json.dumps({"dry_run": args.dry_run, "objects": len(report.deleted),
                              "quarantined": len(report.quarantine), "freed": report.freed,
                              "kept_by_budget": report.kept,
                              "digests": [sha for sha, _ in report.deleted]}) + "\n")
        return EXIT_OK
    for sha, n in report.deleted:
        out.write(f"{verb} {sha} ({_human_bytes(n)})\n")
    for path, n in report.quarantine:
        out.write(f"{verb} {path} ({_human_bytes(n)}, quarantined)\n")
    kept = f"; the budget keeps {report.kept}" if report.kept else ""
    n = len(report.deleted) + len(report.quarantine)
    out.write(f"store gc: {verb} {n} object{'s' if n != 1 else ''}, "
              f"{'would free' if args.dry_run else 'freed'} {_human_bytes(report.freed)}"
              f"{kept}\n")
    return EXIT_OK


def cmd_ledger(args: argparse.Namespace, home: Path, out: TextIO) -> int:
    """``dltui ledger copy --to URL``: this home's SQLite ledger into an empty PostgreSQL one."""
    from dltui.ledger.copy import copy_ledger

    url = args.to.strip()
    if not paths.is_ledger_url(url):
        raise UsageError(f"--to {redact(url)}: give the PostgreSQL ledger to fill, "
                         "postgresql://user@host:port/db")
    source = paths.ledger_path(home)
    with Ledger(home, location=str(source), create=False) as src, \
            Ledger(home, location=url) as dest:
        report = copy_ledger(src, dest)
    rows = report.rows
    out.write(f"copied {rows.get('jobs', 0)} jobs, {rows.get('ops', 0)} ops and "
              f"{rows.get('events', 0)} events from {source} to {redact(url)}\n"
              f"point every host at it: DLTUI_LEDGER={redact(url)} (or --ledger, or the "
              "ledger setting); this home's parts stay with this host\n")
    return EXIT_OK
