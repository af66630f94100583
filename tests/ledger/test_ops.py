import subprocess
import sys
from pathlib import Path

import pytest

from dltui.ledger import ops
from dltui.ledger.ops import OpStatus, op_key
from tests.conftest import add_job

ROOT = Path(__file__).resolve().parents[2]


def test_op_key_is_deterministic_and_distinct() -> None:
    assert op_key("LINK", 1, dest="/a") == op_key("LINK", 1, dest="/a")
    assert len({op_key("LINK", 1), op_key("LINK", 2), op_key("HEAD", 1),
                op_key("LINK", 1, dest="/a")}) == 4


def test_done_op_is_not_run_again(ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    calls = []
    key = op_key("FINALIZE", job_id)

    def effect():
        calls.append(1)
        return {"sha256": "ab" * 32, "size": 3}

    first = ops.run_effect(ledger, key, effect, job_id=job_id, kind="FINALIZE")
    second = ops.run_effect(ledger, key, effect, job_id=job_id, kind="FINALIZE")
    assert first == second == {"sha256": "ab" * 32, "size": 3}
    assert calls == [1]
    op = ops.get(ledger, key)
    assert op.status == OpStatus.DONE and op.runs == 1 and op.finished_at is not None


def test_failed_op_records_error_and_runs_again(ledger, dest) -> None:
    job_id = add_job(ledger, dest)
    key = op_key("HEAD", job_id)
    with pytest.raises(RuntimeError):
        ops.run_effect(ledger, key, lambda: (_ for _ in ()).throw(RuntimeError("boom")),
                       job_id=job_id, kind="HEAD")
    assert ops.get(ledger, key).status == OpStatus.FAILED
    assert "boom" in ops.get(ledger, key).error
    assert ops.run_effect(ledger, key, lambda: 7, job_id=job_id, kind="HEAD") == 7
    assert ops.get(ledger, key).runs == 2


def test_verify_reruns_a_done_op_whose_effect_vanished(ledger, dest, tmp_path) -> None:
    job_id = add_job(ledger, dest)
    target = tmp_path / "effect"
    key = op_key("LINK", job_id)

    def link():
        target.write_text("x")
        return {"path": str(target)}

    def still_there(result) -> bool:
        return Path(result["path"]).exists()

    ops.run_effect(ledger, key, link, job_id=job_id, kind="LINK", verify=still_there)
    target.unlink()
    ops.run_effect(ledger, key, link, job_id=job_id, kind="LINK", verify=still_there)
    assert target.exists() and ops.get(ledger, key).runs == 2


def test_replay_after_crash_between_start_and_done(ledger, home, dest, tmp_path) -> None:
    job_id = add_job(ledger, dest)
    key = op_key("LINK", job_id, dest="/x")
    effect_log = tmp_path / "effects.log"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ledger.crasher", str(home), str(job_id), key,
         str(effect_log)],
        cwd=ROOT, timeout=60,
    )
    assert proc.returncode == 9
    crashed = ops.get(ledger, key)
    assert crashed.status == OpStatus.STARTED and crashed.runs == 1
    assert [op.key for op in ops.started(ledger)] == [key]
    assert effect_log.read_text() == "ran\n"

    def idempotent_effect():
        # A real step verifies what is on disk before acting; here: the effect already landed.
        already = effect_log.read_text().count("ran")
        if not already:
            effect_log.write_text("ran\n")
        return {"applied": not already}

    result = ops.run_effect(ledger, key, idempotent_effect, job_id=job_id, kind="LINK")
    assert result == {"applied": False}
    assert effect_log.read_text() == "ran\n"
    done = ops.get(ledger, key)
    assert done.status == OpStatus.DONE and done.runs == 2
    assert ops.for_job(ledger, job_id) == [done]
