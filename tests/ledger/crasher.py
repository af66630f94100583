"""Runs one effect through run_effect and dies (os._exit) inside it, after the effect landed.

Usage: python -m tests.ledger.crasher HOME JOB_ID KEY EFFECT_FILE
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dltui.ledger import Ledger, ops


def main() -> None:
    home, job_id, key, effect = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ledger = Ledger(home)

    def effect_then_crash() -> None:
        with open(effect, "a") as fh:
            fh.write("ran\n")
        os._exit(9)  # the process dies between the effect and the 'done' record

    ops.run_effect(ledger, key, effect_then_crash, job_id=job_id, kind="LINK")


if __name__ == "__main__":
    main()
