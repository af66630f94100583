"""Exceptions raised by dltui.

Every error carries enough context to be printed as one line for the operator::

    DltuiError
    ├── UsageError              bad input from the operator (CLI exit code 2)
    │   ├── InvalidURL          malformed URL or unsupported scheme
    │   ├── InvalidDigest       --sha256 is not 64 hex digits
    │   ├── InvalidName         --name is not a plain file name
    │   ├── UnknownJob          a job id that is not in the ledger
    │   ├── NotApplicable       an operator action the job's state does not allow
    │   ├── UnknownFlag         a feature flag that does not exist, or a bad value
    │   └── ConfigError         a bad config file, setting or DLTUI_* variable
    ├── LedgerError             the ledger file itself is unusable (CLI exit code 2)
    │   ├── LedgerMissing       no ledger where a command needs one
    │   ├── LedgerDamaged       SQLite reports the file malformed or not a database
    │   ├── LedgerGone          the file was deleted or replaced while dltui ran
    │   ├── UnsafeHome          the home, parts or store is not a private directory of ours
    │   ├── LedgerMoved         a SQLite ledger copied to PostgreSQL: closed for changes
    │   └── LedgerTooNew        written by a newer dltui (schema version above ours)
    ├── IllegalTransition       a state change the state machine does not allow
    ├── LeaseLost               a worker wrote to a job it no longer holds
    ├── Interrupted             the operator paused or cancelled a running download
    └── DownloadError           a download attempt failed; ``reason`` is a short code
        ├── HTTPStatusError     the origin answered with an error status
        ├── TransportError      connection refused/reset, timeout, truncated body (retryable)
        ├── RedirectError       too many redirects, a loop, or https -> http
        ├── CertificateError    the server's TLS certificate is not trusted, or the CA file
        │                       cannot be read (never retried)
        ├── CredentialsError    the netrc file cannot be read (never retried)
        ├── ProtocolError       a malformed status line or an oversized header block (never
        │                       retried)
        ├── IntegrityError      size or SHA-256 does not match
        │   └── PartSwapped     the file at a part's name is not the part that was hashed
        ├── QuotaError          not enough free disk space
        ├── CircuitOpenError    the host's circuit breaker is open
        └── ResumeConflict      the origin's answer contradicts the resume plan: start over
"""

from __future__ import annotations

from collections.abc import Iterable


class DltuiError(Exception):
    """Base of every error dltui raises on purpose."""


class UsageError(DltuiError):
    """Bad input from the operator; the message says what is wrong and what to do."""


class InvalidURL(UsageError):
    """A URL that cannot be downloaded: malformed, or a scheme other than http/https."""


class InvalidDigest(UsageError):
    """An expected SHA-256 that is not 64 hexadecimal digits."""


class InvalidName(UsageError):
    """A requested file name that is not a plain, safe file name."""


class UnknownJob(UsageError):
    """A job id that the ledger does not hold."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id} in the ledger")


class NotApplicable(UsageError):
    """An operator action (pause, resume, retry, cancel) the job's current state refuses."""

    def __init__(self, job_id: int, state: str, action: str, allowed: Iterable[str]) -> None:
        self.job_id = job_id
        self.state = state
        self.action = action
        self.allowed = tuple(sorted(allowed))
        if action == "cancel" and state == "FINALIZING":
            text = f"job {job_id} is finishing; it can no longer be cancelled"
        else:
            text = (f"job {job_id} is {state}; {action} applies to jobs in "
                    f"{', '.join(self.allowed)}")
        super().__init__(text)


class UnknownFlag(UsageError):
    """A feature flag name that does not exist, or a value that is not on/off."""


class LedgerError(DltuiError):
    """The ledger database cannot be opened or used."""


class LedgerMissing(LedgerError):
    """A command that reads or changes jobs found no ledger file (it never creates one)."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"no ledger at {path}; add a download first (`dltui add URL`), or "
                         "point --home / DLTUI_HOME at an existing dltui home")


class LedgerDamaged(LedgerError):
    """SQLite cannot read the ledger file: damaged bytes, or (``foreign``) a file that is not
    an SQLite database at all."""

    def __init__(self, path: object, detail: str, *, foreign: bool = False) -> None:
        self.path = path
        self.detail = detail
        if foreign:  # not a database at all: someone else's file, never to be moved aside
            super().__init__(
                f"{path} is not a dltui ledger (not an SQLite database); point --ledger, "
                "DLTUI_LEDGER or --home at a dltui ledger")
            return
        super().__init__(
            f"ledger {path} is damaged ({detail}); `dltui check` shows what is readable; to "
            f"start anew move it aside (mv {path} {path}.damaged) - downloaded files are kept")


class LedgerGone(LedgerError):
    """The ledger file was deleted or replaced under a running dltui."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"ledger {path} was deleted or replaced while running; stopped so "
                         "nothing is recorded in a file nobody will read")


class UnsafeHome(LedgerError):
    """The home, its ``parts`` or its ``store`` is a symlink, not a directory, another user's,
    or open to other users: someone else could swap a part before it is stored."""

    def __init__(self, path: object, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path} {problem}; {fix}")


class LedgerMoved(LedgerError):
    """A SQLite ledger whose jobs were copied to a PostgreSQL one: a change made here would be
    lost to the fleet, so none is accepted."""

    def __init__(self, path: object, to: str) -> None:
        self.path = path
        self.to = to
        super().__init__(
            f"ledger {path} was copied to {to} (`dltui ledger copy`) and takes no more "
            f"changes: point this host at the copy, DLTUI_LEDGER={to} (or --ledger); "
            "`dltui status` still reads this one")


class LedgerTooNew(LedgerError):
    """The ledger was migrated by a newer dltui; this version must not touch it."""


class IllegalTransition(DltuiError):
    """A job state change that the state machine forbids, or that lost a race."""

    def __init__(self, job_id: int, current: str, target: str) -> None:
        self.job_id = job_id
        self.current = current
        self.target = target
        super().__init__(f"job {job_id}: illegal transition {current} -> {target}")


class LeaseLost(DltuiError):
    """A worker tried to act on a job whose lease it no longer holds."""

    def __init__(self, job_id: int, owner: str) -> None:
        self.job_id = job_id
        self.owner = owner
        super().__init__(f"job {job_id}: lease no longer held by {owner}")


class ConfigError(UsageError):
    """A config file, setting or environment variable that cannot be used."""


class Interrupted(DltuiError):
    """A running download stopped because the operator asked (``control`` is pause or cancel)."""

    def __init__(self, control: str) -> None:
        self.control = control
        super().__init__(f"interrupted by {control}")


class DownloadError(DltuiError):
    """A download attempt failed. ``reason`` is a short machine code, the message is for people."""

    reason = "error"
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HTTPStatusError(DownloadError):
    """The origin answered with an error status; 408, 429 and 5xx are worth retrying."""

    reason = "http_status"

    def __init__(
        self, status: int, phrase: str, url: str, *, retry_after: float | None = None
    ) -> None:
        self.status = status
        super().__init__(f"HTTP {status} {phrase} from {url}", retry_after=retry_after)
        self.retryable = status in (408, 429) or 500 <= status <= 599


class TransportError(DownloadError):
    """The connection failed or the body was cut short; the next try resumes.

    ``host_fault`` says no connection to the host could be made at all (connect, TLS, proxy):
    the host's breaker counts that against the host, not against the one URL asked.
    """

    reason = "transport"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None,
                 host_fault: bool = False) -> None:
        super().__init__(message, retry_after=retry_after)
        self.host_fault = host_fault


class RedirectError(DownloadError):
    """Too many redirects or a redirect loop."""

    reason = "redirects"


class CertificateError(DownloadError):
    """The server's TLS certificate did not verify: no retry can change that."""

    reason = "certificate"


class CredentialsError(DownloadError):
    """The netrc file that holds the host's credentials cannot be parsed: no retry helps."""

    reason = "credentials"


class ProtocolError(DownloadError):
    """The server's response is not HTTP/1.1 that any client could parse: no retry helps."""

    reason = "protocol"


class IntegrityError(DownloadError):
    """The downloaded bytes do not have the expected size or SHA-256."""

    reason = "integrity"


class PartSwapped(IntegrityError):
    """The file at a part's name is not the part that was downloaded and hashed (replaced,
    turned into a symlink): it is never stored under the digest of other bytes."""

    reason = "part_swapped"

    def __init__(self, path: object, what: str) -> None:
        self.path = path
        super().__init__(f"part {path}: {what}; nothing was stored or placed (is something "
                         "else writing to the dltui home?)")


class QuotaError(DownloadError):
    """Not enough free disk space to start."""

    reason = "quota"


class CircuitOpenError(DownloadError):
    """The host's breaker is open: its jobs wait until ``until`` (epoch seconds). ``cause``
    says why it opened (``503 from 4 URLs``)."""

    reason = "circuit_open"

    def __init__(self, host: str, until: float, cause: str | None = None) -> None:
        self.host = host
        self.until = until
        self.cause = cause
        super().__init__(f"{COOLING} ({cause or 'repeated failures'})")


#: How a job waiting behind its host's open breaker says so (``host cooling down (503 from 4
#: URLs)``); shown with the seconds left after it (:func:`dltui.model.waiting`).
COOLING = "host cooling down"


class ResumeConflict(DownloadError):
    """The origin's answer does not fit the resume plan; the part must be discarded."""

    retryable = True

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
