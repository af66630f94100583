"""Checksums as aria2 takes them: md5, sha-1, sha-224, sha-256, sha-384, sha-512."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from dltui.ledger import Ledger, jobs
from dltui.model import JobState
from tests.engine.helpers import blob
from tests.support.cli import dltui


def _dltui(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return dltui(home, *args, cwd=cwd)


def test_get_with_md5_and_sha512(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    data = blob(3 << 20, seed=31)  # large enough for the streaming path
    url = origin.add("/m.bin", data)
    ok = _dltui(home, "get", url, "-d", str(dest),
                "--checksum", "md5=" + hashlib.md5(data).hexdigest())
    assert ok.returncode == 0, ok.stdout + ok.stderr
    small = blob(5000, seed=32)
    url2 = origin.add("/s.bin", small)
    bad = _dltui(home, "get", url2, "-d", str(dest), "--checksum", "sha-512=" + "0" * 128)
    assert bad.returncode == 1
    assert "sha-512 mismatch" in bad.stdout
    assert not (dest / "s.bin").exists()  # nothing of the wrong bytes reaches the user


def test_input_file_checksum_lines_and_add(tmp_path, origin) -> None:
    home, dest = tmp_path / "home", tmp_path / "dl"
    a, b = blob(4000, seed=33), blob(4000, seed=34)
    listing = tmp_path / "urls.txt"
    listing.write_text(
        f"{origin.add('/a.bin', a)}\n  checksum=sha-1={hashlib.sha1(a).hexdigest()}\n"
        f"{origin.add('/b.bin', b)}\n  checksum=md5={hashlib.md5(b).hexdigest()}\n")
    assert _dltui(home, "add", "-q", "-i", str(listing), "-d", str(dest)).returncode == 0
    assert _dltui(home, "run", "--until-idle").returncode == 0
    with Ledger(home) as led:
        done = jobs.list_jobs(led)
    assert [j.state for j in done] == [JobState.FINALIZED] * 2
    assert done[0].checksum == "sha-1=" + hashlib.sha1(a).hexdigest()


def test_bad_checksums_are_refused_with_one_line(tmp_path) -> None:
    home = tmp_path / "home"
    for text, words in (("md5=abc", "not a md5 digest; give 32"),
                        ("crc32=00000000", "ALGO one of md5, sha-1"),
                        ("sha-256", "use ALGO=HEX")):
        out = _dltui(home, "add", "http://127.0.0.1:9/x", "--checksum", text, "-d", str(tmp_path))
        assert out.returncode == 2 and words in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1
    listing = tmp_path / "bad.txt"
    listing.write_text("http://127.0.0.1:9/y\n  checksum=sha-512=12\n")
    out = _dltui(home, "add", "-i", str(listing), "-d", str(tmp_path))
    assert out.returncode == 2 and f"{listing}:2" in out.stderr


def test_a_stored_object_is_checked_before_it_is_reused(ledger, dest, origin, settings,
                                                        tmp_path) -> None:
    from dltui import requests
    from tests.engine.helpers import run_pool

    data = blob(20_000, seed=35)
    url = origin.add("/reuse.bin", data)
    first = jobs.add(ledger, [jobs.JobSpec(url, dest)])[0].job.id
    run_pool(ledger, settings)
    assert jobs.get(ledger, first).state is JobState.FINALIZED
    # The same URL into another directory: the stored object would be reused ("cached")...
    other = tmp_path / "other"
    good = requests.with_checksum(requests.request(url, other, "good.bin"),
                                  "md5=" + hashlib.md5(data).hexdigest(), what="--checksum")
    bad = requests.with_checksum(requests.request(url, other, "bad.bin"),
                                 "sha-1=" + "0" * 40, what="--checksum")
    ids = [r.job.id for r in jobs.add(ledger, [good, bad])]
    run_pool(ledger, settings)
    ok, wrong = (jobs.get(ledger, i) for i in ids)
    assert ok.state is JobState.FINALIZED and (other / "good.bin").read_bytes() == data
    assert wrong.state is JobState.FAILED and "sha-1 mismatch" in wrong.error
    assert not (other / "bad.bin").exists()


def test_a_conflicting_digest_of_any_algorithm_is_refused(tmp_path, origin) -> None:
    """Only SHA-256 conflicts were refused: a re-`get` with another md5 printed OK."""
    data = blob(5000, seed=9)
    url = origin.add("/d.bin", data)
    home, dest = tmp_path / "home", tmp_path / "dl"
    md5 = hashlib.md5(data).hexdigest()
    assert _dltui(home, "get", url, "-d", str(dest), "--checksum", f"md5={md5}").returncode == 0
    for algo, size in (("md5", 32), ("sha-1", 40), ("sha-224", 56), ("sha-384", 96),
                       ("sha-512", 128)):
        proc = _dltui(home, "get", url, "-d", str(dest), "--checksum", f"{algo}={'0' * size}")
        assert proc.returncode == 2, (algo, proc.stdout, proc.stderr)
        assert "job 1 already exists" in proc.stderr and f"{algo}={'0' * size}" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    again = _dltui(home, "get", url, "-d", str(dest), "--checksum", f"md5={md5}")
    assert again.returncode == 0 and "(already downloaded)" in again.stdout
