"""Handing a big add to the store's writer thread in parts, while the rest is still being read.

A POST of 100,000 jobs spends about as long turning JSON into jobs (on the event loop) as
the store spends writing them (in its writer thread). Done one after the other, that is
twice the time; with the jobs fed to the writer a part at a time, SQLite inserts one part
(without holding the GIL, see `wr.store_sql`) while the event loop reads the next.

The add is still one transaction: nothing is stored unless every part was read and
written, and a part that turns out bad (say job 90,000 has no ``cmd``) aborts the lot.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence

from wr.errors import WrError
from wr.jobs import Job

STALL_TIMEOUT = 300.0
"""Seconds the writer waits for the next part before giving the add up: the reader is a
loop on the same process that never waits for I/O between parts, so this only guards
against a bug leaving the writer (and every later write) waiting for ever."""


class AddAborted(WrError):
    """The reader of an add stopped before its end (a bad job in a later part): nothing of
    it is stored."""


class AddFeed:
    """The parts of one add, in order: `put` each, then `end` (or `abort`), from the event
    loop; the writer thread reads them with `parts`."""

    def __init__(self, stall_timeout: float = STALL_TIMEOUT) -> None:
        self._parts: list[tuple[Sequence[Job], Collection[str], list[bytes]]] = []
        self._ready = threading.Condition()
        self._ended = False
        self._aborted = False
        self._stall_timeout = stall_timeout

    def put(self, jobs: Sequence[Job], queued: Collection[str],
            records: list[bytes] | None = None) -> None:
        """Add a part: its jobs, and the keys among them already queued. Their records
        (``job.record_bytes()`` of each) are made now unless the caller made them, so the
        caller may change the jobs from here on (the manager works out their places in
        the queue while the writer writes them)."""
        if records is None:
            records = [job.record_bytes() for job in jobs]
        elif len(records) != len(jobs):
            raise ValueError(f"{len(records)} records for {len(jobs)} jobs")
        with self._ready:
            self._parts.append((jobs, queued, records))
            self._ready.notify()

    def end(self) -> None:
        """Every part has been put."""
        with self._ready:
            self._ended = True
            self._ready.notify()

    def abort(self) -> None:
        """Store none of it."""
        with self._ready:
            self._aborted = True
            self._ready.notify()

    def parts(self) -> Iterator[tuple[Sequence[Job], Collection[str], list[bytes]]]:
        """Each part once it has been put, from the first every time this is called (a
        transaction retried after another write failed on its own starts again); raises
        `AddAborted` once the feed is aborted or stalls."""
        i = 0
        while True:
            with self._ready:
                while i == len(self._parts) and not self._ended and not self._aborted:
                    if not self._ready.wait(self._stall_timeout):
                        raise AddAborted(f"the add's next part did not come within "
                                         f"{self._stall_timeout:g} s")
                if self._aborted:
                    raise AddAborted("the add was given up before its end")
                if i == len(self._parts):
                    return
                part = self._parts[i]
            i += 1
            yield part
