"""SQLite persistence: live jobs, history, std streams, limits and learned resource usage.

The manager keeps incomplete jobs in memory and must never lose one, so every add and every
state change a client is told about is committed here first ("durable before acknowledged").
Completed jobs leave memory for the ``complete`` table ("history lives on disk").

Tables::

    meta(name, value)               schema_version; counters (bsub_ids: the last LSF job id)
    live(key, data)                 every incomplete job, for start-up recovery
    complete(key, rep_grp, ..., data)  permanent history; a rerun overwrites its record
    rep_grp_keys(rep_grp, key)      other rep groups a job was added under (reruns, repeats
                                    in a POST, wr mod); its own is complete.rep_grp
    rep_grps(rep_grp)               every rep group ever used (substring searches)
    dep_waiters(dep_grp, key)       jobs that depend on a dep group (live dependencies)
    std(key, stdout, stderr)        output of a job's last failed run
    limits(name, lim)               limit group counts
    samples(req_grp, kind, value)   learning samples; kind is ram (MB), disk (MB) or time (s)

Records are ``job.record_bytes()``. The queries are in `wr.store_sql`; checking and
restoring db files is in `wr.store_files`. Lookup rows are never deleted when their job
goes: readers skip keys with no record, and ``dep_waiters`` rows are checked against the
dependant's stored ``deps`` before it is resurrected, so a stale row costs nothing.

Theory of operation:

* One writer thread owns the write connection. The write methods are plain functions called
  on the event loop; each returns an ``asyncio.Future`` resolved only after the transaction
  holding it committed. Writes submitted during one loop iteration are handed to the writer
  together at the end of it, and the writer puts everything waiting into ONE transaction
  (group commit): 10,000 writes cost one fsync. Writes apply in submission order.
* A failed commit (disk full, I/O error) rolls the batch back and fails each of its futures
  with `StorageUnavailable`, so no caller is told a write is stored when it is not. Adds are
  then forgotten (their caller queues nothing), but every other write records a change the
  manager has already made in memory, so it is kept and retried, ahead of newer writes, with
  the next batch or after ``RETRY_INTERVAL``: the db catches up by itself when space returns
  (issue 6), and `durable` tells when it has. A write that fails on its own (a bug, not the
  disk) is dropped from the batch with its own error and the rest is retried without it.
* Reads run in a small thread pool on their own connections (WAL readers never block the
  writer), each in one read transaction, after every write submitted before them.
* The event loop never runs SQLite, except in `Store.open` and `Store.close`.
* Backups (when ``backup_path`` is set) follow writes, at most one at a time and spaced by
  max(``backup_interval``, the previous backup's duration). A backup pins a read snapshot
  and copies it with the backup API in steps, so it neither restarts nor blocks writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from wr import store_sql as sql
from wr.errors import StorageUnavailable, WrError
from wr.jobs import Job
from wr.store_feed import AddAborted, AddFeed
from wr.store_files import BUSY_TIMEOUT_S, check_db, fsync, move_aside, restore
from wr.store_sql import SCHEMA_VERSION, AddResult

__all__ = ["SCHEMA_VERSION", "AddResult", "Store"]

logger = logging.getLogger(__name__)

BACKUP_STEP_PAGES = 1024
"""Pages copied per backup step (4 MiB at the default page size)."""
READ_THREADS = 2
"""Threads (each with its own connection) that serve reads."""
RETRY_INTERVAL = 1.0
"""Seconds between attempts to store kept writes after a failed commit (issue 6)."""
ADD_PART = 10_000
"""Jobs per part when `Store.add_jobs` hands a list to the writer (each part's records go
in with one statement)."""
SAMPLE_KINDS = ("ram", "disk", "time")
"""Kinds of learning sample: peak RAM in MB, peak disk in MB, wall time in whole seconds."""


class _Write:
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


class Store:
    """The manager's database. Building one does no I/O; `open` does.

    Write methods must be called on the event loop thread; they return futures resolved after
    commit. Read methods are coroutines. See the module docstring for the design.
    """

    def __init__(self, path: Path, backup_path: Path | None = None, *,
                 backup_interval: float = 30.0) -> None:
        self.path = Path(path)
        self.backup_path = Path(backup_path) if backup_path is not None else None
        self.backup_interval = backup_interval
        self.commits = 0
        """Transactions committed by the writer (group commit keeps this small)."""
        self.backups = 0
        """Automatic backups completed."""
        self.failed_commits = 0
        """Transactions that failed for want of space or a working disk."""
        self.on_commit: Callable[[float], None] | None = None
        """Called in the writer thread with the seconds each successful commit took, from
        its BEGIN to the end of its COMMIT (wr.manager.metrics); it must be quick."""
        self._lock = threading.Lock()
        self._open = False
        self._pending: dict[asyncio.AbstractEventLoop, list[_Write]] = {}
        self._queue: deque[_Write] = deque()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._kept: list[_Write] = []
        """Writes of failed commits that record changes already made in memory (writer
        thread only): retried ahead of newer writes until they commit."""
        self._failing_since: float | None = None
        self._writer: threading.Thread | None = None
        self._wconn: sqlite3.Connection | None = None
        self._sync_full = True
        self._last_write: asyncio.Future[Any] | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._bulk: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        # backup scheduling, guarded by _bk_cond
        self._bk_cond = threading.Condition()
        self._bk_requested = False
        self._bk_scheduled = False
        self._bk_running = False
        self._bk_closing = False
        self._bk_next = 0.0
        self._bk_timer: threading.Timer | None = None
        self._backup_lock = threading.Lock()  # one backup at a time, whatever its target

    # -- life cycle ------------------------------------------------------------------------

    def open(self) -> list[str]:
        """Create or migrate the db (recovering it from the backup if it is missing or
        corrupt) and start the writer thread. Returns messages for the manager's log.

        Raises `StorageUnavailable` if the db cannot be opened, or is corrupt with no usable
        backup.
        """
        if self._open:
            return []
        try:
            messages = self._recover()
            conn = self._connect(write=True)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"could not open db file {self.path}: {exc}") from exc
        try:
            was = sql.init_schema(conn)
            if was < sql.SCHEMA_VERSION:
                messages.append(f"migrated the db from schema version {was} to "
                                f"{sql.SCHEMA_VERSION}")
            os.chmod(self.path, 0o600)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise StorageUnavailable(f"could not open db file {self.path}: {exc}") from exc
            raise
        self._wconn = conn
        self._stopping = False
        self._bk_closing = self._bk_requested = self._bk_scheduled = False
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="wr-store-read")
        self._bulk = ThreadPoolExecutor(1, thread_name_prefix="wr-store-backup")
        self._writer = threading.Thread(target=self._write_loop, name="wr-store-write",
                                        daemon=True)
        self._open = True
        self._writer.start()
        return messages

    def close(self) -> None:
        """Commit every pending write, take a final backup if one is due, stop the threads.

        Blocks; call it last, when the manager shuts down.
        """
        if not self._open:
            return
        with self._lock:
            self._open = False
            for ops in self._pending.values():
                self._queue.extend(ops)
            self._pending.clear()
            self._stopping = True
            self._wake.notify()
        assert self._writer is not None
        self._writer.join()
        with self._bk_cond:
            self._bk_closing = True
            if self._bk_timer is not None:
                self._bk_timer.cancel()
            while self._bk_running:
                self._bk_cond.wait()
            final = self._bk_requested and self.backup_path is not None
            self._bk_requested = False
        if final:
            assert self.backup_path is not None
            try:
                self._backup_once(self.backup_path)
                self.backups += 1
            except Exception:
                logger.exception("final backup to %s failed", self.backup_path)
        for pool in (self._readers, self._bulk):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        for conn in self._read_conns:
            conn.close()
        self._read_conns.clear()
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    # -- writes ----------------------------------------------------------------------------

    def add_jobs(self, jobs: list[Job], *, rerun: bool = False,
                 live_keys: frozenset[str] = frozenset()) -> asyncio.Future[AddResult]:
        """Store new jobs in one transaction, skipping duplicates and resurrecting completed
        dependants (spec rest-and-queue §2.2.4, §4.8).

        Jobs whose key is in ``live_keys`` (already queued) are skipped silently; unless
        ``rerun``, so are jobs already complete (reported). With ``rerun`` an already-queued
        job still gains the new rep group as a lookup name, as in wr. ``live_keys`` need only
        hold the queued keys among the input and their dependants; passing just those keeps
        the call cheap. The jobs are serialised now, like `save`: an `add_feed` given them
        all at once.
        """
        feed, stored = self.add_feed(rerun=rerun)
        for start in range(0, len(jobs), ADD_PART):
            feed.put(jobs[start:start + ADD_PART], live_keys)
        feed.end()
        return stored

    def add_feed(self, *, rerun: bool = False) -> tuple[AddFeed, asyncio.Future[AddResult]]:
        """`add_jobs` of jobs still being read (see `wr.store_feed`): put them in the feed
        a part at a time, each with the keys among it already queued, then end or abort it.
        The writer takes the first part once this loop iteration ends and writes each part
        as it comes, all in one transaction; writes submitted meanwhile wait behind it, so
        end the feed before awaiting any of them. The jobs are serialised when put, so the
        caller may change them afterwards."""
        feed = AddFeed()
        return feed, self._submit(_write_feed, feed, rerun)

    def save(self, jobs: Iterable[Job]) -> asyncio.Future[None]:
        """Rewrite live jobs' records after a state change (with no jobs: a barrier that
        resolves once every earlier write has settled). Serialised now, so the record is
        the job as it is at this call, whatever happens to the object afterwards. A job that
        is no longer live (archived or deleted by an earlier write) is skipped, so a late save
        cannot bring it back at the next start (spec cli-manager §6.2); new jobs go in through
        `add_jobs`."""
        rows = [(job.key, job.record_bytes()) for job in jobs]
        return self._submit(sql.write_save, rows) if rows else self._barrier()

    def archive(self, jobs: Iterable[Job]) -> asyncio.Future[None]:
        """Move completed jobs from ``live`` to ``complete`` in one transaction: drop their
        std, record learning samples (RAM, disk, ceil of wall time) and their rep group."""
        rows, samples = [], []
        for job in jobs:
            rows.append((job.key, job.rep_grp, job.req_grp, job.started, job.ended,
                         job.exitcode, job.peak_ram, job.cpu_time,
                         job.record_bytes(), job.peak_disk))
            samples.append((job.req_grp, "ram", int(job.peak_ram)))
            samples.append((job.req_grp, "disk", int(job.peak_disk)))
            if job.started is not None and job.ended is not None:
                samples.append((job.req_grp, "time", math.ceil(job.ended - job.started)))
        return self._submit(sql.write_archive, rows, samples) if rows else self._barrier()

    def durable(self) -> asyncio.Future[None]:
        """Resolves once every write submitted so far has committed, including those kept
        after a failed commit; fails with `StorageUnavailable` while they cannot be."""
        return self._submit(sql.write_nothing)

    def save_std(self, key: str, stdout: str, stderr: str) -> asyncio.Future[None]:
        """Keep a failed run's output, replacing the previous run's."""
        return self._submit(sql.write_std, key, stdout, stderr)

    def add_sample(self, req_grp: str, kind: str, value: int) -> asyncio.Future[None]:
        """Record one learning sample (a failure adds the resource it failed on)."""
        if kind not in SAMPLE_KINDS:
            raise ValueError(f"sample kind {kind!r} is not one of {', '.join(SAMPLE_KINDS)}")
        return self._submit(sql.write_sample, req_grp, kind, int(value))

    def delete(self, keys: Iterable[str]) -> asyncio.Future[None]:
        """Remove jobs from ``live`` with their std (lookup rows stay; they are harmless)."""
        rows = [(key,) for key in keys]
        return self._submit(sql.write_delete, rows) if rows else self._barrier()

    def set_limit(self, name: str, limit: int | None) -> asyncio.Future[None]:
        """Set a limit group's count; None removes it."""
        return self._submit(sql.write_limit, name, limit)

    def set_counter(self, name: str, value: int) -> asyncio.Future[None]:
        """Raise a counter that must never go back, even across restarts (issue 15: the
        LSF job ids of bsub-mode jobs)."""
        return self._submit(sql.write_counter, name, value)

    def rekey(self, old_key: str, job: Job, old_rep_grp: str = "") -> asyncio.Future[None]:
        """Replace a modified job's live record (its key may have changed), moving its std
        and recording its rep groups (the one it had too, so it stays findable by it once
        complete) and deps. Use it rather than `save` whenever ``deps`` or ``rep_grp``
        changed, even if the key did not. Serialised now, like `save`."""
        rep_grps = list(dict.fromkeys(g for g in (old_rep_grp, job.rep_grp) if g))
        return self._submit(sql.write_rekey, old_key, job.key, rep_grps, list(job.deps),
                            job.record_bytes())

    # -- reads -----------------------------------------------------------------------------

    async def live_jobs(self) -> list[Job]:
        """Every incomplete job, in no particular order, for start-up recovery. A job
        resurrected just before a crash may still say ``complete``; treat it as new."""
        return await self._read(sql.read_live)

    async def complete_jobs(self, keys: Sequence[str]) -> list[Job]:
        """Completed jobs by key, in the given order; unknown keys are skipped."""
        return await self._read(sql.read_complete, list(keys))

    async def complete_in_rep_grp(self, rep_grp: str, *,
                                  exclude: Collection[str] = ()) -> list[Job]:
        """Completed jobs ever added under ``rep_grp``, ordered by started then ended, each
        reported with that rep group. ``exclude`` (typically the queued keys being rerun)
        are left out."""
        return await self._read(sql.read_rep_grp, rep_grp, exclude)

    async def rep_grps(self, substring: str) -> list[str]:
        """Every rep group ever used that contains ``substring`` (case-sensitive), sorted."""
        return await self._read(sql.read_rep_grps, substring)

    async def std(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Stored (stdout, stderr) of the given jobs; keys without output are absent."""
        return await self._read(sql.read_std, list(keys))

    async def counter(self, name: str) -> int:
        """A counter's value (0 if it was never set)."""
        return await self._read(sql.read_counter, name)

    async def limits(self) -> dict[str, int]:
        """Every limit group's count."""
        return await self._read(sql.read_limits)

    async def samples(self) -> dict[tuple[str, str], list[int]]:
        """Learning samples: (req_grp, kind) -> values, ascending."""
        return await self._read(sql.read_samples)

    async def complete_count(self) -> int:
        """How many jobs the history holds."""
        return await self._read(sql.read_complete_count)

    async def complete_figures(self, rep_grp: str, *, exclude: Collection[str] = (),
                               usage: bool = True) -> dict[str, Any]:
        """Figures over the completed jobs ever added under ``rep_grp`` (less ``exclude``),
        as SQL aggregates, so a 100,000-job rep group is summarised without loading a record.

        Always ``{"n": count}``; with ``usage`` also, for ``ram`` and ``disk`` (peak MB),
        ``wall`` and ``cpu`` (seconds): ``<name>_mean`` and ``<name>_m2`` (sum of squared
        deviations from the mean, two-pass, for a sample standard deviation), and ``first``
        (earliest start) and ``last`` (latest end), None when there are no jobs.
        """
        return await self._read(_read_complete_figures, rep_grp, list(exclude), usage)

    # Reads for the web page (wr.manager.web). They count a completed job under the rep group
    # it completed in (``complete.rep_grp``), as the live job counts do, and leave out jobs
    # queued again (reruns), which the live counts already include.

    async def complete_counts(self, rep_grps: Sequence[str] | None = None) -> dict[str, int]:
        """Completed jobs per rep group, for ``rep_grps`` (None: every rep group with any);
        a rep group without completed jobs is absent."""
        names = None if rep_grps is None else list(rep_grps)
        return await self._read(_read_complete_counts, names)

    async def complete_page(self, rep_grp: str, *, limit: int, offset: int = 0) -> list[Job]:
        """A page of ``rep_grp``'s completed jobs, the most recently started first."""
        return await self._read(_read_complete_page, rep_grp, limit, offset)

    async def usage_sample(self, rep_grp: str, *, size: int) -> dict[str, Any]:
        """What ``rep_grp``'s completed jobs used against what they asked for.

        ``{"count": n, "points": [[peak_ram_mb, ram_mb, wall_s, time_s, cpu_s], ...]}`` for at
        most ``size`` jobs spread evenly over their start times, so a 100,000-job rep group
        costs ``size`` record reads, not 100,000."""
        return await self._read(_read_usage_sample, rep_grp, size)

    async def recent_rep_grps(self, since: float, limit: int) -> list[tuple[str, float]]:
        """Rep groups with a job that ended at ``since`` or later, with their latest end,
        most recent first."""
        return await self._read(_read_recent_rep_grps, since, limit)

    async def throughput(self, since: float, bucket: float,
                         rep_grp: str | None = None) -> list[tuple[float, int]]:
        """Jobs completed (by end time) per ``bucket`` seconds from ``since`` on, optionally
        of one rep group: ``[(bucket start, count), ...]``, empty buckets left out."""
        return await self._read(_read_throughput, since, bucket, rep_grp)

    async def backup_to(self, path: Path) -> None:
        """Write a consistent snapshot, including every write submitted before this call, to
        ``path`` (via ``path.tmp``, mode 0600, renamed into place)."""
        await self._after_writes()
        pool = self._require_open(self._bulk)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(pool, self._backup_once, Path(path))
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"could not back up db to {path}: {exc}") from exc

    # -- writer machinery ------------------------------------------------------------------

    def _submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        op = _Write(fn, args, future, loop)
        with self._lock:
            if not self._open:
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

    def _barrier(self) -> asyncio.Future[None]:
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

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """End of a loop iteration: hand its writes to the writer as one group."""
        with self._lock:
            ops = self._pending.pop(loop, None)
            if ops:
                self._queue.extend(ops)
                self._wake.notify()

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
            self._settle(batch)

    def _commit(self, batch: list[_Write]) -> None:
        """Apply ``batch`` in one transaction, retrying without any write that fails on its
        own; on a storage failure every remaining write gets `StorageUnavailable`."""
        todo = batch
        began = time.perf_counter()
        while todo:
            current: _Write | None = None
            try:
                conn = self._write_conn()
                self._set_sync(conn, any(op.fn is _write_feed for op in todo))
                conn.execute("BEGIN IMMEDIATE")
                for op in todo:
                    current = op
                    op.result = op.fn(conn, *op.args)
                current = None
                conn.execute("COMMIT")
            except Exception as exc:
                self._rollback()
                if current is not None and not _is_storage_error(exc):
                    if not isinstance(exc, AddAborted):  # a bad request, not a fault
                        logger.error("dropped a write that failed on its own: %r", exc)
                    if isinstance(exc, WrError):
                        current.error = exc
                    else:
                        what = current.fn.__name__.removeprefix("write_")
                        current.error = WrError(f"could not store {what}: {exc!r}")
                        current.error.__cause__ = exc
                    todo = [op for op in todo if op is not current]
                    continue
                self._kept = [op for op in todo if op.fn is not _write_feed]
                self.failed_commits += 1
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    logger.error("db commit of %d writes failed: %s; retrying the %d that "
                                 "record changes already made", len(todo), exc, len(self._kept))
                for op in todo:
                    op.error = StorageUnavailable(
                        f"could not write to db file {self.path}: {exc}")
                    op.error.__cause__ = exc
                return
            if self._failing_since is not None:
                logger.warning("db commits work again, after failing for %.1f s; stored %d "
                               "kept changes", time.monotonic() - self._failing_since,
                               sum(op.error is not None and op.fn is not sql.write_nothing
                                   for op in todo))
                self._failing_since = None
            self.commits += 1
            if self.on_commit is not None:
                with contextlib.suppress(Exception):  # a figure never fails a commit
                    self.on_commit(time.perf_counter() - began)
            self._request_backup()
            return

    def _set_sync(self, conn: sqlite3.Connection, full: bool) -> None:
        """Sync the disk on commits that add jobs (a user was promised them); commit state
        changes in WAL's NORMAL mode, which survives any crash of the manager process (the
        write reached the OS) but not a power cut — then the last changes of running jobs
        are redone. The next FULL commit syncs everything before it too."""
        if full != self._sync_full:
            conn.execute("PRAGMA synchronous=FULL" if full else "PRAGMA synchronous=NORMAL")
            self._sync_full = full

    def _write_conn(self) -> sqlite3.Connection:
        if self._wconn is None:
            self._wconn = self._connect(write=True)
            self._sync_full = True
        return self._wconn

    def _rollback(self) -> None:
        conn = self._wconn
        if conn is None or not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("rollback failed; reconnecting for the next batch")
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._wconn = None

    def _settle(self, batch: list[_Write]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Write]] = {}
        for op in batch:
            by_loop.setdefault(op.loop, []).append(op)
        for loop, ops in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_resolve, ops)

    # -- reader machinery ------------------------------------------------------------------

    async def _after_writes(self) -> None:
        """Wait until every write submitted (on this loop) before now has been settled."""
        last = self._last_write
        if last is None or last.done():
            return
        if last.get_loop() is asyncio.get_running_loop():
            await asyncio.wait([last])

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        await self._after_writes()
        pool = self._require_open(self._readers)
        return await asyncio.get_running_loop().run_in_executor(pool, self._run_read, fn, args)

    def _run_read(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect(write=False)
                with self._lock:
                    self._read_conns.append(conn)
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if not _is_storage_error(exc):
                raise
            raise StorageUnavailable(f"could not read db file {self.path}: {exc}") from exc

    def _require_open(self, pool: ThreadPoolExecutor | None) -> ThreadPoolExecutor:
        if not self._open or pool is None:
            raise StorageUnavailable(f"db {self.path} is not open")
        return pool

    # -- connections, recovery, backups ----------------------------------------------------

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        if write:
            if not self.path.exists():
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            target = str(self.path)
        else:  # never create a db that has gone missing
            target = f"file:{quote(str(self.path))}?mode=rw"
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False, uri=not write)
        try:
            if write:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=OFF")
            if not write:
                conn.execute("PRAGMA query_only=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _recover(self) -> list[str]:
        """Make sure a healthy db file is at ``path`` (spec §6.5); say what was done."""
        db, bk = self.path, self.backup_path

        def backup_problem() -> str | None:
            if bk is None:
                return "no backup file is configured"
            if not bk.exists():
                return f"backup file {bk} does not exist"
            return check_db(bk, readonly=True)

        if not db.exists():
            move_aside(db, None)
            bk_problem = backup_problem()
            if bk is not None and bk_problem is None:
                restore(bk, db)
                return [f"recreated missing db file {db} from backup file {bk}"]
            messages = [f"created new empty db file {db}"]
            if bk is not None and bk.exists():
                messages.append(f"did not use backup file {bk}: {bk_problem}")
            return messages
        problem = check_db(db, readonly=False)
        if problem is None:
            return []
        bk_problem = backup_problem()
        if bk is not None and bk_problem is None:
            move_aside(db, db.with_name(db.name + ".corrupt"))
            restore(bk, db)
            return [f"recreated corrupt db file {db} from backup file {bk} "
                    f"(error with original db file was: {problem})"]
        raise StorageUnavailable(f"db file {db} is corrupt ({problem}) and cannot be "
                                 f"recreated from a backup ({bk_problem})")

    def _request_backup(self) -> None:
        """After a commit (writer thread): make sure a backup will follow."""
        if self.backup_path is None:
            return
        with self._bk_cond:
            self._bk_requested = True
            if not self._bk_scheduled and not self._bk_closing:
                self._schedule_backup(self._bk_next - time.monotonic())

    def _schedule_backup(self, delay: float) -> None:  # called holding _bk_cond
        self._bk_scheduled = True
        self._bk_timer = threading.Timer(max(0.0, delay), self._auto_backup)
        self._bk_timer.daemon = True
        self._bk_timer.name = "wr-store-backup-timer"
        self._bk_timer.start()

    def _auto_backup(self) -> None:
        with self._bk_cond:
            if self._bk_closing:
                self._bk_scheduled = False
                return
            self._bk_requested = False
            self._bk_running = True
        assert self.backup_path is not None
        started = time.monotonic()
        try:
            self._backup_once(self.backup_path)
            self.backups += 1
        except Exception:
            logger.exception("backup to %s failed; will try again", self.backup_path)
            with self._bk_cond:
                self._bk_requested = True
        took = time.monotonic() - started
        with self._bk_cond:
            self._bk_running = False
            self._bk_scheduled = False
            self._bk_next = time.monotonic() + max(self.backup_interval, took)
            if self._bk_requested and not self._bk_closing:
                self._schedule_backup(self._bk_next - time.monotonic())
            self._bk_cond.notify_all()

    def _backup_once(self, target: Path) -> None:
        """Copy a consistent snapshot to ``target`` via ``target.tmp`` (any thread)."""
        with self._backup_lock:
            self._backup_locked(target)

    def _backup_locked(self, target: Path) -> None:
        tmp = target.with_name(target.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            src = self._connect(write=False)
            try:
                dst = sqlite3.connect(tmp, isolation_level=None)
                try:
                    # Pin one read snapshot for every step: writes by other connections then
                    # neither restart the copy nor wait for it (WAL).
                    src.execute("BEGIN")
                    src.execute("SELECT count(*) FROM meta").fetchone()
                    src.backup(dst, pages=BACKUP_STEP_PAGES, sleep=0.01)
                    src.execute("COMMIT")
                    dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file
                finally:
                    dst.close()
            finally:
                src.close()
            fsync(tmp)
            os.replace(tmp, target)
            fsync(target.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


# -- helpers ---------------------------------------------------------------------------------

def _write_feed(conn: sqlite3.Connection, feed: AddFeed, rerun: bool) -> AddResult:
    """The one write that adds jobs: it syncs the disk, and is not kept after a failed
    commit (its caller is told, and queues nothing)."""
    return sql.write_add(conn, feed.parts(), rerun)


def _resolve(ops: list[_Write]) -> None:
    for op in ops:
        if op.future.done():  # cancelled, or a kept write whose caller heard already
            continue
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)


def _is_storage_error(exc: BaseException) -> bool:
    """True for failures of the disk or db (which doom the batch), False for a bad write."""
    if isinstance(exc, (sqlite3.OperationalError, sqlite3.InternalError, OSError, MemoryError)):
        return True
    return type(exc) is sqlite3.DatabaseError  # corrupt, not a database


_FIGURES = ("ram", "disk", "wall", "cpu")


def _read_complete_figures(conn: sqlite3.Connection, rep_grp: str, exclude: list[str],
                           usage: bool) -> dict[str, Any]:
    """The query behind `Store.complete_figures` (a reader thread, in a read transaction).

    Wall time is end minus start, never below 0 (as status objects report it: a job's end
    comes from its runner, its start from the manager's clock). The rows are materialised
    once and scanned twice (means, then squared deviations), which keeps the standard
    deviation exact where sum-of-squares would cancel badly. Rows of jobs that completed in
    the rep group come from an index alone (``complete_figures``).
    """
    params: list[Any] = [rep_grp, rep_grp, rep_grp]
    columns = "c.key, c.started, c.ended, c.peak_ram, c.peak_disk, c.cpu_time"
    source = f"FROM ({sql.complete_in_rep_grp(columns)})"
    if exclude:
        source += " WHERE key NOT IN (SELECT value FROM json_each(?))"
        params.append(orjson.dumps(exclude).decode())
    if not usage:
        return {"n": conn.execute(f"SELECT count(*) {source}", params).fetchone()[0]}
    deviations = ", ".join(f"total((h.{f} - m.{f}) * (h.{f} - m.{f}))" for f in _FIGURES)
    row = conn.execute(f"""
        WITH h AS MATERIALIZED (
            SELECT coalesce(peak_ram, 0) AS ram, coalesce(peak_disk, 0) AS disk,
                   max(coalesce(ended - started, 0), 0) AS wall,
                   coalesce(cpu_time, 0) AS cpu, started AS s, ended AS e
            {source}),
        m AS (SELECT count(*) AS n, avg(ram) AS ram, avg(disk) AS disk, avg(wall) AS wall,
                     avg(cpu) AS cpu, min(s) AS s, max(e) AS e FROM h)
        SELECT m.n, m.ram, m.disk, m.wall, m.cpu, m.s, m.e, {deviations}
        FROM m LEFT JOIN h""", params).fetchone()
    out: dict[str, Any] = {"n": row[0] or 0, "first": row[5], "last": row[6]}
    for i, name in enumerate(_FIGURES):
        out[f"{name}_mean"] = float(row[1 + i] or 0.0)
        out[f"{name}_m2"] = float(row[7 + i] or 0.0)
    return out


# -- queries of the web page's reads (reader threads, in a read transaction) ------------------

_NOT_REQUEUED = "NOT EXISTS (SELECT 1 FROM live l WHERE l.key = c.key)"


def _read_complete_counts(conn: sqlite3.Connection,
                          rep_grps: list[str] | None) -> dict[str, int]:
    if rep_grps is None:
        sql_all = ("SELECT c.rep_grp, count(*) FROM complete c WHERE "
                   f"{_NOT_REQUEUED} GROUP BY c.rep_grp")
        return dict(conn.execute(sql_all))
    out: dict[str, int] = {}
    names = list(dict.fromkeys(rep_grps))
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        marks = ",".join("?" * len(chunk))
        query = (f"SELECT c.rep_grp, count(*) FROM complete c WHERE c.rep_grp IN ({marks}) "
                 f"AND {_NOT_REQUEUED} GROUP BY c.rep_grp")
        out.update(conn.execute(query, chunk))
    return out


def _read_complete_page(conn: sqlite3.Connection, rep_grp: str, limit: int,
                        offset: int) -> list[Job]:
    # started, ended, rowid is the order of the complete_rep_grp index: no sort needed.
    query = (f"SELECT c.data FROM complete c WHERE c.rep_grp = ? AND {_NOT_REQUEUED} "
             "ORDER BY c.started DESC, c.ended DESC, c.rowid DESC LIMIT ? OFFSET ?")
    return [Job.from_record(orjson.loads(data))
            for (data,) in conn.execute(query, (rep_grp, max(limit, 0), max(offset, 0)))]


def _read_usage_sample(conn: sqlite3.Connection, rep_grp: str, size: int) -> dict[str, Any]:
    rowids = [r for (r,) in conn.execute(
        "SELECT rowid FROM complete WHERE rep_grp = ? ORDER BY started, ended", (rep_grp,))]
    count = len(rowids)
    if size > 0 and count > size:
        step = count / size
        rowids = [rowids[int(i * step)] for i in range(size)]
    points = []
    for i in range(0, len(rowids), 500):
        chunk = rowids[i:i + 500]
        query = ("SELECT peak_ram, started, ended, cpu_time, data FROM complete "
                 f"WHERE rowid IN ({','.join('?' * len(chunk))})")
        for peak, started, ended, cpu, data in conn.execute(query, chunk):
            job = Job.from_record(orjson.loads(data))
            wall = (ended - started) if started is not None and ended is not None else 0.0
            points.append([peak or 0, job.ram, max(wall, 0.0), job.time, cpu or 0.0])
    return {"count": count, "points": points}


def _read_throughput(conn: sqlite3.Connection, since: float, bucket: float,
                     rep_grp: str | None) -> list[tuple[float, int]]:
    # Both forms read only the complete_rep_grp index, which holds ``ended``.
    where = "ended >= ?" + (" AND rep_grp = ?" if rep_grp is not None else "")
    params: list[Any] = [bucket, since] + ([rep_grp] if rep_grp is not None else [])
    query = (f"SELECT CAST(ended / ? AS INTEGER) AS b, count(*) FROM complete WHERE {where} "
             "GROUP BY b ORDER BY b")
    return [(b * bucket, n) for b, n in conn.execute(query, params)]


def _read_recent_rep_grps(conn: sqlite3.Connection, since: float,
                          limit: int) -> list[tuple[str, float]]:
    query = ("SELECT rep_grp, max(ended) AS e FROM complete GROUP BY rep_grp HAVING e >= ? "
             "ORDER BY e DESC LIMIT ?")
    return [(name, ended) for name, ended in conn.execute(query, (since, limit))]
