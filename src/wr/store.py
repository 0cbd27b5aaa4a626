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

* One writer thread owns the write connection and commits every write waiting in ONE
  transaction (group commit); a failed commit fails its callers, and the changes the
  manager already made are kept and retried until they are stored (`wr.store_writer`).
  `durable` tells when they have.
* Reads run in a small thread pool on their own connections (WAL readers never block the
  writer), each in one read transaction, after every write submitted before them. The
  summing-up reads of the history are in `wr.store_history`.
* The event loop never runs SQLite, except in `Store.open` and `Store.close`.
* Backups (when ``backup_path`` is set) follow writes (`wr.store_backups`).
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from wr import store_history as history
from wr import store_sql as sql
from wr.errors import StorageUnavailable
from wr.jobs import Job
from wr.store_backups import Backups
from wr.store_feed import AddFeed
from wr.store_files import connect, recover
from wr.store_sql import SCHEMA_VERSION, AddResult
from wr.store_writer import Writer, is_storage_error, write_feed

__all__ = ["SCHEMA_VERSION", "AddResult", "Store"]

READ_THREADS = 2
"""Threads (each with its own connection) that serve reads."""
ADD_PART = 10_000
"""Jobs per part when `Store.add_jobs` hands a list to the writer (each part's records go
in with one statement)."""


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
        self._open = False
        self._backups = Backups(self.path, self.backup_path, backup_interval)
        self._writer = Writer(self.path, lambda: connect(self.path, write=True),
                              self._backups.request)
        self._readers: ThreadPoolExecutor | None = None
        self._bulk: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _read_conns
        self._read_conns: list[sqlite3.Connection] = []

    @property
    def commits(self) -> int:
        """Transactions committed by the writer (group commit keeps this small)."""
        return self._writer.commits

    @property
    def failed_commits(self) -> int:
        """Transactions that failed for want of space or a working disk."""
        return self._writer.failed_commits

    @property
    def backups(self) -> int:
        """Automatic backups completed."""
        return self._backups.count

    @property
    def on_commit(self) -> Callable[[float], None] | None:
        """Called in the writer thread with the seconds each successful commit took, from
        its BEGIN to the end of its COMMIT (wr.manager.metrics); it must be quick."""
        return self._writer.on_commit

    @on_commit.setter
    def on_commit(self, observe: Callable[[float], None] | None) -> None:
        self._writer.on_commit = observe

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
            messages = recover(self.path, self.backup_path)
            conn = connect(self.path, write=True)
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
        self._backups.reset()
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="wr-store-read")
        self._bulk = ThreadPoolExecutor(1, thread_name_prefix="wr-store-backup")
        self._open = True
        self._writer.start(conn)
        return messages

    def close(self) -> None:
        """Commit every pending write, take a final backup if one is due, stop the threads.

        Blocks; call it last, when the manager shuts down.
        """
        if not self._open:
            return
        self._open = False
        self._writer.stop()
        self._backups.close()
        for pool in (self._readers, self._bulk):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        for conn in self._read_conns:
            conn.close()
        self._read_conns.clear()
        self._writer.close()

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
        return feed, self._submit(write_feed, feed, rerun)

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

    async def complete_figures(self, rep_grp: str, *, exclude: Collection[str] = (),
                               usage: bool = True) -> dict[str, Any]:
        """Figures over the completed jobs ever added under ``rep_grp`` (less ``exclude``),
        as SQL aggregates, so a 100,000-job rep group is summarised without loading a record.

        Always ``{"n": count}``; with ``usage`` also, for ``ram`` and ``disk`` (peak MB),
        ``wall`` and ``cpu`` (seconds): ``<name>_mean`` and ``<name>_m2`` (sum of squared
        deviations from the mean, two-pass, for a sample standard deviation), and ``first``
        (earliest start) and ``last`` (latest end), None when there are no jobs.
        """
        return await self._read(history.read_complete_figures, rep_grp, list(exclude), usage)

    # Reads for the web page (wr.manager.web). They count a completed job under the rep group
    # it completed in (``complete.rep_grp``), as the live job counts do, and leave out jobs
    # queued again (reruns), which the live counts already include.

    async def complete_counts(self, rep_grps: Sequence[str] | None = None) -> dict[str, int]:
        """Completed jobs per rep group, for ``rep_grps`` (None: every rep group with any);
        a rep group without completed jobs is absent."""
        names = None if rep_grps is None else list(rep_grps)
        return await self._read(history.read_complete_counts, names)

    async def complete_page(self, rep_grp: str, *, limit: int, offset: int = 0) -> list[Job]:
        """A page of ``rep_grp``'s completed jobs, the most recently started first."""
        return await self._read(history.read_complete_page, rep_grp, limit, offset)

    async def usage_sample(self, rep_grp: str, *, size: int) -> dict[str, Any]:
        """What ``rep_grp``'s completed jobs used against what they asked for.

        ``{"count": n, "points": [[peak_ram_mb, ram_mb, wall_s, time_s, cpu_s], ...]}`` for at
        most ``size`` jobs spread evenly over their start times, so a 100,000-job rep group
        costs ``size`` record reads, not 100,000."""
        return await self._read(history.read_usage_sample, rep_grp, size)

    async def recent_rep_grps(self, since: float, limit: int) -> list[tuple[str, float]]:
        """Rep groups with a job that ended at ``since`` or later, with their latest end,
        most recent first."""
        return await self._read(history.read_recent_rep_grps, since, limit)

    async def throughput(self, since: float, bucket: float,
                         rep_grp: str | None = None) -> list[tuple[float, int]]:
        """Jobs completed (by end time) per ``bucket`` seconds from ``since`` on, optionally
        of one rep group: ``[(bucket start, count), ...]``, empty buckets left out."""
        return await self._read(history.read_throughput, since, bucket, rep_grp)

    async def backup_to(self, path: Path) -> None:
        """Write a consistent snapshot, including every write submitted before this call, to
        ``path`` (via ``path.tmp``, mode 0600, renamed into place)."""
        await self._writer.after_writes()
        pool = self._require_open(self._bulk)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(pool, self._backups.backup_once, Path(path))
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"could not back up db to {path}: {exc}") from exc

    # -- machinery -------------------------------------------------------------------------

    def _submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Hand ``fn(conn, *args)`` to the writer (see `wr.store_writer.Writer.submit`)."""
        return self._writer.submit(fn, *args)

    def _barrier(self) -> asyncio.Future[None]:
        return self._writer.barrier()

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        await self._writer.after_writes()
        pool = self._require_open(self._readers)
        return await asyncio.get_running_loop().run_in_executor(pool, self._run_read, fn, args)

    def _run_read(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        try:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = connect(self.path, write=False)
                with self._lock:
                    self._read_conns.append(conn)
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if not is_storage_error(exc):
                raise
            raise StorageUnavailable(f"could not read db file {self.path}: {exc}") from exc

    def _require_open(self, pool: ThreadPoolExecutor | None) -> ThreadPoolExecutor:
        if not self._open or pool is None:
            raise StorageUnavailable(f"db {self.path} is not open")
        return pool
