"""The CLI on a PostgreSQL ledger: `--ledger URL`, DLTUI_LEDGER and the `ledger` setting all
reach the same database; downloads, status and check work as on SQLite; a wrong URL is one
line and exit 2."""

from __future__ import annotations

import json

from dltui.ledger import Ledger, jobs
from dltui.model import JobState
from tests.engine.helpers import blob, sha
from tests.fleet.cli import dltui


def test_add_run_status_check_on_postgresql(tmp_path, origin, pg_url) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    small, big = blob(20_000, seed=71), blob(3 << 20, seed=72)
    a, b = origin.add("/a.bin", small), origin.add("/b.bin", big)
    added = dltui(home, "--ledger", pg_url, "add", a, b, "-d", str(dest))
    assert added.returncode == 0, added.stderr
    ran = dltui(home, "run", "--until-idle", env={"DLTUI_LEDGER": pg_url})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (dest / "a.bin").read_bytes() == small and (dest / "b.bin").read_bytes() == big
    config = tmp_path / "config.toml"
    config.write_text(f'ledger = "{pg_url}"\n')
    status = dltui(home, "--config", str(config), "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = [json.loads(line) for line in status.stdout.splitlines()]
    assert [(r["state"], r["sha256"]) for r in rows] == [("FINALIZED", sha(small)),
                                                         ("FINALIZED", sha(big))]
    checked = dltui(home, "check", "--ledger", pg_url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "check: ledger OK (postgresql://***@127.0.0.1:" in checked.stdout
    # Nothing went to the home's own SQLite file.
    assert not (home / "ledger.db").exists()
    with Ledger(home, location=pg_url) as led:
        assert {j.state for j in jobs.list_jobs(led)} == {JobState.FINALIZED}


def test_a_wrong_ledger_url_is_one_line_and_exit_2(tmp_path, pg_cluster) -> None:
    home = tmp_path / "home"
    cases = [
        (["--ledger", "postgresql://dltui:pw@127.0.0.1:9/x", "status"],
         "ledger postgresql://***@127.0.0.1:9/x"),
        (["--ledger", pg_cluster.url("no_such_db"), "status"], 'database "no_such_db"'),
        (["--ledger", "mysql://h/db", "status"], "only postgresql:// URLs"),
    ]
    for argv, needle in cases:
        done = dltui(home, *argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert needle in done.stderr, (argv, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
        assert "pw" not in done.stderr
    # A read-only command finds no ledger in an empty database and says so.
    empty = dltui(home, "--ledger", pg_cluster.database(empty=True), "status")
    assert empty.returncode == 2 and "holds no dltui ledger yet" in empty.stderr


def test_a_read_only_database_is_one_line_and_exit_2(tmp_path, pg_cluster, origin) -> None:
    import psycopg

    home = tmp_path / "home"
    url = pg_cluster.database()
    assert dltui(home, "--ledger", url, "add", origin.add("/r.bin", b"r"),
                 "-d", str(tmp_path / "dl")).returncode == 0
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    # A standby, or a database made read-only: writes refused, reads still work.
    done = dltui(home, "--ledger", url, "pause", "1")
    assert done.returncode == 2, done.stderr
    assert "is read-only" in done.stderr and "primary server" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    status = dltui(home, "--ledger", url, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout.splitlines()[0])["control"] == "run"


def test_a_server_out_of_connections_is_one_line_and_exit_2(tmp_path, pg_cluster) -> None:
    import psycopg

    home = tmp_path / "home"
    owner_url = pg_cluster.database()
    # A role of its own with one connection allowed (limits do not bind superusers).
    role = "r_" + owner_url.rsplit("_", 1)[1]
    with psycopg.connect(owner_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    url = owner_url.replace("//dltui@", f"//{role}@")
    assert dltui(home, "--ledger", url, "status").returncode == 0
    with psycopg.connect(url):  # its one slot, taken (another host, say)
        done = dltui(home, "--ledger", url, "status")
    assert done.returncode == 2, done.stderr
    assert "too many connections" in done.stderr and "ledger_connections" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
