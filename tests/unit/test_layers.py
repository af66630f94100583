"""The layer rules of docs/ARCHITECTURE.md, checked by importing modules in a fresh interpreter."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import dltui

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(dltui.__path__, prefix="dltui.")
    if m.name != "dltui.__main__"
)
STDLIB_ONLY = {"dltui.model", "dltui.errors", "dltui.urls", "dltui.names", "dltui.store",
               "dltui.config", "dltui.origin", "dltui.units"}
THIRD_PARTY = ("textual", "httpx", "sqlite_utils", "tenacity", "pyrate_limiter", "rich")


def _imported(module: str) -> set[str]:
    code = (
        "import importlib, json, sys;"
        f"importlib.import_module({module!r});"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


def _loaded(mods: set[str], top: str) -> bool:
    return any(m == top or m.startswith(top + ".") for m in mods)


def test_modules_found() -> None:
    assert {"dltui.ledger.jobs", "dltui.cli", "dltui.model"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_layer_rules(module: str) -> None:
    mods = _imported(module)
    layer = module.split(".")[1] if module.count(".") >= 1 else ""
    if layer in ("engine", "ledger") or module in STDLIB_ONLY:
        assert not _loaded(mods, "textual"), f"{module} pulls in textual"
        assert not _loaded(mods, "dltui.tui"), f"{module} pulls in the TUI"
    if layer in ("ledger", "tui") or module in STDLIB_ONLY:
        assert not _loaded(mods, "httpx"), f"{module} pulls in httpx"
    if layer == "engine":
        assert not _loaded(mods, "dltui.ledger"), f"{module} pulls in the ledger"
        assert not _loaded(mods, "sqlite_utils"), f"{module} pulls in sqlite_utils"
    if module in STDLIB_ONLY:
        for top in THIRD_PARTY:
            assert not _loaded(mods, top), f"{module} must be stdlib only, imports {top}"


def test_the_tui_never_imports_sqlite() -> None:
    """The TUI reaches the ledger only through its API (on worker threads), and SQLite
    failures reach it as LedgerErrors: no TUI module imports sqlite3 or sqlite_utils."""
    import ast
    from pathlib import Path

    tui = Path(dltui.__file__).parent / "tui"
    offenders = []
    for path in sorted(tui.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in ("sqlite3", "sqlite_utils")]
    assert offenders == []
