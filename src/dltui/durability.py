"""What survives which crash: boot identity and early writeback.

A byte handed to ``write(2)`` lives in the kernel's page cache: it survives the death of the
process (SIGKILL, OOM) but not of the host. So a checkpoint needs ``fsync`` only to survive a
host crash, and dltui records with every checkpoint the boot it was written in together with the
last offset that *was* fsynced. After a reboot a part is trusted only up to that offset.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import cast

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages; do not wait for it


@functools.cache
def boot_id() -> str | None:
    """This host's boot identity, or None where the platform does not expose one."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not hasattr(os, "posix_fallocate"):  # not Linux-like: nothing to call
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], fn)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now, without waiting.

    A later ``fsync`` then finds most pages already clean instead of flushing the whole file at
    once; best effort, a no-op where ``sync_file_range(2)`` is missing.
    """
    fn = _sync_file_range()
    if fn is not None and length > 0:
        fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
