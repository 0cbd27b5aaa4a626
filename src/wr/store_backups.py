"""Backups of `wr.store`'s db: automatic ones after writes, and one on demand.

Automatic backups (when a backup path is set) follow commits, at most one at a time and
spaced by max(``interval``, the previous backup's duration); a backup still due when the
store closes is taken then. A backup pins a read snapshot and copies it with SQLite's backup
API in steps, so it neither restarts nor blocks writers, and lands in place through a
temporary file, so a crash mid-copy never leaves a half backup where the good one was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from wr.store_files import connect, fsync

logger = logging.getLogger("wr.store")

BACKUP_STEP_PAGES = 1024
"""Pages copied per backup step (4 MiB at the default page size)."""


class Backups:
    """The store's backups. Building one does no I/O; `request` (from the writer thread,
    after each commit) schedules the next automatic one on a timer thread."""

    def __init__(self, db: Path, target: Path | None, interval: float) -> None:
        self.db = db
        self.target = target
        """Where automatic backups go; None: no automatic backups."""
        self.interval = interval
        self.count = 0
        """Automatic backups completed."""
        self._cond = threading.Condition()  # guards the scheduling state below
        self._requested = False
        self._scheduled = False
        self._running = False
        self._closing = False
        self._next = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()  # one backup at a time, whatever its target

    def reset(self) -> None:
        """The store (re)opens: nothing is requested or scheduled yet."""
        self._closing = self._requested = self._scheduled = False

    def request(self) -> None:
        """After a commit (writer thread): make sure a backup will follow."""
        if self.target is None:
            return
        with self._cond:
            self._requested = True
            if not self._scheduled and not self._closing:
                self._schedule(self._next - time.monotonic())

    def close(self) -> None:
        """Stop scheduling, wait for a backup under way, and take a final one if a commit
        since the last one asked for it (blocks)."""
        with self._cond:
            self._closing = True
            if self._timer is not None:
                self._timer.cancel()
            while self._running:
                self._cond.wait()
            final = self._requested and self.target is not None
            self._requested = False
        if final:
            assert self.target is not None
            try:
                self.backup_once(self.target)
                self.count += 1
            except Exception:
                logger.exception("final backup to %s failed", self.target)

    def _schedule(self, delay: float) -> None:  # called holding _cond
        self._scheduled = True
        self._timer = threading.Timer(max(0.0, delay), self._auto_backup)
        self._timer.daemon = True
        self._timer.name = "wr-store-backup-timer"
        self._timer.start()

    def _auto_backup(self) -> None:
        with self._cond:
            if self._closing:
                self._scheduled = False
                return
            self._requested = False
            self._running = True
        assert self.target is not None
        started = time.monotonic()
        try:
            self.backup_once(self.target)
            self.count += 1
        except Exception:
            logger.exception("backup to %s failed; will try again", self.target)
            with self._cond:
                self._requested = True
        took = time.monotonic() - started
        with self._cond:
            self._running = False
            self._scheduled = False
            self._next = time.monotonic() + max(self.interval, took)
            if self._requested and not self._closing:
                self._schedule(self._next - time.monotonic())
            self._cond.notify_all()

    def backup_once(self, target: Path) -> None:
        """Copy a consistent snapshot to ``target`` via ``target.tmp`` (any thread)."""
        with self._lock:
            self._backup_locked(target)

    def _backup_locked(self, target: Path) -> None:
        tmp = target.with_name(target.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            src = connect(self.db, write=False)
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
