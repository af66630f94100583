"""The ledger decides; files.py and the store act. No file effect is written inside ledger/."""

from __future__ import annotations

import ast
from pathlib import Path

LEDGER = Path(__file__).resolve().parents[2] / "src" / "dltui" / "ledger"
# Methods that change files whatever they are called on (Path, Store) ...
EFFECTS = {"unlink", "rename", "symlink_to", "hardlink_to", "rmdir", "rmtree", "materialize",
           "promote", "quarantine"}
# ... and os functions whose names mean other things on other objects (str.replace).
OS_EFFECTS = {"replace", "remove", "link", "symlink", "truncate", "ftruncate"}
# The ledger's own ballast file, made and given up by the ledger itself.
ALLOWED = {("_db.py", "unlink")}


def test_no_file_effect_is_called_inside_the_ledger() -> None:
    found = []
    for path in sorted(LEDGER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            on_os = isinstance(node.func.value, ast.Name) and node.func.value.id == "os"
            if (name in EFFECTS or (on_os and name in OS_EFFECTS)) \
                    and (path.name, name) not in ALLOWED:
                found.append(f"{path.name}:{node.lineno} {name}()")
    assert found == []
