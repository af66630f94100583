"""`dltui` as a subprocess: the test settings, a home, nothing from the calling environment's
ledger unless a test names one, no terminal on stdin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.settings import TEST_ENV


def env_for(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `dltui` subprocess for ``home``."""
    full = {k: v for k, v in os.environ.items() if k != "DLTUI_LEDGER"}
    full.update({**TEST_ENV, "DLTUI_HOME": str(home), **(extra or {})})
    return full


def dltui(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
          stdin: str | None = None, cwd: Path | None = None, umask: int | None = None
          ) -> subprocess.CompletedProcess[str]:
    """Run ``dltui ARGS`` for ``home`` and wait; its output as text. ``stdin`` is what it
    reads (else nothing: no terminal to ask on), ``umask`` the one it starts with."""
    return subprocess.run(
        [sys.executable, "-m", "dltui", *args], env=env_for(home, env), capture_output=True,
        text=True, timeout=timeout, cwd=cwd,
        **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
        preexec_fn=None if umask is None else (lambda: os.umask(umask)))
