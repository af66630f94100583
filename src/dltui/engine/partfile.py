"""The part file of a single-connection download: appended in order, hashed as it grows."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import threading
from concurrent.futures import Future
from pathlib import Path

from dltui.durability import start_writeback
from dltui.engine.resume import PREFIX_BYTES
from dltui.errors import ResumeConflict

_READ_CHUNK = 1 << 20
#: Bytes written between two requests to start writeback (when fsync is on).
_WRITEBACK_EVERY = 8 << 20


class _Item:
    """Bytes on their way through the pipeline; ``buf`` goes back to the pool when done."""

    __slots__ = ("buf", "view", "written")

    def __init__(self, view: memoryview, buf: bytearray | None) -> None:
        self.view = view
        self.buf = buf
        self.written = threading.Event()


class PartFile:
    """A part file opened for appending, with the SHA-256 of everything in it.

    With ``background`` the bytes go through two threads: one writes them, one hashes them, in
    order, while the caller keeps receiving. ``os.write`` and ``hashlib`` both release the GIL,
    so receiving, writing and hashing overlap. The receiver fills pooled buffers
    (:meth:`buffer` / :meth:`commit`) so a 1 GiB body allocates a handful of megabytes, not a
    thousand objects. ``size`` counts accepted bytes; :meth:`flush` waits for all of them.
    """

    _WINDOW = 64  # unpooled chunks in flight before write() waits: bounds memory
    _POOL = 8

    def __init__(self, path: Path, offset: int, *, background: bool = False,
                 writeback: bool = False, buffer_size: int = 1 << 20) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Never through a symlink planted at the part's name.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._writeback = writeback
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        try:
            if os.fstat(self.fd).st_size < offset:
                raise ResumeConflict("part_missing",
                                     f"part {path} is shorter than the {offset} committed bytes")
            # A preallocated or half-written tail means nothing: only committed bytes count.
            os.ftruncate(self.fd, offset)
            self.hasher = hashlib.sha256()
            self.prefix = hashlib.sha256()
            self.size = 0
            self._hashed = 0
            self._written = offset
            self._kicked = offset
            self._seed(offset)
        except BaseException:
            os.close(self.fd)
            raise
        self._buffer_size = buffer_size
        if background:
            self.go_background()

    def go_background(self) -> None:
        """Start the writer and hasher threads (once); the bytes so far are already written."""
        if self._threads:
            return
        self._wq: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._hq: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._slots = threading.Semaphore(self._WINDOW)
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(self._POOL):
            self._free.put(bytearray(self._buffer_size))
        for target, name in ((self._write_loop, "dltui-write"), (self._hash_loop, "dltui-hash")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    # -- the two pipeline threads -----------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._wq.get()
            if item is None:
                return
            if isinstance(item, tuple):  # a mark: (future, fsync)
                future, sync = item
                try:
                    if self._error is not None:
                        raise self._error
                    if sync:
                        os.fsync(self.fd)
                    future.set_result(None)
                except BaseException as exc:
                    future.set_exception(exc)
                continue
            assert isinstance(item, _Item)
            try:
                if self._error is None:
                    self._write_all(item.view)
            except BaseException as exc:  # reported to the receiver at its next call
                self._error = exc
            finally:
                item.written.set()

    def _hash_loop(self) -> None:
        while True:
            item = self._hq.get()
            if item is None:
                return
            if isinstance(item, Future):
                item.set_result(None)
                continue
            assert isinstance(item, _Item)
            self._account(item.view)
            item.written.wait()
            item.view.release()
            if item.buf is not None:
                self._free.put(item.buf)
            else:
                self._slots.release()

    def _write_all(self, view: memoryview) -> None:
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self._written += n
        if self._writeback and self._written - self._kicked >= _WRITEBACK_EVERY:
            start_writeback(self.fd, self._kicked, self._written - self._kicked)
            self._kicked = self._written

    # -- hashing ----------------------------------------------------------------------------
    def _seed(self, offset: int) -> None:
        os.lseek(self.fd, 0, os.SEEK_SET)
        while self._hashed < offset:
            data = os.read(self.fd, min(_READ_CHUNK, offset - self._hashed))
            if not data:
                raise ResumeConflict("part_missing", f"part {self.path} ended while re-reading")
            self._account(data)
        self.size = self._hashed

    def _account(self, data: bytes | memoryview) -> None:
        self.hasher.update(data)
        if self._hashed < PREFIX_BYTES:
            self.prefix.update(data[: PREFIX_BYTES - self._hashed])
        self._hashed += len(data)

    @property
    def background(self) -> bool:
        """True when writes and hashing run on their own threads."""
        return bool(self._threads)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    # -- accepting bytes --------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Append bytes and fold them into the hashes (on the pipeline, if any)."""
        if not self._threads:
            self._write_all(memoryview(data))
            self._account(data)
            self.size = self._hashed
            return
        self._check()
        self._slots.acquire()
        self._submit(_Item(memoryview(data), None))
        self.size += len(data)

    def buffer(self) -> bytearray:
        """A pooled buffer to receive into; hand it back with :meth:`commit`."""
        self._check()
        return self._free.get()

    def commit(self, buf: bytearray, n: int) -> None:
        """Append the first ``n`` bytes of a buffer from :meth:`buffer` (it is reused later)."""
        if n == 0:
            self._free.put(buf)
            return
        self._submit(_Item(memoryview(buf)[:n], buf))
        self.size += n

    def _submit(self, item: _Item) -> None:
        self._wq.put(item)
        self._hq.put(item)

    def flush(self) -> None:
        """Wait until every accepted byte is written and hashed; re-raise a write error."""
        if not self._threads:
            return
        written: Future[None] = Future()
        hashed: Future[None] = Future()
        self._wq.put((written, False))
        self._hq.put(hashed)
        hashed.result()
        written.result()

    def sync_later(self, *, durable: bool = True) -> Future[None]:
        """A future that completes once the bytes accepted so far are written (and fsynced when
        ``durable``); the receiver never waits for the disk."""
        if not self._threads:
            self.flush()
            future: Future[None] = Future()
            try:
                if durable:
                    os.fsync(self.fd)
                future.set_result(None)
            except OSError as exc:
                future.set_exception(exc)
            return future
        future = Future()
        self._wq.put((future, durable))
        return future

    def sync(self) -> None:
        """fsync the part (after every accepted byte is written)."""
        self.flush()
        os.fsync(self.fd)

    # -- digests ----------------------------------------------------------------------------
    @property
    def prefix_hash(self) -> str | None:
        """SHA-256 of the first 64 KiB, once that many bytes are in (else None)."""
        self.flush()
        return self.prefix.hexdigest() if self._hashed >= PREFIX_BYTES else None

    def prefix_hash_soon(self) -> str | None:
        """Like :attr:`prefix_hash`, but waits for the pipeline only while the prefix is
        unfinished."""
        if self._hashed >= PREFIX_BYTES:  # the prefix digest never changes after this point
            return self.prefix.hexdigest()
        return self.prefix_hash if self.size >= PREFIX_BYTES else None

    @property
    def sha256(self) -> str:
        """SHA-256 of everything written."""
        self.flush()
        return self.hasher.hexdigest()

    # -- whole-file operations --------------------------------------------------------------
    def reset(self) -> None:
        """Drop every byte: the part starts over."""
        self.flush()
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.hasher = hashlib.sha256()
        self.prefix = hashlib.sha256()
        self.size = self._hashed = self._written = self._kicked = 0

    def preallocate(self, total: int) -> None:
        """Reserve disk space for the whole object (best effort)."""
        if total <= self.size or not hasattr(os, "posix_fallocate"):
            return
        self.flush()
        try:
            os.posix_fallocate(self.fd, self.size, total - self.size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise

    def trim(self) -> None:
        """Cut preallocated space beyond the written bytes."""
        self.flush()
        if os.fstat(self.fd).st_size != self.size:
            os.ftruncate(self.fd, self.size)

    def close(self) -> None:
        """Stop the pipeline and close the descriptor."""
        try:
            with contextlib.suppress(Exception):  # a write error was raised to the caller already
                self.flush()
        finally:
            for q in (getattr(self, "_wq", None), getattr(self, "_hq", None)):
                if q is not None:
                    q.put(None)
            for thread in self._threads:
                thread.join()
            os.close(self.fd)
