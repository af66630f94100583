"""Frozen ledgers and apps shared by the snapshot tests and `make screenshots`.

Everything that could vary between runs is pinned: timestamps (jobs, ops, events), the clock,
lease owners, the ledger path shown, the time zone, and no poll thread or workers run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dltui.disk import DiskUse, Held
from dltui.ledger import Ledger, flags, fleet, jobs, ops, segments
from dltui.ledger.ops import op_key
from dltui.model import plan_segments
from dltui.tui.app import DltuiApp

NOW = 1_795_300_000.0  # a fixed "now" for every scene
OTHER = "build-02:4242:777:dltui-worker-0"
SHOWN_PATH = "/srv/dltui/ledger.db"
MiB = 1 << 20

JOBS = [
    # (url, state, committed, total, decision, reason, extra)
    ("https://mirror.example.org/debian/debian-12.7.0-amd64-netinst.iso", "STREAMING",
     412 * MiB, 631 * MiB, "resume", "validators_match", {"lease": True, "attempts": 2}),
    ("https://releases.example.com/ubuntu-24.04-live-server-amd64.iso", "STREAMING",
     96 * MiB, 2600 * MiB, "fresh", "no_part", {"lease": True}),
    ("https://data.example.net/climate/era5-2023.nc", "PLANNED", 0, None, None, None, {}),
    ("https://data.example.net/climate/era5-2024.nc", "PAUSED", 18 * MiB, 740 * MiB,
     "fresh", "no_part", {}),
    ("https://cdn.example.com/models/weights-v3.safetensors", "FINALIZED", 1400 * MiB,
     1400 * MiB, "fresh", "no_part", {"sha": "9f2c" * 16}),
    ("https://cdn.example.com/models/weights-v3-copy.safetensors", "FINALIZED", 1400 * MiB,
     1400 * MiB, "cached", "not_modified", {"sha": "9f2c" * 16}),
    ("https://files.example.org/reports/q3.pdf", "FAILED", 0, None, "fresh", "no_part",
     {"error": "HTTP 404 Not Found from https://files.example.org/reports/q3.pdf"}),
    ("https://flaky.example.io/dumps/db-2026-11-21.sql.gz", "FAILED", 3 * MiB, 48 * MiB,
     "resume", "prefix_ok",
     {"error": "HTTP 503 Service Unavailable from https://flaky.example.io/dumps/"
               "db-2026-11-21.sql.gz (after 5 tries)", "attempts": 3}),
    ("https://mirror.example.org/archive/linux-6.12.tar.xz", "FINALIZING", 140 * MiB,
     140 * MiB, "discard", "validators_mismatch", {"lease": True}),
    ("https://static.example.com/tiny.json", "CANCELLED", 0, None, None, None, {}),
]


def build_ledger(home: Path, *, empty: bool = False) -> None:
    """A ledger whose every row and timestamp is fixed."""
    os.environ["TZ"] = "UTC"
    time.tzset()
    led = Ledger(home)
    if not empty:
        dest = Path("/srv/downloads")
        jobs.add(led, [jobs.JobSpec(j[0], dest) for j in JOBS])
        with led.write() as conn:
            for i, (url, state, committed, total, decision, reason, extra) in enumerate(JOBS, 1):
                name = url.rsplit("/", 1)[-1]
                conn.execute(
                    "UPDATE jobs SET state = ?, bytes_committed = ?, bytes_total = ?, "
                    "content_length = ?, decision = ?, decision_reason = ?, file_name = ?, "
                    "etag = ?, last_modified = ?, accept_ranges = 1, attempts = ?, error = ?, "
                    "sha256 = ?, final_path = ?, lease_owner = ?, lease_until = ?, "
                    "heartbeat_at = ?, prefix_hash = ?, created_at = ?, updated_at = ?, "
                    "control = ? WHERE id = ?",
                    (state, committed, total, total, decision, reason, name,
                     f'"{i:04x}-{name[:6]}"' if decision else None,
                     "Sat, 21 Nov 2026 04:00:00 GMT" if decision else None,
                     extra.get("attempts", 1 if decision else 0), extra.get("error"),
                     extra.get("sha"), f"/srv/downloads/{name}" if state == "FINALIZED" else None,
                     OTHER if extra.get("lease") else None,
                     NOW + 42 if extra.get("lease") else None,
                     NOW - 18 if extra.get("lease") else None,
                     "ab54" * 16 if committed >= 65536 else None,
                     NOW - 3600 + i, NOW - 60 + i,
                     "pause" if state == "PAUSED" else "cancel" if state == "CANCELLED" else "run",
                     i),
                )
        for kind, result in (("HEAD", {"status": 200}), ("STREAM", None)):
            key = op_key(kind, 1, attempt=2, **{"try": 1})
            ops.run_effect(led, key, lambda r=result: r, job_id=1, kind=kind)
        with led.write() as conn:
            conn.execute("UPDATE ops SET status = 'started', finished_at = NULL, result = NULL "
                         "WHERE kind = 'STREAM'")
            conn.execute("INSERT INTO events (ts, job_id, kind, data) VALUES (?, 1, 'retry', ?)",
                         (0, json.dumps({"attempt": 1, "delay": 0.8, "reason": "transport",
                                         "error": "connection reset by peer"})))
            conn.execute("INSERT INTO events (ts, job_id, kind, data) VALUES (?, 1, 'decision', "
                         "?)", (0, json.dumps({"mode": "resume", "reason": "validators_match",
                                               "offset": 412 * MiB})))
            # Job 1 downloads over four connections; its segments add up to its 412 MiB.
            plan = plan_segments(631 * MiB, 4, 20 * MiB)
            done = [plan[0].length, 120 * MiB, 80 * MiB]
            done.append(412 * MiB - sum(done))
            segments.save_in(conn, 1, [dataclasses.replace(seg, done=d, durable=d - d % (64 * MiB))
                                       for seg, d in zip(plan, done, strict=True)])
        flags.set_flag(led, "fsync", False, by="cli")
        # The fleet: build-02 holds the active jobs; build-03 went quiet minutes ago.
        fleet.beat(led, OTHER.rsplit(":", 1)[0], "build-02", 4)
        fleet.beat(led, "build-03:5151:888", "build-03", 2)
        with led.write() as conn:
            conn.execute("UPDATE processes SET started_at = ?, heartbeat_at = ? "
                         "WHERE host = 'build-02'", (NOW - 7200, NOW - 5))
            conn.execute("UPDATE processes SET started_at = ?, heartbeat_at = ? "
                         "WHERE host = 'build-03'", (NOW - 7200, NOW - 400))
    with led.write() as conn:
        rows = conn.execute("SELECT id FROM events ORDER BY id").fetchall()
        for n, row in enumerate(rows):
            conn.execute("UPDATE events SET ts = ? WHERE id = ?", (NOW - 300 + n * 7, row[0]))
        conn.execute("UPDATE ops SET started_at = ?, finished_at = CASE WHEN finished_at IS NULL "
                     "THEN NULL ELSE ? END", (NOW - 200, NOW - 199.85))
        conn.execute("UPDATE flags SET updated_at = ?", (NOW - 86400,))
    led.close()


#: The disks as snapshots see them: the home's filesystem and the downloads' own.
DISKS = (
    DiskUse("/", 41 << 30, 200 << 30, Held(parts=1229 << 20, store=0), 0, True),
    DiskUse("/srv", 12 << 30, 500 << 30, Held(), 3, False),
)


def make_app(home: Path) -> DltuiApp:
    """The app as snapshots see it: frozen data, no workers, a fixed clock, path and disks."""
    app = DltuiApp(home, workers=0, poll_interval=None, clock=lambda: NOW,
                   display_path=SHOWN_PATH, theme="dltui-dark", default_dir="/srv/downloads")
    app.disk_reader = lambda ledger: DISKS
    return app


@dataclass(frozen=True)
class Scene:
    """One picture: keys to press after start-up, and whether the ledger is empty."""

    name: str
    press: list[str] = field(default_factory=list)
    empty: bool = False
    screen: str = "Screen"  # the class of the screen on top once the keys are pressed


SCENES = [
    Scene("main", ["d"]),
    Scene("detail", []),
    Scene("flags", ["f"], screen="FlagsScreen"),
    Scene("help", ["question_mark"], screen="HelpScreen"),
    Scene("add", ["a", *"https://example.org/file.iso"], screen="AddScreen"),
    Scene("hosts", ["h"], screen="HostsScreen"),
    Scene("fleet", ["F"], screen="FleetScreen"),
    Scene("limits", ["h", "e"], screen="LimitScreen"),
    Scene("reconcile", ["R"], screen="ReconcileScreen"),
    Scene("workers", ["w"], screen="WorkersScreen"),
    Scene("cancel", ["x"], screen="ConfirmScreen"),
    Scene("filter", ["slash", *"era5"], screen="Screen"),
    Scene("empty", [], empty=True),
]
