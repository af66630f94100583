"""Serve files through the project's origin with added latency and a per-connection rate.

Run by bench/run.py in a process of its own (so the data it holds never counts against the
tools measured): ``wan_origin.py LATENCY RATE FILE...``; prints the port, then serves until
its stdin closes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dltui.origin import Origin, Resource  # noqa: E402


def main() -> None:
    latency, rate, *files = sys.argv[1:]
    with Origin() as origin:
        for rel in files:
            origin.add("/" + rel, Resource(data=(ROOT / "bench" / "data" / rel).read_bytes(),
                                           latency=float(latency), rate=int(rate)))
        print(origin.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
