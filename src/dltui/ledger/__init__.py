"""The ledger: SQLite (through sqlite-utils, WAL), or PostgreSQL for a fleet, as the single
source of truth.

Workers, the TUI and the CLI never call each other; they read and write this ledger.
"""

from dltui.ledger._db import (
    Ledger,
    db_error,
    is_connection_lost,
    is_disk_full,
    ledger_errors,
)
from dltui.ledger.clock import now
from dltui.ledger.migrations import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Ledger", "db_error", "is_connection_lost", "is_disk_full",
           "ledger_errors", "now"]
