import hashlib
from pathlib import Path

import pytest

from dltui import paths
from dltui.ledger import Ledger, actions, events, jobs, ops
from dltui.ledger.reconcile import ACTION_KINDS, reconcile
from dltui.model import JobState
from dltui.store import Store
from tests.conftest import add_job, dump, force_state

FOREIGN_EXPIRED = {"lease_owner": "elsewhere:1:1:w", "lease_until": 1.0}
FOREIGN_LIVE = {"lease_owner": "elsewhere:1:1:w", "lease_until": 1e12}


def _part(home: Path, job_id: int, data: bytes = b"partial") -> Path:
    part = paths.part_path(home, job_id)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    return part


def _stored(home: Path, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    src = home / "incoming"
    src.write_bytes(data)
    Store(paths.store_dir(home)).promote(src, sha)
    return sha


def _finalized(ledger: Ledger, home: Path, dest: Path, name: str, data: bytes) -> tuple[int, Path]:
    job_id = add_job(ledger, dest, f"http://example.com/{name}")
    sha = _stored(home, data)
    final = dest / name
    Store(paths.store_dir(home)).materialize(sha, final)
    force_state(ledger, job_id, JobState.FINALIZED, sha256=sha, final_path=str(final),
                bytes_committed=len(data), bytes_total=len(data))
    return job_id, final


def test_expired_leases_are_requeued_with_part_and_ops_kept(ledger, home, dest) -> None:
    job_id = add_job(ledger, dest)
    force_state(ledger, job_id, JobState.STREAMING, bytes_committed=7, **FOREIGN_EXPIRED)
    part = _part(home, job_id)
    ops.run_effect(ledger, ops.op_key("HEAD", job_id), lambda: {"etag": '"x"'},
                   job_id=job_id, kind="HEAD")
    report = reconcile(ledger)
    assert report.counts["lease_expired"] == 1
    job = jobs.get(ledger, job_id)
    assert job.state is JobState.PLANNED and job.lease_owner is None
    assert job.bytes_committed == 7 and part.exists()
    assert ops.get(ledger, ops.op_key("HEAD", job_id)).status == "done"


def test_pending_pause_and_cancel_land_on_expiry(ledger, home, dest) -> None:
    p = add_job(ledger, dest, "http://example.com/p")
    c = add_job(ledger, dest, "http://example.com/c")
    force_state(ledger, p, JobState.LEASED, control="pause", **FOREIGN_EXPIRED)
    force_state(ledger, c, JobState.STREAMING, control="cancel", **FOREIGN_EXPIRED)
    _part(home, c)
    report = reconcile(ledger)
    assert (report.counts["paused"], report.counts["cancelled"]) == (1, 1)
    assert report.counts["part_deleted"] == 1
    assert jobs.get(ledger, p).state is JobState.PAUSED
    assert jobs.get(ledger, c).state is JobState.CANCELLED
    assert not paths.part_path(home, c).exists()


def test_live_leases_and_their_ops_are_untouched(ledger, home, dest) -> None:
    job_id = add_job(ledger, dest)
    force_state(ledger, job_id, JobState.STREAMING, **FOREIGN_LIVE)
    with ledger.write() as conn:
        conn.execute("INSERT INTO ops (key, job_id, kind, status, runs) "
                     "VALUES ('k', ?, 'STREAM', 'started', 1)", (job_id,))
    report = reconcile(ledger)
    assert report.total == 0
    assert jobs.get(ledger, job_id).state is JobState.STREAMING
    assert ops.get(ledger, "k").status == "started"


def test_started_ops_are_verified_or_reset(ledger, home, dest) -> None:
    job_id = add_job(ledger, dest)
    sha = _stored(home, b"content")
    final = dest / "file.bin"
    Store(paths.store_dir(home)).materialize(sha, final)
    with ledger.write() as conn:
        for key, kind, args in (
            ("fin", "FINALIZE", f'{{"sha256": "{sha}"}}'),
            ("lnk", "LINK", f'{{"sha256": "{sha}", "dest": "{final}"}}'),
            ("lnk-missing", "LINK", f'{{"sha256": "{sha}", "dest": "{dest / "gone"}"}}'),
            ("fin-missing", "FINALIZE", '{"sha256": "' + "0" * 64 + '"}'),
            ("head", "HEAD", "{}"),
        ):
            conn.execute("INSERT INTO ops (key, job_id, kind, status, runs, args) "
                         "VALUES (?, ?, ?, 'started', 1, ?)", (key, job_id, kind, args))
    report = reconcile(ledger)
    assert (report.counts["op_completed"], report.counts["op_reset"]) == (2, 3)
    assert ops.get(ledger, "fin").status == "done"
    assert ops.get(ledger, "fin").result["sha256"] == sha
    assert ops.get(ledger, "lnk").status == "done"
    for key in ("lnk-missing", "fin-missing", "head"):
        assert ops.get(ledger, key).status == "failed"
    assert ops.started(ledger) == []


def test_a_removed_file_stays_removed(ledger, home, dest) -> None:
    """A finished file gone without a reboot was removed by someone: recorded once, never
    re-made (the reconciler used to put it back from the store)."""
    job_id, final = _finalized(ledger, home, dest, "a.bin", b"hello world")
    final.unlink()
    report = reconcile(ledger)
    assert report.counts["dest_removed"] == 1 and report.counts["relinked"] == 0
    assert not final.exists()
    job = jobs.get(ledger, job_id)
    assert job.state is JobState.FINALIZED and job.final_removed_at is not None
    assert events.for_job(ledger, job_id)[-1].kind == "dest_removed"
    assert reconcile(ledger).total == 0  # recorded once
    assert not final.exists()


def test_a_file_lost_in_a_reboot_is_relinked(ledger, home, dest) -> None:
    """After a reboot, a file finished without fsync that is gone may be the crash's doing:
    it is made again from the store."""
    job_id, final = _finalized(ledger, home, dest, "a.bin", b"hello world")
    final.unlink()
    force_state(ledger, job_id, JobState.FINALIZED, boot_id="an-earlier-boot",
                bytes_durable=0)
    report = reconcile(ledger)
    assert report.counts["relinked"] == 1
    assert final.read_bytes() == b"hello world"
    job = jobs.get(ledger, job_id)
    assert job.state is JobState.FINALIZED and job.bytes_durable == job.bytes_committed
    assert events.for_job(ledger, job_id)[-1].kind == "relinked"
    assert reconcile(ledger).total == 0


def test_a_file_lost_in_a_reboot_without_its_object_requeues(ledger, home, dest) -> None:
    job_id, final = _finalized(ledger, home, dest, "b.bin", b"bytes")
    key = ops.op_key("FINALIZE", job_id)
    ops.run_effect(ledger, key, lambda: {"ok": True}, job_id=job_id, kind="FINALIZE")
    final.unlink()
    Store(paths.store_dir(home)).object_path(jobs.get(ledger, job_id).sha256).unlink()
    force_state(ledger, job_id, JobState.FINALIZED, boot_id="an-earlier-boot",
                bytes_durable=0)
    report = reconcile(ledger)
    assert report.counts["requeued"] == 1
    job = jobs.get(ledger, job_id)
    assert job.state is JobState.PLANNED
    assert (job.sha256, job.final_path, job.bytes_committed) == (None, None, 0)
    assert ops.get(ledger, key).status == "failed"  # its effect is gone: it must run again


def test_orphan_parts_are_deleted(ledger, home, dest) -> None:
    queued = add_job(ledger, dest, "http://example.com/q")
    done, _ = _finalized(ledger, home, dest, "d.bin", b"d")
    keep = _part(home, queued)
    orphan = _part(home, 999)
    finished = _part(home, done)
    segment = paths.parts_dir(home) / "999.part.seg1"
    segment.write_bytes(b"s")
    stranger = paths.parts_dir(home) / "notes.txt"
    stranger.write_text("not ours")
    report = reconcile(ledger)
    assert report.counts["part_deleted"] == 3
    assert keep.exists() and stranger.exists()
    assert not orphan.exists() and not finished.exists() and not segment.exists()


def test_dry_run_changes_nothing_and_reports_the_same(ledger, home, dest) -> None:
    a = add_job(ledger, dest, "http://example.com/a")
    force_state(ledger, a, JobState.STREAMING, **FOREIGN_EXPIRED)
    _, final = _finalized(ledger, home, dest, "r.bin", b"relink me")
    final.unlink()
    orphan = _part(home, 4242)
    with ledger.write() as conn:
        conn.execute("INSERT INTO ops (key, job_id, kind, status, runs) "
                     "VALUES ('h', ?, 'HEAD', 'started', 1)", (a,))
    before = [row for row in dump(ledger.location) if row[0] != "events"]
    dry = reconcile(ledger, dry_run=True)
    assert [row for row in dump(ledger.location) if row[0] != "events"] == before
    assert orphan.exists() and not final.exists()
    assert dry.dry_run and dry.total == 4
    real = reconcile(ledger)
    assert real.counts == dry.counts
    assert reconcile(ledger).total == 0  # healed: a second run has nothing to do
    logged = events.recent(ledger, kind="reconcile")
    assert [e.data["dry_run"] for e in logged] == [True, False, False]
    assert logged[1].data["counts"] == {k: v for k, v in real.counts.items() if v}


@pytest.mark.parametrize("kind", ACTION_KINDS)
def test_every_action_kind_is_counted(kind) -> None:
    from dltui.ledger.reconcile import Action, ReconcileReport

    report = ReconcileReport(dry_run=False, actions=[Action(kind, 1, "x")])
    assert report.counts[kind] == 1 and sum(report.counts.values()) == 1


def test_running_job_pause_and_cancel_are_requests(ledger, home, dest) -> None:
    job_id = add_job(ledger, dest)
    force_state(ledger, job_id, JobState.STREAMING, **FOREIGN_LIVE)
    part = _part(home, job_id)
    assert actions.pause(ledger, job_id) == "pause requested"
    assert actions.resume(ledger, job_id) == "pause withdrawn"
    assert actions.cancel(ledger, job_id) == "cancel requested"
    job = jobs.get(ledger, job_id)
    assert job.state is JobState.STREAMING and job.control == "cancel" and part.exists()
    force_state(ledger, job_id, JobState.STREAMING, **FOREIGN_EXPIRED)
    assert actions.cancel(ledger, job_id) == "cancelled"
    assert not part.exists()


@pytest.mark.parametrize("when", ["same boot", "after a reboot"])
def test_files_finished_without_fsync_are_reverified_after_a_reboot(ledger, home, dest,
                                                                    when) -> None:
    from dltui.durability import boot_id

    data = b"finished but never fsynced " * 1000
    job_id, _ = _finalized(ledger, home, dest, "unsynced.bin", data)
    boot = boot_id() if when == "same boot" else "an-earlier-boot"
    force_state(ledger, job_id, JobState.FINALIZED, boot_id=boot, bytes_durable=0)
    report = reconcile(ledger)
    if when == "same boot":  # the page cache still holds it: nothing to check
        assert report.counts["reverified"] == report.counts["corrupt"] == 0
        return
    assert report.counts["reverified"] == 1
    job = jobs.get(ledger, job_id)
    assert (job.bytes_durable, job.boot_id) == (len(data), boot_id())
    assert reconcile(ledger).counts["reverified"] == 0  # checked once, not at every start


def test_file_damaged_by_a_reboot_is_downloaded_again(ledger, home, dest) -> None:
    data = b"these bytes did not reach the disk " * 1000
    job_id, final = _finalized(ledger, home, dest, "lost.bin", data)
    force_state(ledger, job_id, JobState.FINALIZED, boot_id="an-earlier-boot", bytes_durable=0)
    sha = jobs.get(ledger, job_id).sha256
    # What a host crash leaves of unsynced pages: the right size, zeros inside.
    with open(final, "r+b") as fh:
        fh.seek(4096)
        fh.write(bytes(8192))
    report = reconcile(ledger)
    assert report.counts["corrupt"] == 1
    job = jobs.get(ledger, job_id)
    assert job.state is JobState.PLANNED and job.sha256 is None
    assert not final.exists()
    assert not Store(paths.store_dir(home)).has(sha)  # the damaged object is gone too


def test_a_link_that_died_mid_copy_leaves_no_temp_file(ledger, home, dest) -> None:
    import os
    import time

    job_id = add_job(ledger, dest, "http://example.com/big.iso")
    sha = _stored(home, b"the object")
    force_state(ledger, job_id, JobState.FINALIZING, sha256=sha, **FOREIGN_EXPIRED)
    temp = dest / ".big.iso.dltui-0123456789ab.tmp"  # the copy's temp, never linked
    temp.write_bytes(b"half a copy")
    os.utime(temp, (time.time() - 3600,) * 2)
    with ledger.write() as conn:
        conn.execute("INSERT INTO ops (key, job_id, kind, status, runs, args) "
                     "VALUES ('lnk', ?, 'LINK', 'started', 1, ?)",
                     (job_id, f'{{"sha256": "{sha}", "dest": "{dest / "big.iso"}"}}'))
    report = reconcile(ledger)
    assert report.counts["op_reset"] == 1
    assert not temp.exists()
