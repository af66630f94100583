"""Opening the ledger: a SQLite connection per thread (WAL, busy timeout, explicit transactions),
or handles on a shared PostgreSQL pool; shared and exclusive write transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dltui import paths, trust
from dltui.config import RESERVE_BYTES
from dltui.errors import LedgerDamaged, LedgerError, LedgerGone, LedgerMissing, LedgerMoved
from dltui.ledger.liveness import hostname
from dltui.urls import redact

if TYPE_CHECKING:
    import sqlite_utils

    from dltui.ledger._pg import PgPool

DEFAULT_BUSY_TIMEOUT = 30.0
#: Connections one process keeps to a PostgreSQL ledger, unless ``$DLTUI_LEDGER_CONNECTIONS``
#: (the ``ledger_connections`` setting) says otherwise.
DEFAULT_POOL_SIZE = 8
POOL_SIZE_ENV = "DLTUI_LEDGER_CONNECTIONS"


def pool_size() -> int:
    """How many connections this process may keep to a PostgreSQL ledger (at least 1)."""
    try:
        return max(1, int(os.environ.get(POOL_SIZE_ENV, "") or DEFAULT_POOL_SIZE))
    except ValueError:  # the CLI checks the setting; a library caller gets the default
        return DEFAULT_POOL_SIZE


def sqlite_error_kind(exc: sqlite3.Error) -> str:
    """SQLite's primary result code name (``SQLITE_FULL``, ``SQLITE_CORRUPT``, …), or ``""``."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    parts = name.split("_")
    return "_".join(parts[:2]) if len(parts) > 1 else name


def is_connection_lost(exc: BaseException) -> bool:
    """True when a PostgreSQL server dropped a connection mid-transaction (a restart, a
    failover, an administrator's terminate) but was not found gone: the transaction was rolled
    back, and the next one may go on. Never true on SQLite."""
    return (isinstance(exc, sqlite3.Error) and getattr(exc, "sqlstate", None) is not None
            and sqlite_error_kind(exc) == "SQLITE_CANTOPEN"
            and not getattr(exc, "server_gone", False))


def is_disk_full(exc: sqlite3.Error) -> bool:
    """True when SQLite could not write because its filesystem is full."""
    return sqlite_error_kind(exc) == "SQLITE_FULL"


#: The first bytes of every SQLite database file.
_SQLITE_HEADER = b"SQLite format 3\x00"


def _foreign(path: Path) -> bool:
    """True for a non-empty file that does not begin as an SQLite database does: not a
    damaged ledger but someone's file (``DLTUI_LEDGER=/etc/passwd``)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except OSError:
        return False
    return bool(head) and head != _SQLITE_HEADER


def db_error(path: Path | str, exc: sqlite3.Error) -> LedgerError:
    """A ledger failure worded for the operator: which ledger (a file, or a PostgreSQL server),
    what happened, what to do."""
    detail = str(exc) or type(exc).__name__
    kind = sqlite_error_kind(exc)
    server = isinstance(path, str) and "://" in path
    if kind in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return LedgerDamaged(path, detail, foreign=not server and _foreign(Path(path)))
    if getattr(exc, "sqlstate", "") == "53300":  # every connection slot of the server taken
        return LedgerError(f"ledger {path} refused a connection ({detail}); lower "
                           "ledger_connections on the hosts, or raise the server's "
                           "max_connections (or the database's connection limit)")
    if kind == "SQLITE_FULL":
        where = "the database server's disk" if server else "that filesystem"
        return LedgerError(f"no space for the ledger {path} ({detail}); free space on {where}, "
                           "then retry the failed jobs")
    if kind in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        if server:
            return LedgerError(f"ledger {path} is busy ({detail}); try again (a long action "
                               "elsewhere in the fleet may hold the write lock)")
        return LedgerError(f"ledger {path} is busy ({detail}); another dltui holds its write "
                           "lock - try again")
    if kind == "SQLITE_READONLY":
        if server:
            return LedgerError(f"ledger {path} is read-only ({detail}); point the ledger at the "
                               "primary server, or have the database made writable")
        return LedgerError(f"ledger {path} is read-only ({detail}); check its permissions "
                           "and that the file was not moved or deleted")
    return LedgerError(f"ledger {path}: {detail}")


@contextmanager
def ledger_errors(path: Path | str) -> Iterator[None]:
    """Raise an SQLite failure inside as the LedgerError :func:`db_error` words, so callers
    outside the ledger (the TUI) handle DltuiError only and never see SQLite."""
    try:
        yield
    except sqlite3.Error as exc:
        raise db_error(path, exc) from None


def _private_file(path: Path) -> None:
    """Create ``path`` 0600 (whatever the umask), or narrow an existing one of ours to it.

    Never opens an existing ledger: closing any descriptor of a file drops every POSIX lock
    this process holds on it, the locks SQLite's other connections here rely on.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    except OSError:
        return  # opening the database reports the real problem
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
            os.chmod(path, 0o600)
    except OSError:
        pass


def moved_to(conn: sqlite3.Connection) -> str | None:
    """The PostgreSQL ledger (password masked) this SQLite ledger was copied to, if any: kept
    in ``meta`` under ``moved_to`` (a text value; SQLite keeps what it is given)."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'moved_to'").fetchone()
    except sqlite3.OperationalError as exc:
        if sqlite_error_kind(exc) != "SQLITE_ERROR":
            raise  # busy, unreadable: said by the caller
        return None  # a ledger not migrated yet has no meta table: never copied
    return None if row is None else str(row[0])


def mark_moved(conn: sqlite3.Connection, to: str) -> None:
    """Close this SQLite ledger for changes: its jobs go on at ``to``."""
    conn.execute("INSERT INTO meta (key, value) VALUES ('moved_to', ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (to,))


#: The advisory lock every PostgreSQL write transaction takes first: alone, as SQLite's
#: ``BEGIN IMMEDIATE``, or shared by writers of their own rows (``Ledger.write(shared=True)``).
PG_WRITE_LOCK = 0x646C747569  # "dltui"


class Ledger:
    """The ledger of a dltui home: its SQLite file, or a PostgreSQL database shared by a fleet.

    Each thread gets its own connection (connections must not be shared across threads
    mid-transaction; on PostgreSQL a handle that borrows from the process's pool). Connections
    run in autocommit mode; :meth:`write` opens ``BEGIN IMMEDIATE`` (on PostgreSQL: ``BEGIN``
    and the fleet's write lock, shared or alone) so writers queue instead of failing on
    upgrade. ``location`` is a ``postgresql://`` URL or a SQLite path; by default
    :func:`dltui.paths.ledger_location` (``$DLTUI_LEDGER``, else ``<home>/ledger.db``).
    """

    def __init__(
        self, home: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, migrate: bool = True,
        create: bool = True, location: str | None = None,
    ) -> None:
        self.home = Path(home)
        self.location = location or paths.ledger_location(self.home)
        #: True for PostgreSQL; the home still keeps this host's parts and store.
        self.pg = paths.is_ledger_url(self.location)
        #: Where the ledger is, for messages: the file, or the URL without its password.
        self.path: Path | str = redact(self.location) if self.pg else Path(self.location)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._pool: PgPool | None = None  # PostgreSQL: this process's connections
        # Threads of one process queue here rather than in SQLite's busy handler, which sleeps
        # in growing steps (up to 100 ms) and would stall a pool of workers on every commit.
        self._write_lock = threading.RLock()
        #: A SQLite ledger on a read-only filesystem: opened immutable, every write refused.
        self.read_only = False
        self._moved_to: str | None = None
        self._moved_read = False
        # An unsafe (or unreachable) home is refused before anything else.
        trust.check_private_dir(self.home, missing_ok=True)
        if not create and not self.pg and not Path(self.location).exists():
            raise LedgerMissing(Path(self.location))
        # Private: the ledger holds URLs with their credentials, and a home others can
        # change is refused before anything in it is read or written (see dltui.trust).
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"cannot create dltui home {self.home}: {exc.strerror}") from None
        trust.check_private_dir(self.home)
        for sub in (paths.parts_dir(self.home), paths.store_dir(self.home)):
            try:
                sub.mkdir(mode=0o700, exist_ok=True)
            except FileExistsError:
                pass  # a symlink or a file: the check below names it
            except OSError as exc:
                raise LedgerError(f"cannot create {sub}: {exc.strerror}") from None
            trust.check_private_dir(sub)
        if not self.pg:
            _private_file(Path(self.location))
        self.identity = self._file_identity()
        if create:
            self._keep_reserve()
        if migrate:
            from dltui.ledger.migrations import migrate as run_migrations

            try:
                run_migrations(self, create=create)
            except sqlite3.Error as exc:
                self.close()
                raise db_error(self.path, exc) from None

    def _keep_reserve(self) -> None:
        """Make the ballast file if it is missing and there is room for it (best effort)."""
        reserve = paths.reserve_path(self.home)
        if reserve.exists():
            return
        try:
            fd = os.open(reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        except OSError:  # no room now (or no fallocate here): try again next time
            os.close(fd)
            reserve.unlink(missing_ok=True)
            return
        os.close(fd)

    def release_reserve(self) -> bool:
        """Delete the ballast file so a full filesystem has room for the ledger's next writes;
        True when there was one to delete."""
        try:
            paths.reserve_path(self.home).unlink()
        except FileNotFoundError:
            return False
        return True

    def _file_identity(self) -> tuple[int, int] | None:
        if self.pg:
            return None  # a server's database: nothing on this host to be deleted or replaced
        try:
            st = os.stat(self.location)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def check_file(self) -> None:
        """Raise LedgerGone when the file this ledger opened was deleted or replaced."""
        if self.identity is not None and self._file_identity() != self.identity:
            raise LedgerGone(self.path)

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self.pg:
            try:
                from dltui.ledger._pg import PgConnection
            except ImportError:
                raise LedgerError(f"ledger {self.path} is a PostgreSQL database, but psycopg is "
                                  "not installed; install dltui[postgresql]") from None
            with self._all_lock:
                if self._pool is None:
                    self._pool = _share_pool(self.location, self.busy_timeout, self.path)
                pg = PgConnection(self._pool)
                self._all.append(pg)  # type: ignore[arg-type]
            # The ledger's modules use the sqlite3 subset PgConnection provides.
            return pg  # type: ignore[return-value]
        try:
            if self.read_only:
                conn = self._connect_read_only()
            else:
                conn = sqlite3.connect(
                    self.location, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable across process crashes in WAL mode; only power loss can
                # drop the last commits, and the reconciler heals that from the part files.
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            if sqlite_error_kind(exc) in ("SQLITE_CANTOPEN", "SQLITE_READONLY") and \
                    not self.read_only and self._on_read_only_fs():
                self.read_only = True  # every later connection of this ledger too
                return self._connect()
            raise db_error(self.path, exc) from None
        with self._all_lock:
            self._all.append(conn)
        return conn

    @property
    def moved_to(self) -> str | None:
        """Where ``dltui ledger copy`` copied this SQLite ledger (then every write is
        refused), or None. Read at the first ask, on the asking thread, whoever opened the
        ledger (migrating or not, as the TUI's writer does): never on a UI thread by
        opening it."""
        if not self._moved_read and not self.pg:
            with ledger_errors(self.path):
                self._moved_to = moved_to(self.conn)
            self._moved_read = True
        return self._moved_to

    def _on_read_only_fs(self) -> bool:
        """True when the ledger's directory cannot be written (a read-only mount, or no write
        permission): WAL needs a ``-shm`` file beside the database, so SQLite cannot open it
        as usual there."""
        where = Path(self.location).parent
        try:
            return bool(os.statvfs(where).f_flag & os.ST_RDONLY) or not os.access(where, os.W_OK)
        except OSError:
            return False

    def _connect_read_only(self) -> sqlite3.Connection:
        """The ledger on a read-only filesystem: opened immutable (no locks, no ``-shm``), which
        is sound only because nobody can write it there, and only when no WAL holds commits
        not yet folded into the database."""
        wal = Path(f"{self.location}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise LedgerError(
                f"ledger {self.path} is on a read-only filesystem and its last writes are still "
                f"in {wal}; make it writable once (any dltui command folds them in)")
        uri = f"file:{urllib.parse.quote(str(self.location))}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._local.depth, self._local.shared = 0, False
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection wrapped by sqlite-utils (imported on first use: it costs
        ~0.1 s at start-up and only migrations need it)."""
        import sqlite_utils

        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite_utils.Database(self.conn)
        return db

    @contextmanager
    def write(self, *, shared: bool = False, moved_ok: bool = False
              ) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested uses join the outer one.

        ``shared`` declares a transaction that writes only rows it locks itself (a worker's
        own jobs, their ops, segments and events, its process and host rows) and decides
        nothing from rows it does not lock. On PostgreSQL such transactions run side by side:
        they hold the fleet lock shared and lock their rows (``FOR UPDATE``, leasing with
        ``SKIP LOCKED``). Every other write (adds, operator actions, reconcile, removal,
        flags, migrations) holds the fleet lock alone. On SQLite every write is
        ``BEGIN IMMEDIATE``: one at a time. An exclusive write cannot join a shared one.
        A ledger copied elsewhere takes none, but for another copy (``moved_ok``).
        """
        conn = self.conn
        if self._local.depth:
            if self._local.shared and not shared:
                raise RuntimeError("an exclusive ledger write cannot join a shared one")
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        # SQLite: threads of one process queue here (see __init__); PostgreSQL queues them in
        # the server, where shared writers pass each other.
        if self.moved_to is not None and not moved_ok:
            raise LedgerMoved(self.path, self.moved_to)
        if self.read_only:
            raise LedgerError(
                f"ledger {self.path} is read-only (its filesystem or directory is): `status` "
                "and `check` read it; anything that changes jobs needs it writable")
        with contextlib.nullcontext() if self.pg else self._write_lock:
            if self.pg:
                # One round trip: BEGIN, the lock, and the notification, which is queued now
                # and delivered at commit (never on rollback): listeners (TUIs) poll at once.
                lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
                conn.execute(f"BEGIN; SELECT {lock}({PG_WRITE_LOCK}), pg_notify('dltui', '')")
            else:
                conn.execute("BEGIN IMMEDIATE")
            self._local.depth, self._local.shared = 1, shared
            try:
                yield conn
            except BaseException:
                self._local.depth, self._local.shared = 0, False
                if conn.in_transaction:  # some errors make SQLite roll back by itself
                    conn.execute("ROLLBACK")
                raise
            self._local.depth, self._local.shared = 0, False
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several SELECTs."""
        conn = self.conn
        if self._local.depth:
            yield conn
            return
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ" if self.pg else "BEGIN")
        self._local.depth = 1
        try:
            yield conn
        finally:
            self._local.depth = 0
            conn.execute("COMMIT")

    def release(self) -> None:
        """Close this thread's connection: a thread that is done with the ledger."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        self._local.conn = None
        conn.close()

    def close(self) -> None:
        """Close every connection this ledger opened, in any thread."""
        with self._all_lock:
            conns, self._all = self._all, []
            pool, self._pool = self._pool, None
        for conn in conns:
            conn.close()
        if pool is not None:
            _unshare_pool(pool)
        self._local = threading.local()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: PostgreSQL pools by (process, location, timeout), with how many Ledger objects use each:
#: the ledgers a process opens (the TUI opens several) share one pool, so a process keeps at
#: most ``ledger_connections`` connections. The pid keeps a forked child off its parent's.
_POOLS: dict[tuple[int, str, float], tuple[PgPool, int]] = {}
_POOLS_LOCK = threading.Lock()


def _share_pool(location: str, timeout: float, shown: Path | str) -> PgPool:
    """This process's pool for ``location`` (made on first use, worded errors)."""
    from dltui.ledger._pg import PgPool

    key = (os.getpid(), location, timeout)
    with _POOLS_LOCK:
        pool, users = _POOLS.get(key) or (None, 0)
        if pool is None:
            try:
                # Waits for a row or the write lock end after busy_timeout, as SQLite's do;
                # the server's pg_stat_activity names host and process.
                pool = PgPool(location, size=pool_size(), timeout=timeout,
                              setup=[f"SET lock_timeout = {int(timeout * 1000)}"],
                              application_name=f"dltui {hostname()} {os.getpid()}"[:63])
            except sqlite3.Error as exc:
                raise db_error(shown, exc) from None
        _POOLS[key] = (pool, users + 1)
        return pool


def _unshare_pool(pool: PgPool) -> None:
    """One user fewer; the last closes the pool."""
    with _POOLS_LOCK:
        for key, (known, users) in list(_POOLS.items()):
            if known is pool:
                if users > 1:
                    _POOLS[key] = (known, users - 1)
                    return
                del _POOLS[key]
                break
    pool.close()


def is_pg(conn: sqlite3.Connection) -> bool:
    """True for a PostgreSQL connection (the ledger's modules otherwise see one interface)."""
    return bool(getattr(conn, "pg", False))


def for_update(conn: sqlite3.Connection, *, skip_locked: bool = False) -> str:
    """What ends a SELECT of rows the transaction is about to write: on PostgreSQL a row lock
    (another shared writer may be on them; with ``skip_locked`` such rows are passed over), on
    SQLite nothing (its writer is alone)."""
    if not is_pg(conn):
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"


def next_revs(conn: sqlite3.Connection, count: int = 1) -> list[int]:
    """Reserve ``count`` revs, ascending; call inside a write transaction.

    SQLite has one writer at a time, so a counter row hands them out in commit order. On
    PostgreSQL writers of different jobs run side by side and take them from a sequence: revs
    then order the changes of one job, and pollers use a snapshot cursor (:func:`jobs.changes`)
    rather than "rev above N", which a late commit with a smaller rev would slip past.
    """
    if is_pg(conn):
        return [int(r[0]) for r in conn.execute(
            "SELECT nextval('jobs_rev') FROM generate_series(1, ?)", (count,))]
    row = conn.execute(
        "UPDATE meta SET value = value + ? WHERE key = 'rev' RETURNING value", (count,)
    ).fetchone()
    last = int(row[0])
    return list(range(last - count + 1, last + 1))
