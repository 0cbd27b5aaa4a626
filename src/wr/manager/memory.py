"""Handing freed memory back to the system after requests that touched many jobs.

A 100,000-job add makes and frees hundreds of megabytes of short-lived objects (parsed
JSON, records, status objects). glibc keeps what it frees inside its heap whenever a
long-lived allocation sits above it, so without a trim the manager's RSS stays that much
higher for good; at a million queued jobs that was about 100 bytes per job.
``malloc_trim`` returns whole free pages from anywhere in the heap. It runs in a worker
thread (ctypes drops the GIL), once things have been quiet for a moment, and only where
glibc provides it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("wr.manager")

BIG_REQUEST = 10_000
"""Jobs a request must touch before a trim is worth its few milliseconds."""


def find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on a C library without it (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class MemoryTrimmer:
    """Calls ``trim(0)`` ``delay`` seconds after the last big request it was told of."""

    def __init__(self, trim: Callable[[int], int] | None = None, *, delay: float = 1.0,
                 threshold: int = BIG_REQUEST) -> None:
        self._trim = trim if trim is not None else find_malloc_trim()
        self._delay = delay
        self._threshold = threshold
        self._timer: asyncio.TimerHandle | None = None
        self.trims = 0

    def note(self, jobs: int) -> None:
        """A request just made or dropped ``jobs`` jobs' worth of objects."""
        if self._trim is None or jobs < self._threshold:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._delay, self._start)

    def _start(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().run_in_executor(None, self._run)
        task.add_done_callback(_log_failure)

    def _run(self) -> None:
        assert self._trim is not None
        self._trim(0)
        self.trims += 1

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("returning free memory to the system failed: %s", future.exception())
