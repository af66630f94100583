"""What every sub-command shares.

Exit codes, the one-line error, settings, flags from the environment, count caps.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from typing import NoReturn, TextIO

from dltui import config, paths, requests
from dltui.errors import (
    ConfigError,
    DltuiError,
    LedgerError,
    UnknownJob,
    UsageError,
)
from dltui.ledger import Ledger, flags, jobs
from dltui.ledger._db import POOL_SIZE_ENV
from dltui.ledger.liveness import HOST_NAME_ENV, lease_is_live
from dltui.model import Job, Segment
from dltui.shown import shown
from dltui.units import human_size
from dltui.urls import redact, redact_text

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
MAX_JOB_ID = (1 << 63) - 1  # SQLite's INTEGER range
_CREATING = frozenset({"add", "get", "run", "flags"})


class _Parser(argparse.ArgumentParser):
    """argparse, but every error is one line naming the problem and where to look."""

    def error(self, message: str) -> NoReturn:
        found = re.search(r"invalid choice: '([^']*://[^']*)'", message)
        if found:  # `dltui URL`, as with curl or wget
            url = redact(found.group(1))
            self.exit(EXIT_USAGE, f"{self.prog}: error: {url!r} is not a command; "
                                  f"`{self.prog} get URL` downloads it now, `{self.prog} add URL` "
                                  "queues it\n")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _human_bytes(n: int | None) -> str:
    return human_size(n, compact=False)


def _progress(job: Job) -> str:
    if job.bytes_total:
        return f"{100 * job.bytes_committed / job.bytes_total:5.1f}%"
    return "  -  " if job.bytes_committed == 0 else "  ?  "


def _status_dict(job: Job, segs: list[Segment] | None = None, *,
                 secrets: bool = False, at: float | None = None,
                 dead: dict[str, bool] | None = None,
                 part_bytes: int | None = None) -> dict[str, object]:
    at = time.time() if at is None else at
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
        # Whether a live worker holds the job: a lease that ran out, or whose owner process
        # is gone, is stale until someone takes the job over or the reconciler heals it.
        "lease_live": lease_is_live(job.lease_owner, job.lease_until, at, dead),
        "heartbeat_age": None if job.heartbeat_at is None else round(at - job.heartbeat_at, 3),
        **_rate_eta(job, at, dead),
        "failed_tries": job.failed_tries,
        "error": job.error,
        # A queued job held back (its host cooling down): why, and until when.
        "waiting": (waiting := job.waiting(at)),
        "not_before": job.not_before if waiting else None,
        # Header names only: their values are secrets.
        "request": _request_dict(job),
        # The fleet: the host it is pinned to, the host its part is on, the lease's host.
        "host": job.host,
        "part_host": job.part_host,
        "lease_host": job.lease_owner.split(":", 1)[0] if job.lease_owner else None,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        # Disk this host's part of the job occupies now (allocated, preallocation included).
        "part_bytes": part_bytes or 0,
        # The file was there already, holding the bytes: the user's, never deleted by dltui.
        "adopted": job.adopted,
        # The finished file was removed by someone, and stays removed.
        "removed": job.final_removed_at is not None,
        # Only while a segmented download runs: each range and its written / fsynced bytes.
        **({"segments": [{"index": s.index, "start": s.start, "end": s.end, "done": s.done,
                          "fsynced": s.durable} for s in segs]} if segs else {}),
    }


def _request_dict(job: Job) -> dict[str, object] | None:
    sent = job.request_options
    if not sent:
        return None
    # The referer is a URL like any other: its user info and tokens are masked.
    return {"headers": list(sent.header_names),
            "referer": redact(sent.referer) if sent.referer else None,
            "user_agent": sent.user_agent}


def _report(prog: str, exc: DltuiError) -> int:
    """One line on stderr; exit code 2 for bad input or an unusable ledger, else 1."""
    text = shown(redact_text(str(exc)))
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


def _select_ledger(args: argparse.Namespace) -> None:
    """``--ledger``, else ``$DLTUI_LEDGER``, else the ``ledger`` setting: exported as
    ``DLTUI_LEDGER``, so every thread and worker process of this command opens that ledger."""
    settings = _settings(args)
    given = getattr(args, "ledger", None)
    if given is None and not os.environ.get(paths.LEDGER_ENV):
        given = settings.ledger or None
    os.environ[POOL_SIZE_ENV] = str(settings.ledger_connections)  # as the ledger, below
    if settings.host_name.strip():  # as the ledger: every worker process of this command
        os.environ[HOST_NAME_ENV] = requests.check_host_name(settings.host_name,
                                                             what="host_name")
    if given is None:
        return
    given = given.strip()
    if not given or "\x00" in given:
        raise UsageError("--ledger: give a postgresql://user@host:port/db URL or a file path")
    if "://" in given and not paths.is_ledger_url(given):
        raise UsageError(f"--ledger {redact(given)}: only postgresql:// URLs (or a SQLite "
                         "file path) are ledgers")
    os.environ[paths.LEDGER_ENV] = given


def _capped(option: str, value: int, setting: str) -> int:
    """``value`` limited to the setting's maximum, saying so on stderr when it is cut."""
    limit = config.MAX_COUNTS[setting]
    if value > limit:
        sys.stderr.write(f"dltui: {option} {value} is more than useful; using {limit}\n")
        return limit
    return value


def _transfer_options(args: argparse.Namespace, settings: config.Settings) -> config.Settings:
    """``-x/--connections`` and ``--max-bandwidth`` (of `get` and `run`) over the settings."""
    changes: dict[str, object] = {}
    if getattr(args, "connections", None) is not None:
        if args.connections < 1:
            raise UsageError(f"-x must be at least 1, got {args.connections}")
        changes["connections_per_file"] = _capped("-x", args.connections,
                                                  "connections_per_file")
    if getattr(args, "max_bandwidth", None) is not None:
        try:
            changes["max_bandwidth"] = config.parse_size(args.max_bandwidth,
                                                         what="--max-bandwidth")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    return settings.replace(**changes)


def _add_transfer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-x", "--connections", type=int, metavar="N",
                   help="connections per file for large files (default: the "
                        "connections_per_file setting, 8)")
    p.add_argument("--max-bandwidth", metavar="RATE",
                   help="total bytes per second, e.g. 2M (default: the max_bandwidth setting)")


class BulkProgress:
    """``retry: 12,000/50,000 jobs`` on a terminal's stderr while a long bulk command runs
    (from half a second in, a few times a second); nothing when stderr is not a terminal."""

    def __init__(self, what: str, total: int, stream: TextIO | None = None) -> None:
        self.what, self.total, self.done = what, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = self.shown = time.monotonic()
        self.width = 0

    def __enter__(self) -> BulkProgress:
        return self

    def advance(self, n: int) -> None:
        """``n`` more jobs done."""
        self.done += n
        at = time.monotonic()
        if self.tty and at - self.started >= 0.5 and at - self.shown >= 0.2:
            self.shown = at
            text = f"{self.what}: {self.done:,}/{self.total:,} jobs " \
                   f"({100 * self.done // max(self.total, 1)}%)"
            self.width = max(self.width, len(text))
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()

    def __exit__(self, *exc: object) -> None:
        if self.width:  # leave the line clean for the summary
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def _add_request_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("request options (sent to the URL's own host only)")
    g.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="send this header (repeatable); its value is kept secret. @FILE reads "
                        "headers from a file, one per line (as curl -H @file), so no value is "
                        "ever on the command line")
    g.add_argument("--cookies", "--load-cookies", dest="cookies", metavar="FILE",
                   help="send the matching cookies of a Netscape cookies file (curl -c, "
                        "browser exports)")
    g.add_argument("--user", metavar="USER[:PASS]",
                   help="HTTP Basic login; without :PASS the password comes from "
                        "$DLTUI_PASSWORD, else is asked on a terminal; without --user, "
                        "~/.netrc is read for the host")
    g.add_argument("--referer", metavar="URL", help="send this Referer")
    g.add_argument("-U", "--user-agent", metavar="TEXT",
                   help="send this User-Agent (default: the user_agent setting)")


def _request_defaults(args: argparse.Namespace) -> requests.RequestDefaults:
    """The request options of ``add``/``get``; ``--user NAME`` asks for the password on a
    terminal, as curl does, and is refused without one."""
    user, password = args.user, None
    if user is not None and ":" not in user:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            if not sys.stdin.isatty():
                raise UsageError(f"--user {user}: give the password in ${PASSWORD_ENV} (or "
                                 "USER:PASSWORD); there is no terminal to ask on")
            import getpass

            password = getpass.getpass(f"password for {user}: ")
    cookies = requests.read_cookies(args.cookies) if args.cookies else ()
    headers: list[str] = []
    for given in args.header:
        headers += _header_lines(given[1:]) if given.startswith("@") else [given]
    return requests.RequestDefaults.parse(headers, user=user, password=password,
                                          cookies=cookies, referer=args.referer,
                                          user_agent=args.user_agent)


#: Where ``--user NAME`` (no password) finds the password before asking on a terminal.
PASSWORD_ENV = "DLTUI_PASSWORD"


def _header_lines(path: str) -> list[str]:
    """``-H @FILE``: one header per line (blank lines and ``#`` comments skipped)."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise UsageError(f"-H @{path}: cannot read it ({exc.strerror}); give a file of "
                         "headers, one NAME: VALUE per line") from None
    except UnicodeDecodeError:
        raise UsageError(f"-H @{path}: not UTF-8 text; give a file of headers, one "
                         "NAME: VALUE per line") from None
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


#: Options whose value holds a secret, and how much of the value stays in sight.
_SECRET_OPTIONS = ("--header", "--user")


def _masked(option: str, value: str) -> str:
    if value.startswith("@"):
        return value  # a file name: the secrets stay in the file
    if option == "--user":
        name, colon, _ = value.partition(":")
        return f"{name}:***" if colon else value
    name, colon, _ = value.partition(":")
    return f"{name}: ***" if colon else "***"


def _secret_option(token: str) -> str | None:
    """The secret option ``token`` names (``-H``, or a prefix argparse would take), or None."""
    if token == "-H":
        return "--header"
    if token.startswith("--") and len(token) >= 4:
        for option in _SECRET_OPTIONS:
            if option.startswith(token):
                return option
    return None


def hide_secrets_from_ps(argv: Sequence[str]) -> bool:
    """Rewrite this process's command line (what ``ps`` and ``/proc/PID/cmdline`` show) with
    every ``-H`` value and ``--user`` password masked, as curl blanks its ``-u``; True when
    there was something to hide. Options after ``--`` are URLs, left as they are."""
    masked: list[str] = []
    changed = False
    pending: str | None = None
    for token in argv:
        if pending is not None:
            new = _masked(pending, token)
            changed |= new != token
            masked.append(new)
            pending = None
            continue
        if token == "--":
            masked.extend(argv[len(masked):])
            break
        option = _secret_option(token.split("=", 1)[0]) if token.startswith("--") else \
            ("--header" if token.startswith("-H") else None)
        if option is None:
            masked.append(token)
        elif token.startswith("--") and "=" in token:
            name, _, value = token.partition("=")
            new = f"{name}={_masked(option, value)}"
            changed |= new != token
            masked.append(new)
        elif token.startswith("-H") and len(token) > 2:
            new = "-H" + _masked(option, token[2:])
            changed |= new != token
            masked.append(new)
        else:
            masked.append(token)
            pending = option
    if changed:
        import setproctitle

        setproctitle.setproctitle(" ".join(["dltui", *(shlex.quote(t) for t in masked)]))
    return changed


def _rate_eta(job: Job, at: float, dead: dict[str, bool] | None) -> dict[str, float | None]:
    """The worker's smoothed rate (bytes/s) at its last checkpoint and the ETA from it, for a
    job a live worker holds; None for both otherwise."""
    if job.rate is None or not lease_is_live(job.lease_owner, job.lease_until, at, dead):
        return {"rate": None, "eta": None}
    eta = None
    if job.bytes_total and job.rate > 0:
        eta = round(max(0, job.bytes_total - job.bytes_committed) / job.rate, 1)
    return {"rate": job.rate, "eta": eta}


def _offer_carry_over(ledger: Ledger, results: list[jobs.AddResult], *, quiet: bool,
                      out: TextIO) -> dict[int, Job]:
    """A new job whose presigned URL names the object an unfinished job has a part of: say
    so, and on a terminal offer to carry that part over (``add --resume-from`` does it).
    Returns the jobs that took a new one's place, by the new (removed) job's id."""
    carried: dict[int, Job] = {}
    for result in results:
        if not result.created:
            continue
        old = jobs.resigned_of(ledger, result.job)
        if old is None:
            continue
        new, kept = result.job, _human_bytes(old.bytes_committed)
        if not quiet and sys.stdin.isatty() and sys.stderr.isatty():
            sys.stderr.write(f"job {new.id} is job {old.id}'s object signed anew; job {old.id} "
                             f"has {kept} of it. Carry that over instead of a new download? "
                             "[Y/n] ")
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() in ("", "y", "yes"):
                carried[new.id] = jobs.resign(ledger, old.id, new)
                out.write(f"job {old.id} carries on from its {kept} under the new URL "
                          f"(job {new.id} removed)\n")
                continue
        sys.stderr.write(f"note: job {new.id} is job {old.id}'s object signed anew, and job "
                         f"{old.id} has {kept} of it: `dltui add URL --resume-from {old.id}` "
                         "carries that over instead of downloading it again\n")
    return carried
