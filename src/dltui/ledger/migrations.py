"""Forward-only schema migrations, recorded in the ledger itself.

Each migration runs once, in order, inside one transaction together with its row in
``migrations`` and ``PRAGMA user_version``. A ledger whose version is above the newest migration
here was written by a newer dltui and is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from dltui.errors import LedgerError, LedgerTooNew
from dltui.ledger.clock import now

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    import sqlite_utils

Migration = Callable[["sqlite_utils.Database"], None]


class Migrating(Protocol):
    """What migrating needs of a ledger (``_db.Ledger`` migrates itself when it opens: it
    imports this module, never the reverse)."""

    pg: bool

    @property
    def path(self) -> Path | str: ...
    @property
    def conn(self) -> sqlite3.Connection: ...
    @property
    def db(self) -> sqlite_utils.Database: ...
    def write(self, *, shared: bool = False) -> AbstractContextManager[sqlite3.Connection]: ...


def _m001_initial(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": int}, pk="key")
    db.table("meta").insert({"key": "rev", "value": 0})
    db.table("jobs").create(
        {
            "id": int,
            "idem_key": str,
            "url": str,
            "canonical_url": str,
            "dest_dir": str,
            "requested_name": str,
            "file_name": str,
            "expected_sha256": str,
            "state": str,
            "control": str,
            "attempts": int,
            "lease_owner": str,
            "lease_until": float,
            "heartbeat_at": float,
            "etag": str,
            "last_modified": str,
            "content_length": int,
            "accept_ranges": int,
            "bytes_committed": int,
            "bytes_total": int,
            "prefix_hash": str,
            "decision": str,
            "decision_reason": str,
            "sha256": str,
            "final_path": str,
            "error": str,
            "created_at": float,
            "updated_at": float,
            "finished_at": float,
            "rev": int,
        },
        pk="id",
        not_null={"idem_key", "url", "canonical_url", "dest_dir", "state", "control",
                  "attempts", "bytes_committed", "created_at", "updated_at", "rev"},
        defaults={"control": "run", "attempts": 0, "bytes_committed": 0},
    )
    db.table("jobs").create_index(["idem_key"], unique=True)
    db.table("jobs").create_index(["rev"])
    db.table("jobs").create_index(["state", "control", "id"])
    db.table("ops").create(
        {
            "key": str,
            "job_id": int,
            "kind": str,
            "status": str,
            "attempt": int,
            "runs": int,
            "args": str,
            "result": str,
            "error": str,
            "started_at": float,
            "finished_at": float,
        },
        pk="key",
        not_null={"job_id", "kind", "status", "runs"},
        defaults={"runs": 0},
    )
    db.table("ops").create_index(["job_id"])
    db.table("ops").create_index(["status"])
    db.table("events").create(
        {"id": int, "ts": float, "job_id": int, "kind": str, "data": str},
        pk="id",
        not_null={"ts", "kind"},
    )
    db.table("events").create_index(["job_id", "id"])
    db.table("flags").create(
        {"name": str, "value": int, "updated_at": float, "updated_by": str},
        pk="name",
        not_null={"value", "updated_at"},
    )


def _m002_not_before(db: sqlite_utils.Database) -> None:
    # A job re-queued behind an open circuit breaker or a long Retry-After waits until then.
    db.table("jobs").add_column("not_before", float)


def _m003_hosts(db: sqlite_utils.Database) -> None:
    # Limits the operator sets per host ("*" holds the global bandwidth), and what workers
    # report about each host, so every process sees the same breaker and Retry-After state.
    db.table("host_limits").create(
        {"host": str, "requests_per_second": float, "bandwidth": int, "updated_at": float,
         "updated_by": str},
        pk="host",
    )
    db.table("host_status").create(
        {"host": str, "breaker": str, "failures": int, "open_until": float,
         "retry_after_until": float, "last_error": str, "updated_at": float},
        pk="host",
    )


def _m004_url_index(db: sqlite_utils.Database) -> None:
    # Each job start looks for a stored object of the same URL; without this index that lookup
    # scanned every finished job, so a long history slowed every new download.
    db.table("jobs").create_index(["canonical_url", "state"])


def _m005_durable_checkpoints(db: sqlite_utils.Database) -> None:
    # Checkpoints fsync only now and then: the boot they were written in and the last fsynced
    # offset say how much of a part to trust after a reboot.
    db.table("jobs").add_column("bytes_durable", int)
    db.table("jobs").add_column("boot_id", str)


def _m006_segments(db: sqlite_utils.Database) -> None:
    # A segmented download checkpoints each byte range, so a crash resumes every one of them.
    db.table("segments").create(
        {"job_id": int, "idx": int, "start": int, "end": int, "done": int, "durable": int},
        pk=("job_id", "idx"),
        not_null={"start", "end", "done", "durable"},
        defaults={"done": 0, "durable": 0},
    )


def _m007_store_identity(db: sqlite_utils.Database) -> None:
    # A finished file may be edited by its user; through a hard link that edit reaches the
    # store object. Each object's identity at promotion (and after each link) is recorded and
    # compared before the object is reused; each job records what it placed at final_path,
    # so nothing there is removed unless it is provably dltui's.
    db.table("objects").create(
        {"sha256": str, "size": int, "dev": int, "ino": int, "mtime_ns": int, "ctime_ns": int,
         "recorded_at": float},
        pk="sha256",
    )
    db.table("jobs").add_column("final_dev", int)
    db.table("jobs").add_column("final_ino", int)
    db.table("jobs").add_column("final_mtime_ns", int)


def _m008_failed_tries(db: sqlite_utils.Database) -> None:
    # Failed tries are counted across leases: a job re-queued by an open circuit breaker (or by
    # a worker that stopped) must not start with a fresh retry budget every time.
    db.table("jobs").add_column("failed_tries", int, not_null_default=0)


def _m009_rate(db: sqlite_utils.Database) -> None:
    # The worker's own smoothed rate at each checkpoint: `status` shows rate and ETA from one
    # read, with no second sample.
    db.table("jobs").add_column("rate", float)


def _m010_checksum(db: sqlite_utils.Database) -> None:
    # Digests other than SHA-256 that an operator expects (aria2's md5, sha-1, sha-512, …),
    # as "algo=hex"; checked over the finished bytes.
    db.table("jobs").add_column("checksum", str)


def _m011_request(db: sqlite_utils.Database) -> None:
    # What a job sends besides its URL (headers, cookies, credentials, referer, user agent) as
    # JSON. Secrets live here so a worker on any host can send them; nothing displays them.
    db.table("jobs").add_column("request", str)


def _m012_fleet(db: sqlite_utils.Database) -> None:
    # A fleet shares one ledger: a job may be pinned to a host (`add --host`), and a part
    # belongs to the host whose disk holds it, which the job prefers for affinity_grace.
    db.table("jobs").add_column("host", str)
    db.table("jobs").add_column("part_host", str)


def _m013_processes(db: sqlite_utils.Database) -> None:
    # Every worker process says it is alive, so each host sees the whole fleet's workers.
    db.table("processes").create(
        {"process": str, "host": str, "workers": int, "started_at": float,
         "heartbeat_at": float},
        pk="process", not_null={"host", "workers", "started_at", "heartbeat_at"},
    )


def _m014_rev_sequence(db: sqlite_utils.Database) -> None:
    # PostgreSQL only (its writers run side by side, so revs come from a sequence and each row
    # records its writer's transaction for the pollers' snapshot cursor). SQLite has one writer
    # at a time: meta.rev stays its counter and the rev its cursor. Kept so both number alike.
    del db


def _m015_placement(db: sqlite_utils.Database) -> None:
    # The proof that a finished file is the one this job placed covers its size and ctime too
    # (a reused inode with the same mtime passes a dev/ino/mtime check); a file found already
    # holding the bytes is adopted, never dltui's to delete; a finished file its user removed
    # is recorded once and left gone. Objects remember when they were last used, for the
    # store's budget (least recently used first).
    jobs = db.table("jobs")
    jobs.add_column("final_size", int)
    jobs.add_column("final_ctime_ns", int)
    jobs.add_column("adopted", int, not_null_default=0)
    jobs.add_column("final_removed_at", float)
    db.table("objects").add_column("used_at", float)


def _m016_breaker_cause(db: sqlite_utils.Database) -> None:
    # A host's breaker opens only when failures span its URLs (or the host itself fails);
    # its row says why, so the hosts screen and the waiting jobs tell the same story.
    db.table("host_status").add_column("cause", str)


#: The migrations, in order; version N is ``MIGRATIONS[N - 1]``. Never edit a released one.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("initial", _m001_initial),
    ("not_before", _m002_not_before),
    ("hosts", _m003_hosts),
    ("url_index", _m004_url_index),
    ("durable_checkpoints", _m005_durable_checkpoints),
    ("segments", _m006_segments),
    ("store_identity", _m007_store_identity),
    ("failed_tries", _m008_failed_tries),
    ("rate", _m009_rate),
    ("checksum", _m010_checksum),
    ("request", _m011_request),
    ("fleet", _m012_fleet),
    ("processes", _m013_processes),
    ("rev_sequence", _m014_rev_sequence),
    ("placement", _m015_placement),
    ("breaker_cause", _m016_breaker_cause),
]
SCHEMA_VERSION = len(MIGRATIONS)

_PG_TIME = "DOUBLE PRECISION"
#: The same migrations for PostgreSQL, in the same order: version N is ``PG_MIGRATIONS[N - 1]``.
#: Types as SQLite stores them (integers, floats, text); ``ops.rowid`` stands in for SQLite's
#: implicit rowid, which orders ops that started in the same instant.
PG_MIGRATIONS: list[tuple[str, list[str]]] = [
    ("initial", [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT)",
        "INSERT INTO meta (key, value) VALUES ('rev', 0)",
        "CREATE TABLE jobs (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "idem_key TEXT NOT NULL, url TEXT NOT NULL, canonical_url TEXT NOT NULL, "
        "dest_dir TEXT NOT NULL, requested_name TEXT, file_name TEXT, expected_sha256 TEXT, "
        "state TEXT NOT NULL, control TEXT NOT NULL DEFAULT 'run', "
        "attempts BIGINT NOT NULL DEFAULT 0, lease_owner TEXT, "
        f"lease_until {_PG_TIME}, heartbeat_at {_PG_TIME}, etag TEXT, last_modified TEXT, "
        "content_length BIGINT, accept_ranges BIGINT, bytes_committed BIGINT NOT NULL DEFAULT 0, "
        "bytes_total BIGINT, prefix_hash TEXT, decision TEXT, decision_reason TEXT, sha256 TEXT, "
        f"final_path TEXT, error TEXT, created_at {_PG_TIME} NOT NULL, "
        f"updated_at {_PG_TIME} NOT NULL, finished_at {_PG_TIME}, rev BIGINT NOT NULL)",
        "CREATE UNIQUE INDEX idx_jobs_idem_key ON jobs (idem_key)",
        "CREATE INDEX idx_jobs_rev ON jobs (rev)",
        "CREATE INDEX idx_jobs_state_control_id ON jobs (state, control, id)",
        "CREATE TABLE ops (key TEXT PRIMARY KEY, job_id BIGINT NOT NULL, kind TEXT NOT NULL, "
        "status TEXT NOT NULL, attempt BIGINT, runs BIGINT NOT NULL DEFAULT 0, args TEXT, "
        f"result TEXT, error TEXT, started_at {_PG_TIME}, finished_at {_PG_TIME}, "
        "rowid BIGINT GENERATED BY DEFAULT AS IDENTITY)",
        "CREATE INDEX idx_ops_job_id ON ops (job_id)",
        "CREATE INDEX idx_ops_status ON ops (status)",
        f"CREATE TABLE events (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        f"ts {_PG_TIME} NOT NULL, job_id BIGINT, kind TEXT NOT NULL, data TEXT)",
        "CREATE INDEX idx_events_job_id_id ON events (job_id, id)",
        f"CREATE TABLE flags (name TEXT PRIMARY KEY, value BIGINT NOT NULL, "
        f"updated_at {_PG_TIME} NOT NULL, updated_by TEXT)",
    ]),
    ("not_before", [f"ALTER TABLE jobs ADD COLUMN not_before {_PG_TIME}"]),
    ("hosts", [
        f"CREATE TABLE host_limits (host TEXT PRIMARY KEY, requests_per_second {_PG_TIME}, "
        f"bandwidth BIGINT, updated_at {_PG_TIME}, updated_by TEXT)",
        f"CREATE TABLE host_status (host TEXT PRIMARY KEY, breaker TEXT, failures BIGINT, "
        f"open_until {_PG_TIME}, retry_after_until {_PG_TIME}, last_error TEXT, "
        f"updated_at {_PG_TIME})",
    ]),
    ("url_index", ["CREATE INDEX idx_jobs_canonical_url_state ON jobs (canonical_url, state)"]),
    ("durable_checkpoints", ["ALTER TABLE jobs ADD COLUMN bytes_durable BIGINT",
                             "ALTER TABLE jobs ADD COLUMN boot_id TEXT"]),
    ("segments", [
        'CREATE TABLE segments (job_id BIGINT, idx BIGINT, start BIGINT NOT NULL, '
        '"end" BIGINT NOT NULL, done BIGINT NOT NULL DEFAULT 0, '
        'durable BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (job_id, idx))',
    ]),
    ("store_identity", [
        f"CREATE TABLE objects (sha256 TEXT PRIMARY KEY, size BIGINT, dev BIGINT, ino BIGINT, "
        f"mtime_ns BIGINT, ctime_ns BIGINT, recorded_at {_PG_TIME})",
        "ALTER TABLE jobs ADD COLUMN final_dev BIGINT",
        "ALTER TABLE jobs ADD COLUMN final_ino BIGINT",
        "ALTER TABLE jobs ADD COLUMN final_mtime_ns BIGINT",
    ]),
    ("failed_tries", ["ALTER TABLE jobs ADD COLUMN failed_tries BIGINT NOT NULL DEFAULT 0"]),
    ("rate", [f"ALTER TABLE jobs ADD COLUMN rate {_PG_TIME}"]),
    ("checksum", ["ALTER TABLE jobs ADD COLUMN checksum TEXT"]),
    ("request", ["ALTER TABLE jobs ADD COLUMN request TEXT"]),
    ("fleet", ["ALTER TABLE jobs ADD COLUMN host TEXT",
               "ALTER TABLE jobs ADD COLUMN part_host TEXT"]),
    ("processes", [f"CREATE TABLE processes (process TEXT PRIMARY KEY, host TEXT NOT NULL, "
                   f"workers BIGINT NOT NULL, started_at {_PG_TIME} NOT NULL, "
                   f"heartbeat_at {_PG_TIME} NOT NULL)"]),
    ("rev_sequence", [
        # Writers that lock only their own rows commit side by side: a sequence hands out revs
        # without a row every writer waits on, and ``txid`` (stamped on every insert and
        # update) tells a poller which rows its last snapshot could not see yet.
        "CREATE SEQUENCE jobs_rev",
        "SELECT setval('jobs_rev', GREATEST(value, 1), value > 0) FROM meta WHERE key = 'rev'",
        "DELETE FROM meta WHERE key = 'rev'",
        "ALTER TABLE jobs ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()",
        "CREATE INDEX idx_jobs_txid ON jobs (txid)",
        "CREATE FUNCTION dltui_stamp_txid() RETURNS trigger LANGUAGE plpgsql AS "
        "'BEGIN NEW.txid := pg_current_xact_id(); RETURN NEW; END'",
        "CREATE TRIGGER jobs_txid BEFORE UPDATE ON jobs FOR EACH ROW "
        "EXECUTE FUNCTION dltui_stamp_txid()",
    ]),
    ("placement", [
        "ALTER TABLE jobs ADD COLUMN final_size BIGINT",
        "ALTER TABLE jobs ADD COLUMN final_ctime_ns BIGINT",
        "ALTER TABLE jobs ADD COLUMN adopted BIGINT NOT NULL DEFAULT 0",
        f"ALTER TABLE jobs ADD COLUMN final_removed_at {_PG_TIME}",
        f"ALTER TABLE objects ADD COLUMN used_at {_PG_TIME}",
    ]),
    ("breaker_cause", ["ALTER TABLE host_status ADD COLUMN cause TEXT"]),
]


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version the ledger file records."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def schema_version(ledger: Migrating) -> int:
    """The schema version the ledger records, on either backend."""
    return _pg_version(ledger.conn) if ledger.pg else current_version(ledger.conn)


def _pg_version(conn: sqlite3.Connection) -> int:
    if conn.execute("SELECT to_regclass('migrations')").fetchone()[0] is None:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM migrations").fetchone()[0])


def _migrate_pg(ledger: Migrating, target: int, create: bool) -> list[int]:
    applied: list[int] = []
    if target <= _pg_version(ledger.conn) <= SCHEMA_VERSION:
        return applied  # the common case, without the fleet's write lock: workers go on
    with ledger.write() as conn:  # the fleet's write lock: one host migrates, the others wait
        version = _pg_version(conn)
        if version > SCHEMA_VERSION:
            raise LedgerTooNew(
                f"ledger {ledger.path} has schema version {version}, but this dltui knows "
                f"only up to {SCHEMA_VERSION}; upgrade dltui on every host")
        if version >= target:
            return applied
        if version == 0 and not create:
            raise LedgerError(f"ledger {ledger.path} holds no dltui ledger yet; `dltui add` "
                              "creates it, or point DLTUI_LEDGER at the right database")
        if version == 0:
            conn.execute("CREATE TABLE migrations (version BIGINT PRIMARY KEY, name TEXT, "
                         f"applied_at {_PG_TIME})")
        for number in range(version + 1, target + 1):
            name, statements = PG_MIGRATIONS[number - 1]
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
                         (number, name, now()))
            applied.append(number)
    return applied


def migrate(ledger: Migrating, *, target: int | None = None, create: bool = True) -> list[int]:
    """Apply every pending migration (up to ``target``) and return the versions applied."""
    target = SCHEMA_VERSION if target is None else target
    if ledger.pg:
        return _migrate_pg(ledger, target, create)
    applied: list[int] = []
    try:
        if target <= current_version(ledger.conn) <= SCHEMA_VERSION:
            return applied  # the common case, without the write lock (or on a read-only disk)
        with ledger.write() as conn:
            version = current_version(conn)
            if version > SCHEMA_VERSION:
                raise LedgerTooNew(
                    f"ledger {ledger.path} has schema version {version}, but this dltui knows "
                    f"only up to {SCHEMA_VERSION}; upgrade dltui or use another dltui home"
                )
            if version >= target:
                return applied  # the common case: nothing to do, no sqlite-utils import
            db = ledger.db
            if not db.table("migrations").exists():
                db.table("migrations").create(
                    {"version": int, "name": str, "applied_at": float}, pk="version"
                )
            for number in range(version + 1, target + 1):
                name, fn = MIGRATIONS[number - 1]
                fn(db)
                db.table("migrations").insert(
                    {"version": number, "name": name, "applied_at": now()}
                )
                conn.execute(f"PRAGMA user_version = {number}")
                applied.append(number)
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"ledger {ledger.path} is not a usable dltui ledger: {exc}") from None
    return applied
