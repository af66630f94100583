"""Exceptions raised by dltui.

Every error carries enough context to be printed as one line for the operator::

    DltuiError
    ├── UsageError              bad input from the operator (CLI exit code 2)
    │   ├── InvalidURL          malformed URL or unsupported scheme
    │   ├── InvalidDigest       --sha256 is not 64 hex digits
    │   ├── InvalidName         --name is not a plain file name
    │   ├── UnknownJob          a job id that is not in the ledger
    │   └── UnknownFlag         a feature flag that does not exist, or a bad value
    ├── LedgerError             the ledger file itself is unusable
    │   └── LedgerTooNew        written by a newer dltui (schema version above ours)
    ├── IllegalTransition       a state change the state machine does not allow
    └── LeaseLost               a worker wrote to a job it no longer holds
"""

from __future__ import annotations


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


class UnknownFlag(UsageError):
    """A feature flag name that does not exist, or a value that is not on/off."""


class LedgerError(DltuiError):
    """The ledger database cannot be opened or used."""


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
