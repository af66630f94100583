"""dltui remove: ledger rows of jobs that are over go; files only when provably dltui's."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dltui.ledger import Ledger, events, jobs
from dltui.model import JobState
from dltui.origin import Resource
from tests.engine.helpers import blob
from tests.support.cli import dltui


def _dltui(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return dltui(home, *args, timeout=60)


def _setup(tmp_path, origin) -> tuple[Path, Path, dict[str, int]]:
    home, dest = tmp_path / "home", tmp_path / "dl"
    urls = {"ok": origin.add("/ok.bin", blob(5000, seed=1)),
            "edited": origin.add("/edited.bin", blob(6000, seed=2)),
            "gone": origin.add("/gone.bin", Resource(status=404))}
    with Ledger(home) as led:
        ids = {k: jobs.add(led, [jobs.JobSpec(u, dest)])[0].job.id for k, u in urls.items()}
    assert _dltui(home, "run", "--until-idle").returncode == 1  # the 404 fails
    return home, dest, ids


def test_remove_by_state_keeps_files_and_queued_jobs(tmp_path, origin) -> None:
    home, dest, ids = _setup(tmp_path, origin)
    queued = origin.add("/later.bin", blob(100))
    assert _dltui(home, "add", "-q", queued, "-d", str(dest)).returncode == 0
    done = _dltui(home, "remove", "--state", "finalized,failed")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "removed 3 jobs\n"
    with Ledger(home) as led:
        left = jobs.list_jobs(led)
        assert [j.state for j in left] == [JobState.PLANNED]
        removed = {e.job_id for e in events.recent(led, 50, kind="removed")}
        assert removed == set(ids.values())  # the history stays, with the removal in it
    assert sorted(p.name for p in dest.iterdir()) == ["edited.bin", "ok.bin"]  # untouched


def test_remove_refuses_active_or_unknown_jobs_and_changes_nothing(tmp_path, origin) -> None:
    home, dest, ids = _setup(tmp_path, origin)
    queued = origin.add("/later.bin", blob(100))
    assert _dltui(home, "add", "-q", queued, "-d", str(dest)).returncode == 0
    bad = _dltui(home, "remove", str(ids["ok"]), "4")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("dltui remove: error: job 4 is PLANNED; remove applies to "
                                  "jobs in CANCELLED, FAILED, FINALIZED")
    unknown = _dltui(home, "remove", "99")
    assert unknown.returncode == 2 and "99" in unknown.stderr
    with Ledger(home) as led:
        assert len(jobs.list_jobs(led)) == 4  # all or nothing
    both = _dltui(home, "remove", "1", "--state", "failed")
    assert both.returncode == 2 and "not both" in both.stderr
    age = _dltui(home, "remove", "--state", "failed", "--older-than", "soon")
    assert age.returncode == 2 and "is not an age" in age.stderr


def test_delete_files_only_removes_what_dltui_placed(tmp_path, origin) -> None:
    """The summary now ends with the bytes given back (``; freed …``): the files and the
    store objects of the removed jobs."""
    home, dest, ids = _setup(tmp_path, origin)
    edited = dest / "edited.bin"
    edited.write_bytes(b"the user's own words")  # same name, not dltui's bytes any more
    done = _dltui(home, "remove", "--delete-files", str(ids["ok"]), str(ids["edited"]),
                  str(ids["gone"]))
    assert done.returncode == 0, done.stderr
    assert not (dest / "ok.bin").exists()
    assert edited.read_bytes() == b"the user's own words"
    assert f"kept {edited}" in done.stdout
    assert "removed 3 jobs, deleted 1 file, kept 1; freed " in done.stdout


def test_recent_jobs_are_not_older_than_a_day(tmp_path, origin) -> None:
    home, _dest, _ids = _setup(tmp_path, origin)
    done = _dltui(home, "remove", "--state", "finalized", "--older-than", "1d")
    assert done.returncode == 0 and done.stdout == "removed 0 jobs\n"
