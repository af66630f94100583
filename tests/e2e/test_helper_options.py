"""`run --processes N` hands its options to the helper processes it starts: connections, and
each process's share of the bandwidth limit, so the limit holds for the whole run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dltui import paths
from dltui.ledger import Ledger, jobs
from dltui.model import JobState
from dltui.origin import Resource
from tests.conftest import TEST_ENV, wait_for
from tests.engine.helpers import blob

MiB = 1 << 20


def _children(pid: int) -> list[list[str]]:
    """The command lines of ``pid``'s child processes."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append((entry / "cmdline").read_bytes().decode().split("\0")[:-1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_helpers_get_the_options_and_the_limit_holds_for_the_run(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    urls = [origin.add(f"/h{i}.bin", blob(2 * MiB, seed=800 + i)) for i in range(4)]
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_FLAG_BATCH": "0"}
    subprocess.run([sys.executable, "-m", "dltui", "add", "-q", *urls, "-d", str(dest)],
                   env=env, check=True)
    began = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "dltui", "run", "--until-idle",
                            "--processes", "2", "--workers", "2", "--max-bandwidth", "2M",
                            "-x", "3"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        [helper] = wait_for(lambda: _children(run.pid), "no helper process started",
                            timeout=20)
        assert "--worker-process" in helper
        assert helper[helper.index("-x") + 1] == "3"
        assert helper[helper.index("--max-bandwidth") + 1] == str(MiB)  # half of 2M each
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    elapsed = time.monotonic() - began
    assert run.returncode == 0, err
    with Ledger(home) as led:
        assert [j.state for j in jobs.list_jobs(led)] == [JobState.FINALIZED] * 4
    # 8 MiB at 2 MiB/s for the run: about 4 s (each process at the whole limit took 2 s).
    assert elapsed >= 8 / 2 * 0.8, elapsed


def test_until_idle_ends_when_only_jobs_pinned_elsewhere_are_left(tmp_path, origin) -> None:
    """A job pinned to another host is work only that host can do: `run --until-idle` on
    this one waited for it for ever."""
    home, dest = tmp_path / "home", tmp_path / "dl"
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_HOST_NAME": "host-a"}
    mine = origin.add("/mine.bin", blob(MiB, seed=810))
    theirs = origin.add("/theirs.bin", blob(MiB, seed=811))
    for args in ([mine], [theirs, "--host", "host-b"]):
        subprocess.run([sys.executable, "-m", "dltui", "add", "-q", *args, "-d", str(dest)],
                       env=env, check=True)
    done = subprocess.run([sys.executable, "-m", "dltui", "run", "--until-idle"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "left 1 job(s) pinned to other hosts to them (host-b 1)" in done.stderr
    with Ledger(home) as led:
        assert [j.state for j in jobs.list_jobs(led)] == [JobState.FINALIZED, JobState.PLANNED]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_helpers_get_the_ledger_the_config_and_the_host_name(tmp_path, origin) -> None:
    """What decides a helper's settings is what the run was given: `--ledger` (a SQLite file
    outside the home), `--config` (whose host_name and connections it must share) and the
    environment; each helper works on that ledger, as that host."""
    home, dest = tmp_path / "home", tmp_path / "dl"
    ledger_file = tmp_path / "elsewhere" / "queue.db"
    ledger_file.parent.mkdir(mode=0o700)
    config = tmp_path / "dltui.toml"
    config.write_text('host_name = "dl-07"\nconnections_per_file = 2\n')
    env = {**os.environ, **TEST_ENV, "DLTUI_HOME": str(home), "DLTUI_FLAG_BATCH": "0"}
    env.pop("DLTUI_LEDGER", None)
    urls = [origin.add(f"/c{i}.bin", Resource(data=blob(MiB, seed=820 + i), rate=MiB))
            for i in range(4)]
    subprocess.run([sys.executable, "-m", "dltui", "--ledger", str(ledger_file), "add", "-q",
                    *urls, "-d", str(dest)], env=env, check=True)
    run = subprocess.Popen([sys.executable, "-m", "dltui", "--ledger", str(ledger_file),
                            "--config", str(config), "run", "--until-idle", "--processes", "2",
                            "--workers", "1"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        [helper] = wait_for(lambda: _children(run.pid), "no helper process started",
                            timeout=20)
        helper_pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                          and _children_pid(p, run.pid))
        environ = _environ(helper_pid)
        assert environ["DLTUI_LEDGER"] == str(ledger_file)
        assert environ["DLTUI_HOST_NAME"] == "dl-07"
        assert helper[helper.index("--config") + 1] == str(config)
        assert helper[helper.index("-x") + 1] == "2"  # from the config, as the run read it

        def helper_holds_a_job() -> bool:
            with Ledger(home, location=str(ledger_file)) as led:
                return any((j.lease_owner or "").startswith(f"dl-07:{helper_pid}:")
                           for j in jobs.list_jobs(led))

        wait_for(helper_holds_a_job, "the helper never leased a job of that ledger",
                 timeout=20)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    with Ledger(home, location=str(ledger_file)) as led:
        assert [j.state for j in jobs.list_jobs(led)] == [JobState.FINALIZED] * 4
    assert not paths.ledger_path(home).exists()  # nothing went to the home's own ledger


def _children_pid(entry: Path, parent: int) -> bool:
    try:
        stat = (entry / "stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1]) == parent
    except (OSError, IndexError, ValueError):
        return False
