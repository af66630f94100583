"""Whether a lease's holder still exists: owner ids and the local process table.

An owner id is ``host:pid:process-start:thread``. A lease is live until ``lease_until`` unless its
owner is a process on this host that is gone (or whose pid was reused: the start time differs),
so a restart after a crash or SIGKILL resumes at once instead of waiting out the TTL. A lease
of another host is judged by its TTL alone: this host's process table says nothing about it.
Pure functions of the clock and the process table: the ledger modules that read leases share
them.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import cache

from dltui.ledger.clock import now

#: This host's name in a fleet (setting ``host_name``), when not the machine's own.
HOST_NAME_ENV = "DLTUI_HOST_NAME"


@cache
def _machine_name() -> str:
    return socket.gethostname()


def hostname() -> str:
    """This host's name as it appears in owner ids: ``$DLTUI_HOST_NAME`` (the ``host_name``
    setting), else the machine's hostname."""
    name = os.environ.get(HOST_NAME_ENV, "").strip() or _machine_name()
    return name.replace(":", "_")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when it is gone.

    Off Linux there is no /proc; any live pid then reports "0", which still tells a dead owner
    from a live one, only not a reused pid.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except FileNotFoundError:
        return None
    except OSError:
        stat = ""
    if stat:
        # Field 22; the command name (field 2) may contain spaces, so split after its ')'.
        return stat.rsplit(")", 1)[1].split()[19]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "0"


def owner_id(thread: str | None = None) -> str:
    """This thread's owner id."""
    pid = os.getpid()
    name = thread if thread is not None else threading.current_thread().name
    return f"{hostname()}:{pid}:{process_start_time(pid) or '0'}:{name}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` is a process on this host that no longer runs."""
    if not owner:
        return True
    parts = owner.split(":", 3)
    if len(parts) != 4 or parts[0] != hostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    started = process_start_time(pid)
    return started is None or (parts[2] != "0" and started != parts[2])


def lease_is_live(
    owner: str | None,
    lease_until: float | None,
    at: float | None = None,
    dead: dict[str, bool] | None = None,
) -> bool:
    """True while the lease has an owner, has not expired, and its local owner still runs.

    ``dead`` caches owner liveness across the rows of one scan: many leases share few owners.
    """
    if not owner or lease_until is None:
        return False
    if lease_until < (now() if at is None else at):
        return False
    if dead is None:
        return not owner_is_dead(owner)
    if owner not in dead:
        dead[owner] = owner_is_dead(owner)
    return not dead[owner]
