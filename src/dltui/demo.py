"""`dltui demo`: a loopback origin with a realistic mix of files, queued into a demo ledger.

Everything stays on 127.0.0.1: large fast files, a slow rate-limited one, one that drops the
connection mid-way (and resumes), one whose content changes between requests (discard and
restart), a 404, and two identical files (stored once, hardlinked twice).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dltui.ledger import Ledger, jobs
from dltui.origin import Origin, Resource

MiB = 1 << 20


@dataclass(frozen=True)
class DemoFile:
    """One file the demo origin serves and why it is there."""

    path: str
    resource: Resource
    note: str


def demo_files(seed: int = 7) -> list[DemoFile]:
    """The demo's files (content is random but repeatable)."""
    rng = random.Random(seed)
    twin = rng.randbytes(6 * MiB)
    v1, v2 = rng.randbytes(12 * MiB), rng.randbytes(12 * MiB)
    return [
        DemoFile("/iso/debian-netinst.iso", Resource(data=rng.randbytes(96 * MiB),
                                                     rate=24 * MiB), "large and fast"),
        DemoFile("/iso/ubuntu-server.iso", Resource(data=rng.randbytes(64 * MiB),
                                                    rate=16 * MiB), "large and fast"),
        DemoFile("/data/slow-archive.tar", Resource(data=rng.randbytes(8 * MiB),
                                                    rate=256 * 1024), "slow, rate-limited"),
        DemoFile("/data/flaky.bin", Resource(data=rng.randbytes(24 * MiB), rate=8 * MiB,
                                             drop_after=9 * MiB), "drops mid-way, then resumes"),
        DemoFile("/data/nightly.tar.gz", Resource(versions=[v1, v2], change_after=1,
                                                  drop_after=3 * MiB, rate=6 * MiB),
                 "changes between requests: discarded and fetched again"),
        DemoFile("/data/missing.bin", Resource(status=404), "404: fails at once"),
        DemoFile("/mirror-a/dataset.parquet", Resource(data=twin, rate=6 * MiB), "identical twin"),
        DemoFile("/mirror-b/dataset-copy.parquet", Resource(data=twin, rate=6 * MiB),
                 "identical twin: stored once"),
        DemoFile("/data/report.pdf", Resource(
            data=rng.randbytes(300_000),
            content_disposition="attachment; filename*=UTF-8''Quarterly%20report.pdf"),
            "named by Content-Disposition"),
    ]


def start(home: Path | None = None) -> tuple[Origin, Path, Path]:
    """Start the origin and queue every demo file; returns (origin, home, downloads dir)."""
    root = Path(tempfile.mkdtemp(prefix="dltui-demo-")) if home is None else home
    home = root / "home"
    dest = root / "downloads"
    origin = Origin().start()
    files = demo_files()
    for f in files:
        origin.add(f.path, f.resource)
    with Ledger(home) as ledger:
        jobs.add(ledger, [jobs.JobSpec(origin.url(f.path), dest) for f in files], by="demo")
    return origin, home, dest


@contextmanager
def session(keep: Path | None = None) -> Iterator[tuple[Origin, Path, Path]]:
    """:func:`start`, then stop the origin; a demo in a temp dir (``keep`` None) takes its
    ~200 MB with it when it ends."""
    origin, home, dest = start(keep)
    try:
        yield origin, home, dest
    finally:
        origin.stop()
        if keep is None:
            shutil.rmtree(home.parent, ignore_errors=True)
