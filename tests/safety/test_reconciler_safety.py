"""The reconciler never deletes or overwrites a file that is not provably the one dltui placed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger, actions, events, jobs
from dltui.ledger.reconcile import reconcile
from dltui.model import JobState
from tests.conftest import force_state
from tests.engine.helpers import blob, fetch_all, fetch_one, sha
from tests.support.cli import dltui


def _dltui(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return dltui(home, *args, timeout=60)


def _reboot(ledger: Ledger, job_id: int) -> None:
    """What a host crash leaves: the job finished in an earlier boot, its file never fsynced."""
    force_state(ledger, job_id, JobState.FINALIZED, boot_id="an-earlier-boot", bytes_durable=0)


def test_a_replaced_file_survives_a_reboot_and_the_download_lands_beside_it(
        ledger, home, dest, origin, settings) -> None:
    data = blob(200_000, seed=31)
    job = fetch_one(ledger, dest, settings, origin.add("/r.bin", data))
    final = Path(job.final_path)
    final.unlink()
    final.write_bytes(b"the user's own file, same name")  # a new inode
    _reboot(ledger, job.id)
    ledger.close()
    rec = _dltui(home, "reconcile")
    assert rec.returncode == 0, rec.stderr
    assert "dest_changed" in rec.stdout
    assert final.read_bytes() == b"the user's own file, same name"
    run = _dltui(home, "run", "--until-idle")
    assert run.returncode == 0, run.stderr
    assert final.read_bytes() == b"the user's own file, same name"
    with Ledger(home) as led:
        again = jobs.get(led, job.id)
        assert again.state is JobState.FINALIZED
        assert Path(again.final_path) == dest / "r (1).bin"
        assert Path(again.final_path).read_bytes() == data
        assert [e for e in events.for_job(led, job.id, 500) if e.kind == "dest_changed"]


def test_a_file_edited_in_place_is_never_deleted(ledger, home, dest, origin, settings) -> None:
    data = blob(200_000, seed=32)
    job = fetch_one(ledger, dest, settings, origin.add("/e.bin", data))
    final = Path(job.final_path)
    with open(final, "r+b") as fh:
        fh.write(b"MY NOTES")
    edited = final.read_bytes()
    _reboot(ledger, job.id)
    report = reconcile(ledger)
    assert report.counts["dest_changed"] == 1 and report.counts["corrupt"] == 0
    assert final.read_bytes() == edited


def test_our_file_damaged_by_a_reboot_is_replaced(ledger, home, dest, origin, settings) -> None:
    """The proof of placement now includes the ctime, which the simulated damage (a write)
    moves and no call can set back: the record takes the file's ctime, as a real crash that
    loses data pages leaves the journalled inode's."""
    data = blob(200_000, seed=33)
    job = fetch_one(ledger, dest, settings, origin.add("/z.bin", data))
    final = Path(job.final_path)
    before = final.stat()
    with open(final, "r+b") as fh:  # unsynced pages lost: zeros, inode and mtime unchanged
        fh.seek(4096)
        fh.write(bytes(8192))
    os.utime(final, ns=(before.st_atime_ns, before.st_mtime_ns))
    # A crash loses data pages, not the inode the journal already holds: its ctime is the
    # one recorded at placement. A write here cannot keep the ctime, so the record follows.
    force_state(ledger, job.id, JobState.FINALIZED, final_ctime_ns=final.stat().st_ctime_ns)
    _reboot(ledger, job.id)
    report = reconcile(ledger)
    assert report.counts["corrupt"] == 1
    assert not final.exists()
    again = fetch_one(ledger, dest, settings, origin.url("/z.bin"))
    assert again.id == job.id and Path(again.final_path) == final
    assert final.read_bytes() == data and again.sha256 == sha(data)


def test_a_broken_symlink_at_a_finished_files_path(ledger, home, dest, origin, settings) -> None:
    data = blob(50_000, seed=34)
    job = fetch_one(ledger, dest, settings, origin.add("/s.bin", data))
    final = Path(job.final_path)
    final.unlink()
    final.symlink_to(dest / "nowhere")
    ledger.close()
    for argv in (["reconcile"], ["run", "--until-idle"], ["reconcile", "--dry-run"]):
        proc = _dltui(home, *argv)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert final.is_symlink() and os.readlink(final) == str(dest / "nowhere")
    # After a reboot too: the symlink is someone else's, the download is made beside it.
    with Ledger(home) as led:
        _reboot(led, job.id)
    assert _dltui(home, "run", "--until-idle").returncode == 0
    assert final.is_symlink()
    assert (dest / "s (1).bin").read_bytes() == data


@pytest.mark.parametrize("flag_batch", [False, True], ids=["job", "lane"])
def test_a_cancel_that_lands_as_the_body_completes_wins(ledger, home, dest, origin, settings,
                                                        monkeypatch, flag_batch) -> None:
    from dltui.engine import stream
    from dltui.ledger import flags
    from dltui.worker import lane

    flags.set_flag(ledger, "batch", flag_batch, by="test")
    urls = [origin.add(f"/c{i}.bin", blob(100_000, seed=50 + i)) for i in range(2)]
    cancelled: list[str] = []

    def cancel_first(url: str) -> None:
        if url == urls[0] and not cancelled:  # the operator's cancel, just as the last byte
            cancelled.append(actions.cancel(ledger, 1, by="test"))

    real_fetch, real_write = stream.fetch, lane.small.write_part

    def fetch(client, url, *a, **kw):
        result = real_fetch(client, url, *a, **kw)
        cancel_first(url)
        return result

    def write_part(part, data, **kw):
        real_write(part, data, **kw)
        if part.name == "1.part":
            cancel_first(urls[0])

    monkeypatch.setattr(stream, "fetch", fetch)
    monkeypatch.setattr(lane.small, "write_part", write_part)
    first, second = fetch_all(ledger, dest, settings, *urls, workers=1)  # one batch of two
    assert cancelled == ["cancel requested"]
    assert first.state is JobState.CANCELLED and first.final_path is None
    assert not (dest / "c0.bin").exists() and not paths.part_path(home, 1).exists()
    assert second.state is JobState.FINALIZED
