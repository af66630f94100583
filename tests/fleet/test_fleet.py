"""A fleet: three hosts (separate homes, their own host names) work one PostgreSQL queue; one
is SIGKILLed mid-run and the others finish its jobs after the TTL. Every job ends FINALIZED
once, with the right bytes, one FINALIZE and one LINK op, and one file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from dltui.ledger import Ledger, jobs
from dltui.origin import Resource
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob, sha

HOSTS = ("host-a", "host-b", "host-c")
SMALL, LARGE, PINNED = 200, 6, 12


def _host_env(tmp_path: Path, host: str, pg_url: str) -> dict[str, str]:
    return {**os.environ, **TEST_ENV, "DLTUI_HOME": str(tmp_path / host),
            "DLTUI_LEDGER": pg_url, "DLTUI_HOST_NAME": host, "DLTUI_LEASE_TTL": "3",
            "DLTUI_AFFINITY_GRACE": "1", "DLTUI_CONNECTIONS_PER_FILE": "1"}


def test_three_hosts_one_queue_one_killed(tmp_path, origin, pg_url) -> None:
    shared, own = tmp_path / "shared", tmp_path / "pinned"  # one filesystem all hosts see
    expected: dict[str, bytes] = {}
    urls_shared, urls_pinned = [], []
    for i in range(SMALL):
        data = blob(2_000 + 97 * i, seed=1000 + i)
        urls_shared.append(origin.add(f"/s/{i:03d}.bin", data))
        expected[f"{i:03d}.bin"] = data
    for i in range(LARGE):  # slow enough to be mid-stream when a host dies
        data = blob(2 << 20, seed=2000 + i)
        urls_shared.append(origin.add(f"/l/big{i}.iso", Resource(data=data, rate=1 << 20)))
        expected[f"big{i}.iso"] = data
    for i in range(PINNED):
        data = blob(5_000 + i, seed=3000 + i)
        urls_pinned.append(origin.add(f"/p/pin{i}.dat", data))
        expected[f"pin{i}.dat"] = data
    with Ledger(tmp_path / "host-b", location=pg_url) as led:
        jobs.add(led, [jobs.JobSpec(u, shared) for u in urls_shared])
    env_c = _host_env(tmp_path, "host-c", pg_url)
    pinned = subprocess.run([sys.executable, "-m", "dltui", "add", "-q", "--host", "host-c",
                             "-d", str(own), *urls_pinned], env=env_c, capture_output=True,
                            text=True, timeout=60)
    assert pinned.returncode == 0, pinned.stderr

    procs = {host: subprocess.Popen(
        [sys.executable, "-m", "dltui", "run", "-p", "1", "-w", "2"],
        env=_host_env(tmp_path, host, pg_url), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True) for host in HOSTS}
    conn = psycopg.connect(pg_url, autocommit=True)
    try:
        def a_holds_a_large_part() -> bool:
            return conn.execute(
                "SELECT count(*) FROM jobs WHERE lease_owner LIKE 'host-a:%' "
                "AND url LIKE '%/l/%' AND bytes_committed > 0").fetchone()[0] > 0

        wait_for(a_holds_a_large_part, "host-a never streamed a large file", timeout=60)
        held = {r[0] for r in conn.execute(
            "SELECT id FROM jobs WHERE lease_owner LIKE 'host-a:%' AND bytes_committed > 0")}
        procs["host-a"].send_signal(signal.SIGKILL)
        procs["host-a"].wait()

        def all_done() -> bool:
            rows = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
            return dict(rows) == {"FINALIZED": SMALL + LARGE + PINNED}

        wait_for(all_done, "the fleet did not finish every job", timeout=120)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=60)
    try:
        rows = conn.execute("SELECT id, file_name, sha256, final_path, host, decision, "
                            "decision_reason, part_host FROM jobs").fetchall()
        ops = conn.execute("SELECT job_id, kind, count(*) FROM ops WHERE kind IN "
                           "('FINALIZE', 'LINK') GROUP BY job_id, kind").fetchall()
        finishers = conn.execute(
            "SELECT job_id, count(*) FROM events WHERE kind = 'state' "
            "AND data LIKE '%\"to\": \"FINALIZED\"%' GROUP BY job_id").fetchall()
    finally:
        conn.close()

    by_id = {r[0]: r for r in rows}
    for _job_id, name, digest, final_path, *_ in rows:
        assert digest == sha(expected[name]), name
        assert Path(final_path).read_bytes() == expected[name]
    # One file per job, in the directory each job named; nothing beside them, no "name (1)".
    assert sorted(p.name for p in shared.iterdir()) == sorted(
        n for n in expected if not n.startswith("pin"))
    assert sorted(p.name for p in own.iterdir()) == sorted(
        n for n in expected if n.startswith("pin"))
    # One FINALIZE and one LINK op per job, whoever ran them.
    counts: dict[int, dict[str, int]] = {}
    for job_id, kind, n in ops:
        counts.setdefault(job_id, {})[kind] = n
    assert {j: c for j, c in counts.items() if c != {"FINALIZE": 1, "LINK": 1}} == {}
    assert set(counts) == set(by_id)
    # Exactly one FINALIZED transition per job.
    assert sorted(finishers) == sorted((j, 1) for j in by_id)
    # Host A's jobs were finished elsewhere, starting over: their part was on host A.
    for job_id in held:
        _, _, _, _, _, decision, reason, part_host = by_id[job_id]
        assert part_host in ("host-b", "host-c")
        assert (decision, reason) == ("discard", "part_on_host:host-a"), by_id[job_id]
    # Pinned jobs ran on host C only.
    pinned_ids = [r[0] for r in rows if r[4] == "host-c"]
    assert len(pinned_ids) == PINNED
    assert all(by_id[j][7] in (None, "host-c") for j in pinned_ids)
