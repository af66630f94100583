"""Job states, the transition table and value objects shared by every layer (stdlib only)."""

from __future__ import annotations

import base64
import contextlib
import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal, cast, get_args

from dltui.errors import COOLING
from dltui.units import human_size
from dltui.urls import redact


class JobState(enum.StrEnum):
    """Where a job is in its life; see the state machine in docs/ARCHITECTURE.md."""

    PLANNED = "PLANNED"
    LEASED = "LEASED"
    PRECHECKED = "PRECHECKED"
    STREAMING = "STREAMING"
    FINALIZING = "FINALIZING"
    FINALIZED = "FINALIZED"
    FAILED = "FAILED"
    PAUSED = "PAUSED"
    CANCELLED = "CANCELLED"


S = JobState

#: States in which a worker holds (or held, if it crashed) the job.
ACTIVE_STATES: frozenset[JobState] = frozenset(
    {S.LEASED, S.PRECHECKED, S.STREAMING, S.FINALIZING}
)
#: States from which nothing moves without an operator or the reconciler.
FINAL_STATES: frozenset[JobState] = frozenset({S.FINALIZED, S.CANCELLED})

_INTERRUPTIBLE = {S.PLANNED, S.FAILED, S.PAUSED, S.CANCELLED}

#: Every allowed edge. PLANNED is reachable from each active state because an expired lease
#: (or a worker handing a job back) re-queues it with its part and ops kept.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.PLANNED: frozenset({S.LEASED, S.PAUSED, S.CANCELLED}),
    S.LEASED: frozenset({S.PRECHECKED, *_INTERRUPTIBLE}),
    S.PRECHECKED: frozenset({S.STREAMING, S.FINALIZED, *_INTERRUPTIBLE}),
    S.STREAMING: frozenset({S.FINALIZING, *_INTERRUPTIBLE}),
    S.FINALIZING: frozenset({S.FINALIZED, *_INTERRUPTIBLE}),
    # The reconciler re-queues a finished job whose file and store object both vanished.
    S.FINALIZED: frozenset({S.PLANNED}),
    S.FAILED: frozenset({S.PLANNED, S.CANCELLED}),
    S.PAUSED: frozenset({S.PLANNED, S.CANCELLED}),
    S.CANCELLED: frozenset(),
}


#: The states in which each operator action applies: the one table the CLI checks a whole
#: command against before it changes anything, and the ledger enforces per job. Cancel is
#: refused while FINALIZING: the file is being placed.
ACTION_STATES: dict[str, frozenset[JobState]] = {
    "pause": frozenset({S.PLANNED, S.PAUSED, *ACTIVE_STATES}),
    "resume": frozenset({S.PLANNED, S.PAUSED, *ACTIVE_STATES}),
    "retry": frozenset({S.FAILED}),
    "cancel": frozenset(set(JobState) - {*FINAL_STATES, S.FINALIZING}),
}


def can_transition(current: JobState | str, target: JobState | str) -> bool:
    """True when the state machine allows ``current -> target``."""
    return JobState(target) in TRANSITIONS[JobState(current)]


def sources_of(target: JobState | str) -> frozenset[JobState]:
    """All states from which ``target`` may be entered."""
    t = JobState(target)
    return frozenset(s for s, targets in TRANSITIONS.items() if t in targets)


#: Every resume-decision reason code, with the sentence shown to operators.
REASONS: dict[str, str] = {
    "no_part": "nothing downloaded yet",
    "resume_disabled": "the resume flag is off; starting over",
    "no_ranges": "the server does not accept byte ranges",
    "validators_match": "the server's strong ETag matches the part",
    "validators_mismatch": "the object changed on the server since the part was written",
    "weak_etag": "only a weak ETag: resuming once the bytes themselves match",
    "validators_missing": "no strong validator: resuming once the bytes themselves match",
    "prefix_ok": "the server's first 64 KiB match the part",
    "prefix_mismatch": "the server's first 64 KiB differ from the part",
    "overlap_mismatch": "the 64 KiB before the resume offset differ from the part: the object "
                        "changed",
    "no_prefix": "no strong validator and the prefix check is off or impossible",
    "not_modified": "the object is already in the store and unchanged",
    "range_ignored": "the server ignored the range and sent the whole object",
    "bad_content_range": "the server sent a different byte range than asked",
    "range_not_satisfiable": "the server says the part already holds every byte",
    "part_missing": "the part file is shorter than the ledger records",
    "part_on_host": "the part is on another host",
    "object_collected": "the stored copy was given back to the disk meanwhile; downloading",
    "etag_changed": "the server answered a range with another ETag: the object changed, so "
                    "the part was discarded and the new version is downloaded whole",
}


def reason_text(code: str | None) -> str:
    """The sentence for a decision reason; ``part_on_host:NAME`` names the host."""
    if not code:
        return ""
    name, _, detail = code.partition(":")
    if name == "part_on_host" and detail:
        return f"the part is on host {detail}; starting over on this one"
    return REASONS.get(code, code)


class Control(enum.StrEnum):
    """What the operator wants a job to do; workers honour it at the next checkpoint."""

    RUN = "run"
    PAUSE = "pause"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class ServerValidators:
    """What the origin told us about the object, used to decide whether a part can be resumed."""

    etag: str | None = None
    last_modified: str | None = None
    length: int | None = None
    #: True for ``Accept-Ranges: bytes``, False for ``none``, None when the header is absent
    #: (many servers honour Range without advertising it).
    accept_ranges: bool | None = None

    @property
    def strong_etag(self) -> str | None:
        """The ETag when it is strong; weak ETags (``W/"…"``) never validate a byte range."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return None


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """What a job sends besides the URL: the operator's headers, cookies and credentials.

    ``headers`` are secrets (an ``Authorization`` from ``--user``, a ``Cookie`` from a cookies
    file, API tokens from ``-H``): stored in the ledger, sent only to the job's own host, never
    shown; only their names are. ``referer`` and ``user_agent`` are not secret.
    """

    headers: tuple[tuple[str, str], ...] = ()
    referer: str | None = None
    user_agent: str | None = None

    def __bool__(self) -> bool:
        return bool(self.headers or self.referer or self.user_agent)

    def __repr__(self) -> str:
        return f"RequestOptions(headers={self.header_names}, referer={self.referer!r}, " \
               f"user_agent={self.user_agent!r})"

    @property
    def header_names(self) -> tuple[str, ...]:
        """The secret headers' names, for display (values never are)."""
        return tuple(name for name, _ in self.headers)

    def to_json(self) -> str | None:
        """The ledger's form; None when there is nothing to send."""
        if not self:
            return None
        data: dict[str, object] = {"headers": [list(h) for h in self.headers]}
        if self.referer:
            data["referer"] = self.referer
        if self.user_agent:
            data["user_agent"] = self.user_agent
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> RequestOptions:
        """Read the ledger's form back (None or empty: no options)."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(headers=tuple((str(n), str(v)) for n, v in data.get("headers", ())),
                   referer=data.get("referer"), user_agent=data.get("user_agent"))

    def secrets(self) -> list[str]:
        """Every secret these options hold, as it may appear in an error's text: each header
        value, each cookie's value, and a Basic login's token and its decoded user:password."""
        out: list[str] = []
        for name, value in self.headers:
            out.append(value)
            if name.lower() == "cookie":
                out += [piece.partition("=")[2] for piece in value.split(";")]
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "basic" and token:
                with contextlib.suppress(ValueError):  # UnicodeDecodeError is one
                    out.append(base64.b64decode(token, validate=True).decode("utf-8"))
                out.append(token)
        found = {s.strip() for s in out if len(s.strip()) >= 3}  # "a" would mask every "a"
        return sorted(found, key=len, reverse=True)  # the longest first: no half-masked token

    def scrub(self, text: str) -> str:
        """``text`` with every secret of these options replaced by ``***``, in any of the
        forms an exception's message or repr shows it (as is, escaped, as bytes)."""
        for secret in self.secrets():
            for form in {secret, repr(secret)[1:-1], repr(secret.encode("utf-8"))[2:-1],
                         secret.encode("unicode_escape").decode("ascii")}:
                text = text.replace(form, "***")
        return text

    def describe(self) -> str:
        """One line for people: header names with their values hidden, referer, user agent."""
        parts = []
        if self.headers:
            parts.append(f"headers {', '.join(self.header_names)} (values hidden)")
        if self.referer:
            parts.append(f"referer {redact(self.referer)}")
        if self.user_agent:
            parts.append(f"user agent {self.user_agent}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Job:
    """One download as the ledger records it."""

    id: int
    idem_key: str
    url: str
    canonical_url: str
    dest_dir: str
    requested_name: str | None
    file_name: str | None
    expected_sha256: str | None
    state: JobState
    control: Control
    attempts: int
    lease_owner: str | None
    lease_until: float | None
    heartbeat_at: float | None
    etag: str | None
    last_modified: str | None
    content_length: int | None
    accept_ranges: bool | None
    bytes_committed: int
    bytes_total: int | None
    prefix_hash: str | None
    decision: str | None
    decision_reason: str | None
    sha256: str | None
    final_path: str | None
    error: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    rev: int
    not_before: float | None = None
    #: Of ``bytes_committed``, how many were fsynced, and the boot that wrote them.
    bytes_durable: int | None = None
    boot_id: str | None = None
    #: What dltui placed at ``final_path`` (device, inode, mtime): the proof, before anything
    #: there is removed or replaced, that the file is still the one dltui put there.
    final_dev: int | None = None
    final_ino: int | None = None
    final_mtime_ns: int | None = None
    #: Tries that failed since the job was added or last retried by the operator, over every
    #: lease: at ``retries`` the job fails, whatever refused the tries.
    failed_tries: int = 0
    #: Bytes/s as the worker measured it (smoothed) at its last checkpoint; None when idle.
    rate: float | None = None
    #: Another expected digest, ``algo=hex`` (md5, sha-1, sha-224, sha-384, sha-512).
    checksum: str | None = None
    #: RequestOptions as JSON (secrets inside: kept out of repr; see :attr:`request_options`).
    request: str | None = field(default=None, repr=False)
    #: The host the job is pinned to (``add --host``); None: any host of the fleet.
    host: str | None = None
    #: The host whose disk holds the job's part (its bytes_committed are there, not here).
    part_host: str | None = None
    #: With ``final_dev``/``final_ino``/``final_mtime_ns``: the placed file's size and ctime
    #: right after this job placed it (ctime moves on any link, chmod or rename of the inode).
    final_size: int | None = None
    final_ctime_ns: int | None = None
    #: The file at ``final_path`` held the bytes before this job finished: it was the user's
    #: (or another home's) and it never becomes dltui's to delete or replace.
    adopted: bool = False
    #: When the reconciler found the finished file removed by someone (and left it gone).
    final_removed_at: float | None = None

    @property
    def request_options(self) -> RequestOptions:
        """What the job sends besides its URL (empty options when nothing)."""
        return RequestOptions.from_json(self.request)

    @classmethod
    def from_row(cls, row: Sequence[object] | dict[str, object]) -> Job:
        """Build from a ``jobs`` row: a dict, or a sequence in :data:`JOB_FIELDS` order (the
        fast path: the TUI builds 100,000 of these at start-up)."""
        if isinstance(row, dict):
            row = [row.get(name) for name in JOB_FIELDS]
        values = list(row)
        # A row's cells are untyped objects; these columns hold a state / control name.
        values[_STATE_AT] = _STATES[cast(str, values[_STATE_AT])]
        values[_CONTROL_AT] = _CONTROLS[cast(str, values[_CONTROL_AT])]
        if values[_RANGES_AT] is not None:
            values[_RANGES_AT] = bool(values[_RANGES_AT])
        values[_ADOPTED_AT] = bool(values[_ADOPTED_AT])
        return cls(*values)  # type: ignore[arg-type]  # the columns in field order, unchecked

    @property
    def validators(self) -> ServerValidators:
        """The validators recorded at the last precheck."""
        return ServerValidators(
            etag=self.etag,
            last_modified=self.last_modified,
            length=self.content_length,
            accept_ranges=self.accept_ranges,
        )

    @property
    def display_name(self) -> str:
        """The best name to show: resolved, requested, else the last URL path segment."""
        if self.file_name:
            return self.file_name
        if self.requested_name:
            return self.requested_name
        shown = redact(self.canonical_url)
        tail = shown.rstrip("/").rsplit("/", 1)[-1]
        return tail or shown

    def lost_on_stop(self) -> str | None:
        """What stopping this running job would cost (its server cannot resume it), worded,
        or None when nothing: a server that takes no ranges, or has not said it does."""
        if self.state not in ACTIVE_STATES or self.bytes_committed <= 0 or \
                self.accept_ranges is True:
            return None
        have = human_size(self.bytes_committed)
        if self.accept_ranges is False:
            return f"job {self.id}'s server takes no byte ranges: the {have} it has start " \
                   "over when it runs again"
        return f"job {self.id}'s server has not said it takes byte ranges: the {have} it " \
               "has may start over when it runs again"

    def waiting(self, at: float) -> str | None:
        """Why a queued job is not started yet and for how long (``host cooling down 23s
        (503 from 4 URLs)``), or None when it may start now."""
        if self.state is not JobState.PLANNED or self.not_before is None or \
                self.not_before <= at:
            return None
        left = f"{math.ceil(self.not_before - at)}s"
        text = self.error or "waiting"
        if text.startswith(COOLING):
            return f"{COOLING} {left}{text[len(COOLING):]}"
        return f"{text}; next try in {left}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict of every field, the request's secret values left out."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["request"] = self.request_options.describe() or None
        return out


#: The jobs columns in Job's field order; SELECT them in this order for Job.from_row.
JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Job))
_STATE_AT = JOB_FIELDS.index("state")
_ADOPTED_AT = JOB_FIELDS.index("adopted")
_CONTROL_AT = JOB_FIELDS.index("control")
_RANGES_AT = JOB_FIELDS.index("accept_ranges")
_STATES = {s.value: s for s in JobState}
_CONTROLS = {c.value: c for c in Control}


#: How a finished file reaches its destination from the store (setting ``link_mode``).
LinkMode = Literal["auto", "reflink", "hardlink", "copy"]
LINK_MODES: tuple[LinkMode, ...] = get_args(LinkMode)


@dataclass(frozen=True, slots=True)
class PartIdentity:
    """A part as its download left it (device, inode, size): what must still be at the part's
    name when it is promoted."""

    dev: int
    ino: int
    size: int


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What ``stat`` says of a file dltui made: any edit, replacement or relink changes it.

    ``ctime_ns`` moves on every change to the inode, including a new hard link to it, so a
    store object's record is refreshed after each link dltui makes.
    """

    size: int
    dev: int
    ino: int
    mtime_ns: int
    ctime_ns: int

    def as_list(self) -> list[int]:
        """The fields in order, for JSON op results."""
        return [self.size, self.dev, self.ino, self.mtime_ns, self.ctime_ns]

    @classmethod
    def from_list(cls, values: Sequence[int]) -> FileIdentity:
        """The inverse of :meth:`as_list`."""
        return cls(*(int(v) for v in values))

    def same_file(self, other: FileIdentity) -> bool:
        """Same inode, size and mtime: the bytes are the ones recorded unless someone reset
        the mtime by hand (which ``ctime_ns`` still shows)."""
        return (self.dev, self.ino, self.size, self.mtime_ns) == (
            other.dev, other.ino, other.size, other.mtime_ns)


@dataclass(frozen=True, slots=True)
class Promoted:
    """FINALIZE's result: the verified bytes are the store object ``object``."""

    object: str
    sha256: str | None = None
    applied: bool = False  # this run created the object
    deduped: bool = False  # an object of that name was already there (and was replaced)
    identity: FileIdentity | None = None  # the object's, right after
    verified: bool = False  # settled by the reconciler from what it found on disk


@dataclass(frozen=True, slots=True)
class Placed:
    """LINK's result: the bytes are at ``dest``."""

    dest: str
    how: str = "present"  # reflink, hardlink, copy, or present (already there)
    sha256: str | None = None
    applied: bool = False
    dest_identity: FileIdentity | None = None  # what was placed: proof it is dltui's
    identity: FileIdentity | None = None  # the store object's, after the link
    verified: bool = False  # settled by the reconciler from what it found on disk
    #: ``dest`` already held the bytes and this job did not put them there: the user's file
    #: (or another home's), never dltui's to delete or replace.
    adopted: bool = False


@dataclass(frozen=True, slots=True)
class Segment:
    """One byte range ``[start, end)`` of a segmented download and how much of it is in.

    ``done`` bytes from ``start`` are written to the part; ``durable`` of them were fsynced.
    """

    index: int
    start: int
    end: int
    done: int = 0
    durable: int = 0

    @property
    def length(self) -> int:
        """Bytes in the range."""
        return self.end - self.start

    @property
    def complete(self) -> bool:
        """True once every byte of the range is written."""
        return self.done >= self.length


def plan_segments(total: int, connections: int, min_size: int) -> list[Segment]:
    """Split ``total`` bytes into at most ``connections`` ranges of at least ``min_size``
    (the last takes the remainder); one range means "do not segment"."""
    count = max(1, min(connections, total // max(min_size, 1)))
    size = total // count
    bounds = [i * size for i in range(count)] + [total]
    return [Segment(i, bounds[i], bounds[i + 1]) for i in range(count)]
