"""Bandwidth limits: the rate achieved against the rate set, dltui beside curl and aria2c.

`make bench` runs it after the throughput cases. Each tool downloads a file of about eight
seconds' worth at the set rate from the loopback nginx of `bench/run.py`, as a user types it
(dltui: `DLTUI_MAX_BANDWIDTH`, then `add` and `run --until-idle`; curl `--limit-rate`; aria2c
`--max-overall-download-limit`). The achieved rate is the file's size over the timed command,
start-up included, so a ratio a little under 1.00 is the cost of starting.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import DATA, DLTUI, RESULTS, Nginx, _write_random, ensure_tools  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
SECONDS = 8
#: (label, bytes/s, connections per file)
CASES = [("256K/s", 256 * KiB, 1), ("2M/s", 2 * MiB, 1), ("20M/s", 20 * MiB, 1),
         ("50M/s", 50 * MiB, 1), ("20M/s, 8 connections", 20 * MiB, 8)]


def _commands(tool: str, url: str, out: Path, work: Path, rate: int, conns: int
              ) -> tuple[list[list[str]], dict[str, str] | None, list[str]]:
    if tool == "curl":
        return [], None, ["curl", "-sS", "--fail", "--limit-rate", str(rate), "-o",
                          str(out / "f.bin"), url]
    if tool == "aria2c":
        return [], None, ["aria2c", "-q", "-d", str(out), "-o", "f.bin", "-x", str(conns),
                          "-s", str(conns), "--max-overall-download-limit", str(rate),
                          "--allow-overwrite=true", url]
    env = {**os.environ, "DLTUI_HOME": str(work / "home"), "DLTUI_TRUST_ENV": "0",
           "DLTUI_MAX_BANDWIDTH": str(rate), "DLTUI_CONNECTIONS_PER_FILE": str(conns),
           "DLTUI_MIN_SEGMENT_SIZE": str(4 * MiB)}
    return ([[*DLTUI, "add", url, "--dir", str(out), "--name", "f.bin"]], env,
            [*DLTUI, "run", "--until-idle"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tools", default="dltui,curl,aria2c")
    args = parser.parse_args()
    ensure_tools()
    DATA.mkdir(parents=True, exist_ok=True)
    for _label, rate, _ in CASES:
        _write_random(DATA / f"limit-{rate}.bin", rate * SECONDS, rate)
    rows = ["| limit | tool | achieved | achieved / set |", "| --- | --- | ---: | ---: |"]
    with tempfile.TemporaryDirectory(prefix="dltui-limits-") as tmp:
        nginx = Nginx(Path(tmp))
        try:
            for label, rate, conns in CASES:
                size = (DATA / f"limit-{rate}.bin").stat().st_size
                for tool in args.tools.split(","):
                    if tool == "curl" and conns > 1:
                        continue  # curl has no segmented downloads
                    work = Path(tmp) / tool
                    out = work / "out"
                    out.mkdir(parents=True)
                    setup, env, cmd = _commands(tool, nginx.url(f"limit-{rate}.bin"), out,
                                                work, rate, conns)
                    for step in setup:
                        subprocess.run(step, env=env, check=True, stdout=subprocess.DEVNULL)
                    t0 = time.perf_counter()
                    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                    achieved = size / (time.perf_counter() - t0)
                    if (out / "f.bin").stat().st_size != size:
                        raise RuntimeError(f"{tool}: {out / 'f.bin'} is incomplete")
                    shutil.rmtree(work)
                    rows.append(f"| {label} | {tool} | {achieved / MiB:,.2f} MiB/s | "
                                f"{achieved / rate:.2f} |")
                    print(rows[-1], file=sys.stderr)
        finally:
            nginx.stop()
    text = "\n".join(rows)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "limits-latest.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
