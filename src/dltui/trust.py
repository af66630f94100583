"""A home dltui trusts: its directories are private to the user who runs it.

Parts are written, hashed and then promoted into the store by name. If anyone else could
write to the home, ``parts`` or ``store`` (another user's directory, a group- or
world-accessible mode, a symlink to a directory of theirs), they could swap a part between
its last byte and its promotion, and dltui would record the SHA-256 of the bytes it received
over a file holding theirs. So each of the three must be a real directory (not a symlink),
owned by the effective user, with no access for group or others: like ``~/.ssh``, a home that
is not is refused with one line naming it and the fix, before anything is read or written.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from dltui.errors import UnsafeHome


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_private_dir(path: Path, *, missing_ok: bool = False) -> None:
    """Raise UnsafeHome unless ``path`` is a directory of ours that only we can use (or,
    with ``missing_ok``, does not exist yet)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return
        raise UnsafeHome(path, "does not exist", "check the path") from None
    except OSError as exc:
        raise UnsafeHome(path, f"cannot be examined ({exc.strerror})",
                         "check the path and its parents' permissions") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeHome(path, f"is a symlink (to {os.readlink(path)})",
                         f"dltui keeps its files only in real directories: point --home / "
                         f"DLTUI_HOME at the target itself, or replace {path} with a directory")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeHome(path, "is not a directory",
                         "move it aside, or point --home / DLTUI_HOME elsewhere")
    me = os.geteuid()
    if st.st_uid != me:
        raise UnsafeHome(path, f"belongs to {_user(st.st_uid)}, not to {_user(me)}",
                         "use a dltui home of your own (--home / DLTUI_HOME); another user "
                         "could swap files in it")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UnsafeHome(path, f"is open to other users (mode {mode:04o})",
                         f"make it private: chmod 700 {path}")


def check_home(home: Path, *subdirs: Path) -> None:
    """Check the home and each of ``subdirs`` (its ``parts``, its ``store``)."""
    for path in (home, *subdirs):
        check_private_dir(path)
