"""`dltui` as a subprocess for the fleet tests: the test settings, a home, and no ledger from
the calling environment unless the test names one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_ENV


def dltui(home: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    """Run ``dltui ARGS`` for ``home``; its output as text."""
    full = {k: v for k, v in os.environ.items() if k != "DLTUI_LEDGER"}
    full.update({**TEST_ENV, "DLTUI_HOME": str(home), **(env or {})})
    return subprocess.run([sys.executable, "-m", "dltui", *args], env=full, capture_output=True,
                          text=True, timeout=120)
