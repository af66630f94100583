"""Ledger reads and writes for the TUI, off its UI thread.

A write waits for SQLite's lock up to the busy timeout (30 s); on the UI thread that would
freeze the screen whenever another process holds the ledger. Here writes go, in the order they
were asked for, to one writer thread, and reads to threads of their own; each result comes back
to the UI thread as a callback, and a failure as a notice. Reads asked again and again (the
detail of the job under a moving cursor) go to one thread of their kind that only ever runs the
latest: a superseded read is dropped before it starts.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App

from dltui.errors import DltuiError
from dltui.ledger import Ledger, ledger_errors

T = TypeVar("T")
_Write = tuple[Callable[[Ledger], Any], Callable[[Any], None] | None]


class LedgerRunner:
    """Runs ledger calls for one app: writes in order on one thread, reads in parallel."""

    def __init__(self, app: App[Any], home: Path,
                 on_error: Callable[[str], None]) -> None:
        self._app = app
        # A connection per thread (on PostgreSQL, a handle on the process's pool).
        self._ledger = Ledger(home, migrate=False)
        self._on_error = on_error
        self._reads: set[threading.Thread] = set()
        self._reads_lock = threading.Lock()
        self._closing = False
        self._writes: queue.Queue[_Write | None] = queue.Queue()  # None: stop
        self._writer = threading.Thread(target=self._write_loop, name="dltui-tui-writer",
                                        daemon=True)
        self._writer.start()
        self._latest: dict[str, _Latest] = {}

    def write(self, fn: Callable[[Ledger], T],
              done: Callable[[T], None] | None = None) -> None:
        """Queue ``fn(ledger)`` behind earlier writes; ``done(result)`` runs on the UI thread."""
        self._writes.put((fn, done))

    def read(self, fn: Callable[[Ledger], T], done: Callable[[T], None]) -> None:
        """Run ``fn(ledger)`` on a thread of its own; ``done(result)`` runs on the UI thread."""
        with self._reads_lock:
            if self._closing:
                return  # the app is leaving: nobody to show the result to
            reader = threading.Thread(target=self._read, args=(fn, done), name="dltui-tui-read",
                                      daemon=True)
            self._reads.add(reader)
        reader.start()

    def read_latest(self, kind: str, fn: Callable[[Ledger], T],
                    done: Callable[[T], None]) -> None:
        """Like :meth:`read`, on the one thread of ``kind``, which runs only the latest read
        asked of it: one asked while another waits replaces it."""
        with self._reads_lock:
            if self._closing:
                return
            latest = self._latest.get(kind)
            if latest is None:
                latest = self._latest[kind] = _Latest(self, kind)
        latest.submit(fn, done)

    def _read(self, fn: Callable[[Ledger], T], done: Callable[[T], None]) -> None:
        try:
            self._call(fn, done)
        finally:
            # Each read has a thread, so a connection, of its own: closed with the thread, or
            # every cursor move would leave one open.
            self._ledger.release()
            with self._reads_lock:
                self._reads.discard(threading.current_thread())

    def close(self, timeout: float = 5.0) -> None:
        """Apply the writes already queued and let running reads end (waiting at most
        ``timeout``), then stop. Closing a connection under a running query would crash."""
        with self._reads_lock:
            self._closing = True
            reads = list(self._reads)
            latest = list(self._latest.values())
        self._writes.put(None)
        for one in latest:
            one.stop()
        deadline = time.monotonic() + timeout
        self._writer.join(timeout)
        for reader in [*reads, *(one.thread for one in latest)]:
            reader.join(max(0.0, deadline - time.monotonic()))
        self._ledger.close()

    def _write_loop(self) -> None:
        while True:
            item = self._writes.get()
            if item is None:
                return
            self._call(*item)

    def _call(self, fn: Callable[[Ledger], T], done: Callable[[T], None] | None) -> None:
        try:
            with ledger_errors(self._ledger.path):
                result = fn(self._ledger)
        except DltuiError as exc:
            self._back(self._on_error, str(exc))
        else:
            if done is not None:
                self._back(done, result)

    def _back(self, fn: Callable[[Any], None], value: Any) -> None:
        if not self._app.is_running:
            return  # the app has exited: nobody to tell
        with contextlib.suppress(RuntimeError):  # it exited just now
            self._app.call_from_thread(fn, value)


class _Latest:
    """One thread that runs the latest read submitted to it (see ``read_latest``)."""

    def __init__(self, runner: LedgerRunner, kind: str) -> None:
        self._runner = runner
        self._wake = threading.Condition()
        self._next: _Write | None = None
        self._stopped = False
        self.thread = threading.Thread(target=self._loop, name=f"dltui-tui-{kind}",
                                       daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[[Ledger], Any], done: Callable[[Any], None]) -> None:
        with self._wake:
            self._next = (fn, done)  # a read still waiting is superseded
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _loop(self) -> None:
        try:
            while True:
                with self._wake:
                    while self._next is None and not self._stopped:
                        self._wake.wait()
                    if self._stopped:
                        return
                    work, self._next = self._next, None
                if work is not None:
                    self._runner._call(*work)
        finally:
            self._runner._ledger.release()  # this thread's connection
