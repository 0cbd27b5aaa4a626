"""The store's writer thread: group commits, and changes kept through a failed commit.

`wr.store.Store` hands every write here. One thread owns the write connection:

* The write methods are plain functions called on the event loop; each returns an
  ``asyncio.Future`` resolved only after the transaction holding it committed. Writes
  submitted during one loop iteration are handed to the thread together at the end of it,
  and the thread puts everything waiting into ONE transaction (group commit): 10,000 writes
  cost one fsync. Writes apply in submission order.
* A failed commit (disk full, I/O error) rolls the batch back and fails each of its futures
  with `StorageUnavailable`, so no caller is told a write is stored when it is not. Adds are
  then forgotten (their caller queues nothing), but every other write records a change the
  manager has already made in memory, so it is kept and retried, ahead of newer writes, with
  the next batch or after ``RETRY_INTERVAL``: the db catches up by itself when space returns
  (issue 6). A write that fails on its own (a bug, not the disk) is dropped from the batch
  with its own error and the rest is retried without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wr import store_sql as sql
from wr.errors import StorageUnavailable, WrError
from wr.store_feed import AddAborted, AddFeed
from wr.store_sql import AddResult

logger = logging.getLogger("wr.store")

RETRY_INTERVAL = 1.0
"""Seconds between attempts to store kept writes after a failed commit (issue 6)."""


class Write:
    """One submitted write: a function run in the writer thread, and its future."""

    __slots__ = ("fn", "args", "future", "loop", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        self.loop = loop
        self.result: Any = None
        self.error: BaseException | None = None


def write_feed(conn: sqlite3.Connection, feed: AddFeed, rerun: bool) -> AddResult:
    """The one write that adds jobs: it syncs the disk, and is not kept after a failed
    commit (its caller is told, and queues nothing)."""
    return sql.write_add(conn, feed.parts(), rerun)


def is_storage_error(exc: BaseException) -> bool:
    """True for failures of the disk or db (which doom the batch), False for a bad write."""
    if isinstance(exc, (sqlite3.OperationalError, sqlite3.InternalError, OSError, MemoryError)):
        return True
    return type(exc) is sqlite3.DatabaseError  # corrupt, not a database


class Writer:
    """The write connection and the thread that owns it. Building one does no I/O;
    `start` hands it an open connection, `stop` commits what is pending and ends it."""

    def __init__(self, path: Path, connect: Callable[[], sqlite3.Connection],
                 committed: Callable[[], None]) -> None:
        self.path = path
        """The db file, for messages."""
        self._connect = connect
        """Opens a new write connection, after a failed rollback closed the last one."""
        self._committed = committed
        """Called in the thread after each successful commit (a backup may follow)."""
        self.commits = 0
        """Transactions committed (group commit keeps this small)."""
        self.failed_commits = 0
        """Transactions that failed for want of space or a working disk."""
        self.on_commit: Callable[[float], None] | None = None
        """See `wr.store.Store.on_commit`."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._accepting = False
        self._pending: dict[asyncio.AbstractEventLoop, list[Write]] = {}
        self._queue: deque[Write] = deque()
        self._stopping = False
        self._kept: list[Write] = []
        """Writes of failed commits that record changes already made in memory (writer
        thread only): retried ahead of newer writes until they commit."""
        self._failing_since: float | None = None
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._sync_full = True
        self._last_write: asyncio.Future[Any] | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self, conn: sqlite3.Connection) -> None:
        """Take the (open, migrated) write connection and start the thread."""
        self._conn = conn
        self._sync_full = True
        self._stopping = False
        self._thread = threading.Thread(target=self._write_loop, name="wr-store-write",
                                        daemon=True)
        with self._lock:
            self._accepting = True
        self._thread.start()

    def stop(self) -> None:
        """Refuse new writes, commit every pending one, and end the thread (blocks)."""
        with self._lock:
            self._accepting = False
            for ops in self._pending.values():
                self._queue.extend(ops)
            self._pending.clear()
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        """Close the write connection (after `stop`)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the event loop's side -------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Queue ``fn(conn, *args)`` for the writer; the future has its result once its
        transaction committed."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        op = Write(fn, args, future, loop)
        with self._lock:
            if not self._accepting:
                future.set_exception(StorageUnavailable(f"db {self.path} is not open"))
                return future
            pending = self._pending.get(loop)
            if pending is None:
                self._pending[loop] = [op]
                loop.call_soon(self._flush, loop)
            else:
                pending.append(op)
        self._last_write = future
        return future

    def barrier(self) -> asyncio.Future[None]:
        """An empty write: resolves (always with None) once every write submitted before it
        on this loop has settled, without a transaction of its own."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        last = self._last_write
        if last is None or last.done() or last.get_loop() is not loop:
            future.set_result(None)
        else:
            last.add_done_callback(lambda _: future.done() or future.set_result(None))
        return future

    async def after_writes(self) -> None:
        """Wait until every write submitted (on this loop) before now has been settled."""
        last = self._last_write
        if last is None or last.done():
            return
        if last.get_loop() is asyncio.get_running_loop():
            await asyncio.wait([last])

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """End of a loop iteration: hand its writes to the writer as one group."""
        with self._lock:
            ops = self._pending.pop(loop, None)
            if ops:
                self._queue.extend(ops)
                self._wake.notify()

    # -- the thread ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        last_try = False
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    if self._kept:  # retry them even if nothing new comes
                        self._wake.wait(RETRY_INTERVAL)
                        break
                    self._wake.wait()
                if not self._queue and not self._kept:
                    return
                if self._stopping and not self._queue:
                    if last_try:
                        logger.error("closing with %d changes not stored: %s",
                                     len(self._kept), self._kept[0].error)
                        return
                    last_try = True
                batch = self._kept + list(self._queue)
                self._kept = []
                self._queue.clear()
            try:
                self._commit(batch)
            except BaseException as exc:  # never let the writer die with futures unresolved
                logger.exception("store writer failed")
                for op in batch:
                    if op.error is None:
                        op.error = WrError(f"store writer failed: {exc!r}")
            _settle(batch)

    def _commit(self, batch: list[Write]) -> None:
        """Apply ``batch`` in one transaction, retrying without any write that fails on its
        own; on a storage failure every remaining write gets `StorageUnavailable`."""
        todo = batch
        began = time.perf_counter()
        while todo:
            current: Write | None = None
            try:
                conn = self._write_conn()
                self._set_sync(conn, any(op.fn is write_feed for op in todo))
                conn.execute("BEGIN IMMEDIATE")
                for op in todo:
                    current = op
                    op.result = op.fn(conn, *op.args)
                current = None
                conn.execute("COMMIT")
            except Exception as exc:
                self._rollback()
                if current is not None and not is_storage_error(exc):
                    _drop(current, exc)
                    todo = [op for op in todo if op is not current]
                    continue
                self._failed(todo, exc)
                return
            self._succeeded(todo, time.perf_counter() - began)
            return

    def _failed(self, todo: list[Write], exc: Exception) -> None:
        """A storage failure: fail every write of the batch, keep those that record changes
        already made in memory."""
        self._kept = [op for op in todo if op.fn is not write_feed]
        self.failed_commits += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            logger.error("db commit of %d writes failed: %s; retrying the %d that "
                         "record changes already made", len(todo), exc, len(self._kept))
        for op in todo:
            op.error = StorageUnavailable(f"could not write to db file {self.path}: {exc}")
            op.error.__cause__ = exc

    def _succeeded(self, todo: list[Write], took: float) -> None:
        if self._failing_since is not None:
            logger.warning("db commits work again, after failing for %.1f s; stored %d "
                           "kept changes", time.monotonic() - self._failing_since,
                           sum(op.error is not None and op.fn is not sql.write_nothing
                               for op in todo))
            self._failing_since = None
        self.commits += 1
        if self.on_commit is not None:
            with contextlib.suppress(Exception):  # a figure never fails a commit
                self.on_commit(took)
        self._committed()

    def _set_sync(self, conn: sqlite3.Connection, full: bool) -> None:
        """Sync the disk on commits that add jobs (a user was promised them); commit state
        changes in WAL's NORMAL mode, which survives any crash of the manager process (the
        write reached the OS) but not a power cut — then the last changes of running jobs
        are redone. The next FULL commit syncs everything before it too."""
        if full != self._sync_full:
            conn.execute("PRAGMA synchronous=FULL" if full else "PRAGMA synchronous=NORMAL")
            self._sync_full = full

    def _write_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
            self._sync_full = True
        return self._conn

    def _rollback(self) -> None:
        conn = self._conn
        if conn is None or not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("rollback failed; reconnecting for the next batch")
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._conn = None


def _drop(op: Write, exc: Exception) -> None:
    """A write that failed on its own: it gets its own error; the batch goes on without it."""
    if not isinstance(exc, AddAborted):  # a bad request, not a fault
        logger.error("dropped a write that failed on its own: %r", exc)
    if isinstance(exc, WrError):
        op.error = exc
    else:
        what = op.fn.__name__.removeprefix("write_")
        op.error = WrError(f"could not store {what}: {exc!r}")
        op.error.__cause__ = exc


def _settle(batch: list[Write]) -> None:
    """Hand each write's outcome to the loop that waits for it."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Write]] = {}
    for op in batch:
        by_loop.setdefault(op.loop, []).append(op)
    for loop, ops in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(_resolve, ops)


def _resolve(ops: list[Write]) -> None:
    for op in ops:
        if op.future.done():  # cancelled, or a kept write whose caller heard already
            continue
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)
