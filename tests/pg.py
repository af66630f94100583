"""A throw-away PostgreSQL cluster for the tests: initdb and pg_ctl in a temp dir, on a free
loopback port, as an unprivileged user when the tests run as root (PostgreSQL refuses root).

Debian's `postgresql` package provides the programs (`.ci/run` installs it when missing). No
test that needs the cluster is skipped: a missing server is an error naming what to install.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL's initdb was not found; install the server "
                       "(Debian: apt-get install postgresql), as .ci/run does")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One running cluster; :meth:`database` makes a fresh, empty database on it."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="dltui-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._demote: Callable[[], None] | None = None
        self._template = ""
        self._reused = ""
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)

            def demote() -> None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            self._demote = demote
        self._run("initdb", "-D", str(self.data), "-U", "dltui", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        self._options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                         "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                         "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-o", self._options, "start")

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([str(self.bindir / program), *args], capture_output=True,
                              text=True, preexec_fn=self._demote, cwd=self.root, timeout=120,
                              env={**os.environ, "LC_ALL": "C"})
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")

    def url(self, database: str = "postgres") -> str:
        """A libpq URL of ``database`` on this cluster."""
        return f"postgresql://dltui@127.0.0.1:{self.port}/{database}"

    def database(self, *, empty: bool = False) -> str:
        """Create a database holding an empty, migrated ledger (or nothing, with ``empty``);
        its URL. Copies of one migrated template: a CREATE DATABASE, not twelve migrations."""
        import psycopg

        if not empty and not self._template:
            self._template = self.database(empty=True)
            from dltui.ledger import Ledger

            with Ledger(self.root / "template-home", location=self._template):
                pass
        name = f"t_{uuid.uuid4().hex[:12]}"
        template = "" if empty else f' TEMPLATE "{self._template.rsplit("/", 1)[1]}"'
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{template}')
        return self.url(name)

    def reused(self) -> str:
        """The URL of a database holding an empty, migrated ledger, shared by tests one after
        another: emptied (rows and sequences; what a test left connected is cut off) instead
        of created anew, which costs ten times as much. Only for tests that change rows, not
        the schema or the database's settings."""
        import psycopg

        from dltui.ledger import SCHEMA_VERSION

        if self._reused:
            try:
                with psycopg.connect(self._reused, autocommit=True) as conn:
                    conn.execute("SET lock_timeout = '5s'")
                    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                    row = conn.execute("SELECT COUNT(*) FROM migrations").fetchone()
                    if row is not None and row[0] == SCHEMA_VERSION:
                        tables = [r[0] for r in conn.execute(
                            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                            "AND tablename <> 'migrations'")]
                        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
                        conn.execute("ALTER SEQUENCE jobs_rev RESTART")
                        return self._reused
            except psycopg.Error:
                pass  # a fresh one, then
        self._reused = self.database()
        return self._reused

    def restart(self, *, pause: float = 0.0, stopped: object = None) -> None:
        """Stop the server (its connections drop; what was committed stays: this cluster
        runs without fsync, so not ``immediate``), wait ``pause`` seconds, start it again;
        ``stopped`` (a threading.Event) is set while it is down."""
        import time

        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        if stopped is not None:
            stopped.set()  # type: ignore[attr-defined]
        time.sleep(pause)
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                  "-o", self._options, "start")

    def stop(self) -> None:
        """Stop the server at once and delete its files (a suite leaves a few hundred
        databases, gigabytes: deleted by a process of their own, which outlives the run)."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            try:
                subprocess.Popen(["rm", "-rf", "--", str(self.root)], start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except OSError:
                shutil.rmtree(self.root, ignore_errors=True)
