"""Command line: argument parsing and wiring; one function per sub-command.

``commands.py`` holds the sub-commands that read or change jobs, ``run.py`` those that run
downloads (and the TUI), ``common.py`` what they share.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO, cast

from dltui import __version__, paths
from dltui.cli.commands import (
    _check_controls,
    cmd_add,
    cmd_check,
    cmd_control,
    cmd_flags,
    cmd_ledger,
    cmd_reconcile,
    cmd_remove,
    cmd_status,
    cmd_store,
)
from dltui.cli.common import (
    _CREATING,
    EXIT_FAILURE,
    EXIT_OK,
    MAX_JOB_ID,
    _add_request_options,
    _add_transfer_options,
    _apply_env_flags,
    _Parser,
    _report,
    _select_ledger,
    hide_secrets_from_ps,
)
from dltui.cli.get import cmd_get
from dltui.cli.run import _tui, cmd_demo, cmd_run
from dltui.errors import DltuiError
from dltui.ledger import Ledger, db_error, flags
from dltui.shown import Boundary

DESCRIPTION = """\
A keyboard-driven download manager. Run `dltui` with no command to open the TUI on the
ledger (the live job table; press ? there for the keys). Every command below works on the
same ledger, so the TUI, the CLI and any number of `dltui run` processes can share it."""
EPILOG = """\
examples:
  dltui get https://example.com/big.iso -d /srv/isos       download now, in the foreground
  dltui add -i urls.txt -d /srv/data && dltui run --until-idle
  dltui status --json --state failed
  dltui remove --state finalized --older-than 7d
  dltui demo                                               try it on sample downloads"""


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
    parser = _Parser(prog="dltui", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    common.add_argument("--ledger", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--ledger", metavar="URL", default=None,
        help=f"a fleet's shared ledger, postgresql://user@host:port/db (env {paths.LEDGER_ENV}, "
             "setting ledger; default the home's SQLite file)")
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
                        "option lines apply to the URL above: dir=, out=, checksum=, header=, "
                        "referer=, user-agent=, load-cookies=, http-user=, http-passwd=")
    p.add_argument("-d", "--dir", metavar="DIR", help="destination directory (default: cwd)")
    p.add_argument("-o", "--name", metavar="NAME", help="file name (single URL only)")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 (single URL only)")
    p.add_argument("--checksum", metavar="ALGO=HEX",
                   help="expected digest, aria2's syntax: md5, sha-1, sha-224, sha-256, "
                        "sha-384 or sha-512 (single URL only)")
    p.add_argument("--json", action="store_true", help="print one JSON object per job")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing unless it fails")
    p.add_argument("--host", metavar="NAME",
                   help="only this host of a fleet runs them (its host_name setting)")
    p.add_argument("--resume-from", type=_job_id, metavar="JOB",
                   help="the URL is JOB's presigned URL signed anew: JOB takes it and keeps "
                        "its part (single URL only)")
    _add_request_options(p)
    p.set_defaults(func=cmd_add)

    p = command("get", help="download URLs now, in the foreground (add + run in one)")
    p.add_argument("urls", nargs="+", metavar="URL", help="http:// or https:// URLs")
    p.add_argument("-d", "--dir", metavar="DIR", help="destination directory (default: cwd)")
    p.add_argument("-o", "--name", metavar="NAME", help="file name (single URL only)")
    _add_transfer_options(p)
    p.add_argument("--checksum", metavar="ALGO=HEX",
                   help="expected digest, aria2's syntax: md5, sha-1, sha-224, sha-256, "
                        "sha-384 or sha-512 (single URL only)")
    _add_request_options(p)
    p.set_defaults(func=cmd_get)

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

    p = command("remove", help="remove finished, failed or cancelled jobs from the ledger")
    p.add_argument("jobs", nargs="*", type=_job_id, metavar="JOB")
    p.add_argument("--state", action="append", default=[], metavar="S",
                   help="every job in state S: finalized, failed, cancelled (repeat or "
                        "comma-separate)")
    p.add_argument("--older-than", metavar="AGE",
                   help="with --state: only jobs that ended more than AGE ago (30m, 12h, 7d)")
    p.add_argument("--delete-files", action="store_true",
                   help="also delete finished files that are provably the ones dltui placed "
                        "(never an edited or replaced file)")
    p.set_defaults(func=cmd_remove)

    p = command("store", help="what the store holds on disk; `store gc` gives back what "
                              "nothing keeps")
    p.add_argument("store_action", nargs="?", choices=["gc"], metavar="gc",
                   help="delete every object no finished file shares and the store_size "
                        "budget does not keep")
    p.add_argument("--dry-run", action="store_true", help="gc: list what would be deleted")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=cmd_store)

    p = command("run", help="download queued jobs headless (the worker pool)")
    p.add_argument("-w", "--workers", type=int, metavar="N",
                   help="concurrent downloads (default: the workers setting, 4)")
    p.add_argument("-p", "--processes", type=int, metavar="N",
                   help="worker processes, each running --workers downloads (default: the "
                        "processes setting; 0 = one per core while many jobs are queued)")
    _add_transfer_options(p)
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

    p = command("ledger", help="ledger maintenance: copy this home's SQLite ledger to PostgreSQL")
    actions = p.add_subparsers(dest="ledger_command", metavar="ACTION", parser_class=_Parser,
                               required=True)
    c = actions.add_parser("copy", parents=[common],
                           help="copy every job, op and event into an empty PostgreSQL ledger")
    c.add_argument("--to", required=True, metavar="URL",
                   help="postgresql://user@host:port/db, a database without dltui jobs")

    p = command("flags", help="show or set feature flags")
    p.add_argument("assignments", nargs="*", metavar="NAME=on|off")
    p.add_argument("--json", action="store_true", help="one JSON object per flag")
    p.set_defaults(func=cmd_flags)
    return parser


def _out() -> TextIO:
    """The commands' standard output, behind the output boundary (:mod:`dltui.shown`)."""
    return cast(TextIO, Boundary(sys.stdout))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dltui`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the real command line: no credential stays in `ps` past start-up
        hide_secrets_from_ps(sys.argv[1:])
    if args.command is None:
        return _tui(args)
    home = args.home if args.home is not None else paths.default_home()
    prog = f"dltui {args.command}"
    if args.command == "demo":
        try:
            return cmd_demo(args)
        except DltuiError as exc:
            return _report(prog, exc)
    if args.command == "ledger":  # two ledgers: this home's file and the one named by --to
        try:
            _select_ledger(args)  # the host name, for the parts this home keeps
            return cmd_ledger(args, home.expanduser(), _out())
        except DltuiError as exc:
            return _report(prog, exc)
    if args.command == "check":  # opens the ledger itself: no migration, no flags written
        try:
            _select_ledger(args)
            return cmd_check(args, home.expanduser(), _out())
        except DltuiError as exc:
            return _report(prog, exc)
        except sqlite3.Error as exc:
            _report(prog, db_error(paths.ledger_shown(home.expanduser()), exc))
            return EXIT_FAILURE
    home = home.expanduser()
    try:
        _select_ledger(args)
        flags.env_overrides(os.environ)  # a bad DLTUI_FLAG_* fails before the ledger is opened
        # Only commands that queue or run work may start a ledger; the others say it is missing.
        with Ledger(home, create=args.command in _CREATING) as ledger:
            _apply_env_flags(ledger)
            if args.func is cmd_control:
                _check_controls(args, ledger)
            return int(args.func(args, ledger, _out()))
    except DltuiError as exc:
        return _report(prog, exc)
    except sqlite3.Error as exc:
        return _report(prog, db_error(paths.ledger_shown(home), exc))
    except BrokenPipeError:
        # `dltui status | head`: the reader left; say nothing more.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
