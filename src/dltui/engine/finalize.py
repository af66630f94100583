"""Finalization: verify the part, promote it into the store, materialise it at the destination.

The two effects, ``promote`` (FINALIZE) and ``link`` / ``place_part`` (LINK), are idempotent:
run again after a crash they find their work done and report ``applied: False``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from dltui import names
from dltui.engine.headers import filename_from_url
from dltui.errors import IntegrityError
from dltui.model import FileIdentity, LinkMode, PartIdentity, Placed, Promoted
from dltui.store import Store, file_identity, fsync_dir, holds, moved_as_vetted, place, vet_part

MAX_NAME_TRIES = 10_000


def resolve_name(requested: str | None, disposition: str | None, url: str) -> str:
    """``--name``, else Content-Disposition, else the URL's last segment; always sanitised."""
    if requested:
        return names.sanitize(requested)
    for raw in (disposition, filename_from_url(url)):
        if raw:
            name = names.sanitize(raw, fallback="")
            if name:
                return name
    return names.FALLBACK_NAME


def verify(size: int, sha256: str, *, expected_size: int | None,
           expected_sha256: str | None) -> None:
    """Raise IntegrityError when the bytes are not what was promised."""
    if expected_size is not None and size != expected_size:
        raise IntegrityError(f"size mismatch: got {size} bytes, the server declared "
                             f"{expected_size}")
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise IntegrityError(f"SHA-256 mismatch: got {sha256}, expected {expected_sha256}")


def verify_checksum(path: Path, checksum: str | None) -> None:
    """Raise IntegrityError when the file's ``algo`` digest is not the one expected in
    ``checksum`` (``algo=hex``; md5, sha-1, sha-224, sha-384, sha-512). The file is read once
    more: those digests cannot be carried across a resume the way the SHA-256 is."""
    if not checksum:
        return
    algo, want = checksum.split("=", 1)
    digest = hashlib.new(algo.replace("-", ""))
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != want:
        raise IntegrityError(f"{algo} mismatch: got {digest.hexdigest()}, expected {want}")


def promote(store: Store, part: Path, sha256: str, *, fsync: bool,
            keep: FileIdentity | None = None, expect: PartIdentity | None = None) -> Promoted:
    """FINALIZE effect: move the verified part into the store (or drop it as a duplicate).

    ``applied`` says whether this run created the store object; a replay after a crash, or a
    part whose bytes were already stored, reports False. ``keep`` is the object's recorded
    identity: a stored object still exactly that is kept and the part dropped. ``expect`` is
    the part as its download left it: anything else at its name is refused (PartSwapped).
    """
    if not os.path.lexists(part):
        ident = store.identity(sha256)
        if ident is not None:
            return Promoted(str(store.object_path(sha256)), sha256, identity=ident)
        raise IntegrityError(f"part file {part} vanished before finalizing")
    created = store.promote(part, sha256, fsync=fsync, keep=keep, expect=expect)
    return Promoted(str(store.object_path(sha256)), sha256, applied=created,
                    deduped=not created, identity=store.identity(sha256))


def _candidates(dest_dir: Path, name: str) -> Iterator[Path]:
    yield dest_dir / name
    for n in range(1, MAX_NAME_TRIES):
        yield dest_dir / names.numbered(name, n)


def _inside(dest_dir: Path, path: Path) -> bool:
    return os.path.realpath(path.parent) == os.path.realpath(dest_dir)


def _place_first_free(source: Path, sha256: str, dest_dir: Path, name: str, *,
                      keep_source: bool, fsync: bool, mode: LinkMode = "auto") -> Placed:
    dest_dir.mkdir(parents=True, exist_ok=True)
    for candidate in _candidates(dest_dir, name):
        if not _inside(dest_dir, candidate):
            continue
        how = place(source, candidate, sha256, keep_source=keep_source, fsync=fsync, mode=mode)
        if how != "taken":
            return Placed(str(candidate), how, sha256, applied=how != "present",
                          dest_identity=file_identity(candidate), adopted=how == "present")
    raise IntegrityError(f"no free file name for {name!r} in {dest_dir}")


def link(store: Store, sha256: str, dest_dir: Path, name: str, *, fsync: bool,
         mode: LinkMode = "auto") -> Placed:
    """LINK effect with the store: reflink, hardlink or copy the object to the first free
    name (``mode``, see :func:`dltui.store.place`).

    The result carries the placed file's identity and the object's identity after the link
    (a hard link changes the object's ctime).
    """
    result = _place_first_free(store.object_path(sha256), sha256, dest_dir, name,
                               keep_source=True, fsync=fsync, mode=mode)
    if fsync:
        fsync_dir(dest_dir)
    return dataclasses.replace(result, identity=store.identity(sha256))


def place_part(part: Path, sha256: str, dest_dir: Path, name: str, *,
               fsync: bool, expect: PartIdentity | None = None) -> Placed:
    """LINK effect without the store (flag ``dedupe`` off): move the part itself into place
    (only the part ``expect`` describes, see :func:`dltui.store.vet_part`)."""
    if not os.path.lexists(part):
        for candidate in _candidates(dest_dir, name):
            if not os.path.lexists(candidate):
                break
            if holds(candidate, sha256):  # by content: a name may hold someone else's file
                # Moved into place by an interrupted earlier run, or someone's: nothing
                # proves which, so it is adopted (kept whatever happens to the job).
                return Placed(str(candidate), "present", sha256,
                              dest_identity=file_identity(candidate), adopted=True)
        raise IntegrityError(f"part file {part} vanished before it reached {dest_dir}")
    with vet_part(part, expect) as (_, vetted):
        placed = _place_first_free(part, sha256, dest_dir, name, keep_source=False,
                                   fsync=fsync)
        if placed.applied and placed.how == "hardlink":  # the part's own inode moved there
            moved_as_vetted(Path(placed.dest), vetted, part)
    return placed
