"""Settings: defaults here, then a TOML config file, then ``DLTUI_<NAME>`` environment variables.

Every setting has a docstring-like ``doc`` (shown in the README and ``dltui run --help-settings``).
Byte sizes accept suffixes as aria2 does: ``512K``, ``10M``, ``2G`` (powers of 1024).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from dltui.errors import ConfigError
from dltui.model import LINK_MODES, LinkMode

ENV_PREFIX = "DLTUI_"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _s(default: Any, doc: str, kind: str = "") -> Any:
    return field(default=default, metadata={"doc": doc, "kind": kind})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of dltui; see each field's ``doc``."""

    ledger: str = _s(
        "", "Where the ledger is: empty for the home's own SQLite file, or a "
            "postgresql://user@host:port/db URL for a ledger that a fleet of hosts shares "
            "(each host keeps its parts and store in its own home).")
    ledger_connections: int = _s(
        8, "Most connections one dltui process keeps to a PostgreSQL ledger: a pool its threads "
           "share, each holding one only for a transaction. Every host's processes count "
           "against the server's max_connections (100 by default).")
    host_name: str = _s(
        "", "This host's name in a fleet sharing one ledger: lease owners carry it, and only "
            "this host judges its own processes dead; empty means the machine's hostname. "
            "Give each host its own.")
    affinity_grace: float = _s(
        120.0, "Seconds a job whose part is on another host of the fleet waits for that host "
               "after its lease ended; then any host takes it and starts over (decision "
               "discard, naming the host).")
    workers: int = _s(4, "Downloads that run at once in `dltui run` (shared out over the "
                         "processes when `processes` is chosen per run) and in the TUI's worker "
                         "pool.")
    processes: int = _s(
        0, "Worker processes of `dltui run`, each running `workers` downloads; more than one "
           "lets thousands of small files use every core (Python runs one thread at a time). "
           "0 = chosen per run: one per core while more jobs are queued than one process "
           "runs at once, else one.")
    lease_ttl: float = _s(60.0, "Seconds a worker's lease on a job lasts without a heartbeat.")
    connect_timeout: float = _s(10.0, "Seconds to wait for a TCP/TLS connection.")
    read_timeout: float = _s(
        30.0, "Seconds without a byte from the server before the attempt counts as stalled.")
    header_timeout: float = _s(
        30.0, "Seconds a response's whole header block may take, however it trickles in "
              "(the read timeout restarts with every byte); 0 means no limit.")
    max_redirects: int = _s(10, "Redirects followed per request before giving up.")
    retries: int = _s(5, "Tries per download before the job fails, counted over every run "
                         "and lease (waiting out an open circuit breaker is no try). Only "
                         "transport errors, timeouts, stalls and 408/429/5xx are retried.")
    backoff_initial: float = _s(0.5, "First retry delay in seconds; it doubles on each retry.")
    backoff_max: float = _s(30.0, "Longest delay between retries, in seconds.")
    retry_after_max: float = _s(
        300.0, "Longest Retry-After from a server that is honoured, in seconds.")
    checkpoint_bytes: int = _s(
        8 << 20, "Bytes between checkpoints (ledger records of the committed offset).",
        "bytes")
    checkpoint_interval: float = _s(1.0, "Longest time between checkpoints, in seconds.")
    fsync_on_finish: bool = _s(
        False, "fsync each finished file and its directories before it is FINALIZED (flag "
               "`fsync`). Off: finished files reach the disk in the kernel's own time, as "
               "with curl and aria2c, and after a reboot the reconciler re-verifies the "
               "SHA-256 of every file finished but not yet known to be on disk.")
    fsync_interval: float = _s(
        10.0, "Seconds between checkpoints that also fsync the part (flag `fsync`); 0 fsyncs "
              "at every checkpoint. Other checkpoints survive a killed process; after a "
              "reboot a part resumes from its last fsynced checkpoint.")
    connections_per_file: int = _s(
        8, "Ranged connections for one large file from a server that accepts ranges, like "
           "aria2c -x (flag `segmented`); 1 means one connection per file.")
    split_below_rate: int = _s(
        100 << 20, "A fresh download is split into `connections_per_file` only when its first "
                   "connection runs slower than this (bytes/s) for its first 0.1 s and would "
                   "need more than a second more: a faster one is limited by the CPU, which "
                   "more connections only share. 0 splits at once, as aria2c does.", "bytes")
    min_segment_size: int = _s(
        20 << 20, "A file is split only into segments of at least this size, like aria2c "
                  "-k; smaller files always use one connection.", "bytes")
    batch_jobs: int = _s(
        32, "Fresh downloads one worker leases together and carries through the small-file "
            "lane (flag `batch`): a few ledger commits per batch instead of five per file.")
    batch_max_size: int = _s(
        1 << 20, "Objects up to this size take the small-file lane: fetched whole into memory, "
                 "then written, stored and linked with the rest of their batch.", "bytes")
    control_poll: float = _s(
        0.25, "How often a running download checks for pause/cancel, in seconds.")
    preallocate_min: int = _s(
        16 << 20, "Part files at least this large are preallocated (flag `preallocate`).",
        "bytes")
    min_free: int = _s(
        64 << 20, "A download does not start, and a running one stops, when free disk space "
                  "would drop below this (never below 4M, kept for the ledger).",
        "bytes")
    free_margin: float = _s(
        1.05, "Free space needed, as a multiple of the bytes still to download.")
    host_requests_per_second: float = _s(
        0.0, "Requests per second per host (flag `rate_limit`); 0 means no limit.")
    max_bandwidth: int = _s(
        0, "Total bytes per second over all downloads (flag `rate_limit`); 0 = no limit.",
        "bytes")
    host_bandwidth: int = _s(
        0, "Bytes per second per host (flag `rate_limit`); 0 means no limit.", "bytes")
    breaker_threshold: int = _s(
        5, "A host's circuit breaker opens after this many connection failures in a row, or "
           "when this many of its URLs failed lately (5xx, timeouts) and more of its URLs "
           "fail than work: a few bad URLs never stop a host's good ones.")
    breaker_cooldown: float = _s(
        30.0, "Seconds an open circuit waits before letting one request try again.")
    breaker_window: float = _s(
        300.0, "Seconds a URL's last failure or success counts toward its host's breaker.")
    min_speed: int = _s(
        1 << 10, "A download slower than this (bytes/s) for `min_speed_time` seconds counts "
                 "as stalled: the try fails and the next resumes, like curl --speed-limit "
                 "and aria2c --lowest-speed-limit; 0 turns the check off.", "bytes")
    min_speed_time: float = _s(
        60.0, "Seconds a download may stay under `min_speed` (like curl --speed-time).")
    ca_bundle: str = _s(
        "", "A PEM file of CA certificates that verify servers, instead of SSL_CERT_FILE, "
            "SSL_CERT_DIR and the bundled certifi store.")
    insecure: bool = _s(
        False, "Do not verify TLS certificates (like curl -k). The TUI's header says so while "
               "it is on; anyone on the way can read and change the downloads.")
    user_agent: str = _s("", "User-Agent header; empty means dltui/<version>.")
    auto_reconcile: bool = _s(
        False, "A watching TUI heals expired leases by itself: jobs whose worker died go back "
               "to the queue within seconds, as `R` would do (files are never touched). Off: "
               "the header counts them and `R` shows the dry run first.")
    netrc: bool = _s(
        True, "Read ~/.netrc (or $NETRC) for the login of a job's host when the job has no "
              "credentials of its own (like aria2 and wget).")
    allow_downgrade: bool = _s(
        False, "Follow a redirect from https:// to plain http://. Off: such a redirect fails "
               "the download, since the rest of the exchange could be read or changed on the "
               "way.")
    link_mode: LinkMode = _s(  # noqa: RUF009 (a str Literal: immutable)
        "auto", "How a finished file reaches its destination from the store: `reflink` (a "
                "copy-on-write clone, btrfs/XFS), `hardlink` (shares the store object's "
                "inode; one file per object), `copy`, or `auto` (reflink, else hardlink, "
                "else copy).")
    store_size: int = _s(
        0, "Bytes the store may keep of files it alone holds, as a cache for later downloads "
           "of the same URL or bytes (least recently used go first). 0: a finished file "
           "exists once on disk; the store keeps an object only while it costs nothing (it "
           "shares the file's inode or extents).", "bytes")
    trust_env: bool = _s(
        True, "Honour HTTP(S)_PROXY, NO_PROXY, SSL_CERT_FILE and SSL_CERT_DIR from the "
              "environment (proxies as http://host:port; an https:// proxy for https:// "
              "URLs is refused).")
    theme: str = _s("dltui-dark", "TUI theme: one shipped with dltui, the user's themes "
                                  "folder, or a built-in Textual theme.")

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def docs() -> list[tuple[str, str, str]]:
    """``(name, default, doc)`` for every setting, for help and the README."""
    out = []
    for f in fields(Settings):
        default = f.default
        if f.metadata.get("kind") == "bytes":
            shown = format_size(int(cast(int, default)))
        else:
            shown = repr(default) if isinstance(default, str) else str(default).lower()
        out.append((f.name, shown, f.metadata["doc"]))
    return out


def format_size(n: int) -> str:
    """``8388608`` -> ``8M``; exact multiples only, else plain bytes."""
    for suffix in ("T", "G", "M", "K"):
        unit = _UNITS[suffix.lower()]
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def parse_size(text: str, *, what: str) -> int:
    """``10M`` -> 10485760."""
    m = _SIZE.match(str(text))
    if not m:
        raise ConfigError(f"{what}: {text!r} is not a size; use bytes or a K/M/G suffix")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _coerce(f: dataclasses.Field[Any], value: Any, what: str) -> Any:
    kind = f.metadata.get("kind")
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if kind == "bytes":
            result: Any = value if isinstance(value, int) and not isinstance(value, bool) else (
                parse_size(str(value), what=what))
        elif typ == "bool":
            if isinstance(value, bool):
                result = value
            elif str(value).strip().lower() in ("1", "true", "yes", "on"):
                result = True
            elif str(value).strip().lower() in ("0", "false", "no", "off"):
                result = False
            else:
                raise ValueError(value)
        elif typ == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            result = int(value)
        elif typ == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            result = float(value)
        else:
            result = str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {value!r} is not a valid {typ}") from None
    if isinstance(result, int | float) and not isinstance(result, bool):
        if isinstance(result, float) and not math.isfinite(result):
            raise ConfigError(f"{what}: {value!r} is not a finite number; give a plain number")
        if result < 0:
            raise ConfigError(f"{what}: {value!r} must not be negative")
        if isinstance(result, float) and result > MAX_SECONDS:
            raise ConfigError(f"{what}: {value!r} is too large; the limit is {MAX_SECONDS:g}")
        limit = MAX_COUNTS.get(f.name)
        if limit is not None and result > limit:
            raise ConfigError(f"{what}: {value!r} is too many; the limit is {limit}")
    return result


#: Free space that every filesystem holding the ledger or parts keeps, whatever ``min_free``
#: says: the ledger keeps this much as a ballast file (``ledger.reserve``) and gives it up
#: when the disk fills, so the failures can still be recorded; no download may eat it.
RESERVE_BYTES = 4 << 20
#: Upper bounds: more threads or processes than this only thrash, and a larger number is a typo.
MAX_COUNTS = {"workers": 256, "processes": 64, "connections_per_file": 32, "batch_jobs": 1024,
              "retries": 1000, "max_redirects": 100, "ledger_connections": 1000}
#: No float setting (seconds or a multiple) is meaningful above this; bigger ones overflow
#: the clocks they are added to.
MAX_SECONDS = 1e7

_POSITIVE = {"workers", "lease_ttl", "ledger_connections", "connections_per_file",
             "min_segment_size", "connect_timeout", "read_timeout", "retries", "checkpoint_bytes",
             "checkpoint_interval", "control_poll", "breaker_threshold", "batch_jobs"}


def load(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    required: bool = False,
) -> Settings:
    """Settings from defaults, the TOML file at ``path`` (if it exists) and the environment.

    With ``required`` a missing file is an error (it was named explicitly).
    """
    env = os.environ if environ is None else environ
    by_name = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if required:
                raise ConfigError(f"config file {path} does not exist") from None
            raw = {}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        section = raw.get("dltui", raw)
        if not isinstance(section, dict):
            raise ConfigError(f"config file {path}: [dltui] must be a table")
        for key, value in section.items():
            name = key.replace("-", "_")
            if name not in by_name:
                raise ConfigError(
                    f"config file {path}: unknown setting {key!r}; see the README's settings table"
                )
            values[name] = _coerce(by_name[name], value, f"{path}: {key}")
    for name, f in by_name.items():
        var = ENV_PREFIX + name.upper()
        if var in env:
            values[name] = _coerce(f, env[var], var)
    bundle = values.get("ca_bundle")
    if bundle:
        values["ca_bundle"] = str(Path(bundle).expanduser())
    mode = values.get("link_mode")
    if mode is not None and mode not in LINK_MODES:
        raise ConfigError(f"setting link_mode: {mode!r} is not one of {', '.join(LINK_MODES)}")
    for name in _POSITIVE & values.keys():
        if not values[name]:
            raise ConfigError(f"setting {name} must be greater than zero")
    return Settings(**values)
