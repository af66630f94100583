"""The download engine: HTTP and files only (httpx, tenacity, pyrate-limiter).

It knows nothing of the ledger or the UI; ``dltui.worker`` joins it to the ledger.
"""

import sys

# httpx imports its command-line client on import when rich is installed (Textual brings it):
# 75 ms of every `dltui run` start-up for a CLI we never call. A None entry makes that import
# fail the way httpx expects when the CLI's extras are missing.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: unimportable

from dltui.engine._net import watching
from dltui.engine.client import make_client, mapped_errors
from dltui.engine.finalize import resolve_name
from dltui.engine.policy import CircuitBreaker, HostLimit, RateLimits, retrying
from dltui.engine.precheck import Precheck, precheck
from dltui.engine.resume import (
    Mode,
    PartState,
    ResumeDecision,
    check_response,
    confirm_prefix,
    decide,
)
from dltui.engine.stream import fetch
from dltui.engine.transfer import Checkpoint, StreamOptions, StreamResult

__all__ = [
    "Checkpoint",
    "CircuitBreaker",
    "HostLimit",
    "Mode",
    "PartState",
    "Precheck",
    "RateLimits",
    "ResumeDecision",
    "StreamOptions",
    "StreamResult",
    "check_response",
    "confirm_prefix",
    "decide",
    "fetch",
    "make_client",
    "mapped_errors",
    "precheck",
    "resolve_name",
    "retrying",
    "watching",
]
