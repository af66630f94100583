"""Runs the worker pool and SIGKILLs itself inside the small-file lane, at one chosen point.

Usage: python -m tests.worker.lane_crasher POINT  (DLTUI_HOME and the test settings in the env)

POINT names what the process dies right after: the third ``write_part`` or ``promote`` or
``link`` (the effect landed, its op is still ``started``), or inside the second
``finish_many_in`` (FINALIZE's results are being recorded: that transaction never commits).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from dltui import config
from dltui.engine import finalize, small
from dltui.ledger import Ledger, ops
from dltui.worker import WorkerPool

TARGETS: dict[str, tuple[Any, int]] = {
    "write_part": (small, 3),
    "promote": (finalize, 3),
    "link": (finalize, 3),
    "finish_many_in": (ops, 1),
}


def main() -> None:
    point = sys.argv[1]
    module, after = TARGETS[point]
    real = getattr(module, point)
    calls = 0

    def then_die(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if point == "finish_many_in" and calls > after:
            os.kill(os.getpid(), signal.SIGKILL)  # inside the open transaction
        result = real(*args, **kwargs)
        if point != "finish_many_in" and calls >= after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, point, then_die)
    ledger = Ledger(Path(os.environ["DLTUI_HOME"]))
    WorkerPool(ledger, config.load(None), workers=1).run_until_idle()


if __name__ == "__main__":
    main()
