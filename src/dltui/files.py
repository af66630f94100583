"""The file effects the ledger's decisions call for, each behind the rule that guards it.

The ledger decides (the reconciler, an operator's cancel); this layer touches the files. Every
deletion here is listed in docs/ARCHITECTURE.md with its rule: parts are dltui's by where they
live; a finished file is removed only while it is still exactly the file dltui placed.
"""

from __future__ import annotations

from pathlib import Path

from dltui import paths
from dltui.model import FileIdentity, LinkMode
from dltui.store import Materialized, Store, file_identity


def delete_parts(home: Path, job_id: int) -> None:
    """Delete a job's part file(s): ``<home>/parts/<job>.part*`` (a cancelled job's)."""
    for part in paths.parts_dir(home).glob(f"{job_id}.part*"):
        part.unlink(missing_ok=True)


def delete_orphan_part(home: Path, path: Path) -> bool:
    """Delete a part file the reconciler found without a running job; only a file named as
    a part, inside the parts directory, ever."""
    if path.parent != paths.parts_dir(home) or paths.part_job_id(path.name) is None:
        return False
    path.unlink(missing_ok=True)
    return True


def remove_placed(dest: Path, placed: FileIdentity | None) -> bool:
    """Delete ``dest`` only if it is still exactly the file identified when it was proven
    dltui's (same inode, size, times); False, untouched, otherwise."""
    if placed is None or file_identity(dest) != placed:
        return False
    dest.unlink()
    return True


def remake(store: Store, sha256: str, dest: Path, mode: LinkMode) -> Materialized | None:
    """Re-make a vanished finished file from its (verified) store object; None when someone
    put a file at ``dest`` meanwhile (theirs: never replaced)."""
    try:
        return store.materialize(sha256, dest, mode=mode)
    except FileExistsError:
        return None
