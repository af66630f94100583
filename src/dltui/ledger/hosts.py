"""Per-host limits set by operators and per-host status reported by workers.

Limits are read by every worker pool once a second, so a change made in the TUI reaches workers
in any process within a second. The host ``*`` holds the global bandwidth limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dltui.ledger import events
from dltui.ledger.clock import now

if TYPE_CHECKING:
    from dltui.ledger._db import Ledger

GLOBAL = "*"


@dataclass(frozen=True, slots=True)
class HostLimitRow:
    """An operator's limits for one host; None means "use the default setting"."""

    host: str
    requests_per_second: float | None
    bandwidth: int | None
    updated_at: float
    updated_by: str | None


@dataclass(frozen=True, slots=True)
class HostStatus:
    """What workers last reported about a host."""

    host: str
    breaker: str
    failures: int
    open_until: float | None
    retry_after_until: float | None
    last_error: str | None
    updated_at: float
    #: Why the breaker opened: ``503 from 4 URLs``, ``5 connection failures in a row``.
    cause: str | None = None


def limits(ledger: Ledger) -> dict[str, HostLimitRow]:
    """Every stored limit, by host (``*`` is the global one)."""
    rows = ledger.conn.execute("SELECT * FROM host_limits").fetchall()
    return {r["host"]: HostLimitRow(r["host"], r["requests_per_second"], r["bandwidth"],
                                    r["updated_at"], r["updated_by"]) for r in rows}


def set_limit(
    ledger: Ledger,
    host: str,
    *,
    requests_per_second: float | None,
    bandwidth: int | None,
    by: str,
) -> None:
    """Store a host's limits (None clears a value back to the default); audited as an event."""
    for value, what in ((requests_per_second, "requests per second"), (bandwidth, "bandwidth")):
        if value is not None and value < 0:
            raise ValueError(f"{what} must not be negative")
    with ledger.write() as conn:
        conn.execute(
            "INSERT INTO host_limits (host, requests_per_second, bandwidth, updated_at, "
            "updated_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT(host) DO UPDATE SET "
            "requests_per_second = excluded.requests_per_second, "
            "bandwidth = excluded.bandwidth, updated_at = excluded.updated_at, "
            "updated_by = excluded.updated_by",
            (host, requests_per_second, bandwidth, now(), by),
        )
        events.append(conn, "limit", None, host=host, requests_per_second=requests_per_second,
                      bandwidth=bandwidth, by=by)


def global_bandwidth(ledger: Ledger) -> int | None:
    """The stored global bandwidth limit (0 = none), or None when the setting applies."""
    row = limits(ledger).get(GLOBAL)
    return None if row is None else row.bandwidth


def set_global_bandwidth(ledger: Ledger, bandwidth: int | None, *, by: str) -> None:
    """Store the global bandwidth limit (0 = unlimited, None = back to the setting)."""
    set_limit(ledger, GLOBAL, requests_per_second=None, bandwidth=bandwidth, by=by)


def publish(ledger: Ledger, statuses: list[HostStatus]) -> None:
    """Record workers' view of hosts (breaker state, Retry-After, last error)."""
    if not statuses:
        return
    # Shared: only these hosts' rows, taken in name order so two writers never deadlock.
    statuses = sorted(statuses, key=lambda s: s.host)
    with ledger.write(shared=True) as conn:
        conn.executemany(
            "INSERT INTO host_status (host, breaker, failures, open_until, retry_after_until, "
            "last_error, updated_at, cause) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(host) DO UPDATE "
            "SET breaker = excluded.breaker, failures = excluded.failures, "
            "open_until = excluded.open_until, cause = excluded.cause, "
            # The later of the two (CASE: SQLite's max() and PostgreSQL's GREATEST differ).
            "retry_after_until = CASE WHEN COALESCE(host_status.retry_after_until, 0) > "
            "COALESCE(excluded.retry_after_until, 0) THEN host_status.retry_after_until "
            "ELSE COALESCE(excluded.retry_after_until, 0) END, "
            "last_error = COALESCE(excluded.last_error, host_status.last_error), "
            "updated_at = excluded.updated_at",
            [(s.host, s.breaker, s.failures, s.open_until, s.retry_after_until, s.last_error,
              s.updated_at, s.cause) for s in statuses],
        )


def statuses(ledger: Ledger) -> dict[str, HostStatus]:
    """Every host's last reported status."""
    rows = ledger.conn.execute("SELECT * FROM host_status").fetchall()
    return {r["host"]: HostStatus(r["host"], r["breaker"], r["failures"], r["open_until"],
                                  r["retry_after_until"] or None, r["last_error"],
                                  r["updated_at"], r["cause"]) for r in rows}
