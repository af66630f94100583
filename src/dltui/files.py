"""The file effects the ledger's decisions call for, each behind the rule that guards it.

The ledger decides (the reconciler, an operator's cancel); this layer touches the files. Every
deletion here is listed in docs/ARCHITECTURE.md with its rule: parts are dltui's by where they
live; a finished file is removed only while it is still exactly the file dltui placed, and
never when the job adopted it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltui import paths
from dltui.model import FileIdentity, LinkMode
from dltui.store import Materialized, Store, file_identity, sweep_temps

__all__ = ["Proof", "delete_orphan_part", "delete_parts", "part_bytes", "placed_by_us",
           "remake", "remove_placed", "sweep_temps"]


def delete_parts(home: Path, job_id: int) -> None:
    """Delete a job's part file(s): ``<home>/parts/<job>.part*`` (a cancelled job's)."""
    for part in paths.parts_dir(home).glob(f"{job_id}.part*"):
        part.unlink(missing_ok=True)


def part_bytes(home: Path) -> dict[int, int]:
    """What each job's part files occupy on disk now (allocated bytes, by job id)."""
    out: dict[int, int] = {}
    try:
        entries = list(os.scandir(paths.parts_dir(home)))
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in entries:
        job_id = paths.part_job_id(entry.name)
        if job_id is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        out[job_id] = out.get(job_id, 0) + (st.st_blocks * 512 if st.st_blocks else 0)
    return out


def delete_orphan_part(home: Path, path: Path) -> bool:
    """Delete a part file the reconciler found without a running job; only a file named as
    a part, inside the parts directory, ever."""
    if path.parent != paths.parts_dir(home) or paths.part_job_id(path.name) is None:
        return False
    path.unlink(missing_ok=True)
    return True


@dataclass(frozen=True, slots=True)
class Proof:
    """What a finished job recorded of the file at its ``final_path``."""

    adopted: bool
    identity: FileIdentity | None  #: as stat said right after this job placed it
    legacy: tuple[int, int, int] | None  #: device, inode, mtime (finished before migration 15)
    sha256: str | None

    @classmethod
    def of(cls, row: Any) -> Proof:
        """From a job (a :class:`~dltui.model.Job` or a row with the ``final_*`` columns)."""
        get = row.__getitem__ if not hasattr(row, "final_ino") else \
            lambda name: getattr(row, name)
        dev, ino, mtime = get("final_dev"), get("final_ino"), get("final_mtime_ns")
        size, ctime = get("final_size"), get("final_ctime_ns")
        full = None not in (dev, ino, mtime, size, ctime)
        return cls(bool(get("adopted")),
                   FileIdentity(size, dev, ino, mtime, ctime) if full else None,
                   (dev, ino, mtime) if not full and ino is not None else None,
                   get("sha256"))

    @property
    def inode(self) -> tuple[int, int] | None:
        """The device and inode this job says it placed, if it recorded them."""
        if self.identity is not None:
            return self.identity.dev, self.identity.ino
        return None if self.legacy is None else self.legacy[:2]


def placed_by_us(dest: Path, proof: Proof, store: Store) -> bool:
    """True when ``dest`` is provably the file this job placed: never for an adopted file;
    else device, inode, size, mtime and ctime exactly as recorded right after placement
    (ctime moves on every link, unlink, chmod or rename of the inode, so an inode a later
    placement reused does not pass). Older jobs recorded device, inode and mtime (or
    nothing: then the store object's inode); callers also refuse an inode another job
    claims."""
    if proof.adopted:
        return False
    ident = file_identity(dest)  # None for a symlink, a directory, anything not a plain file
    if ident is None:
        return False
    if proof.identity is not None:
        return ident == proof.identity
    if proof.legacy is not None:
        return (ident.dev, ident.ino, ident.mtime_ns) == proof.legacy
    obj = store.identity(proof.sha256) if proof.sha256 else None
    return obj is not None and (obj.dev, obj.ino) == (ident.dev, ident.ino)


def remove_placed(dest: Path, placed: FileIdentity | None) -> bool:
    """Delete ``dest`` only if it is still exactly the file identified when it was proven
    dltui's (same inode, size, times); False, untouched, otherwise."""
    if placed is None or file_identity(dest) != placed:
        return False
    dest.unlink()
    return True


def remake(store: Store, sha256: str, dest: Path, mode: LinkMode) -> Materialized | None:
    """Re-make a finished file a reboot cost from its (verified) store object; None when
    someone put a file at ``dest`` meanwhile (theirs: never replaced) or the object is gone."""
    try:
        return store.materialize(sha256, dest, mode=mode)
    except (FileExistsError, FileNotFoundError):  # theirs now, or the object was collected
        return None
