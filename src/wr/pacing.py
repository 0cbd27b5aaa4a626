"""Sharing the event loop during long work: big requests give way to small ones (issue 13).

Everything the manager does runs on one event loop, so a request that works for 20 s
without awaiting anything holds up every other client for 20 s (a 1,000,000-job POST did).
Long work is therefore done a slice at a time (a few thousand jobs), and between slices it
awaits `Pacer.breathe`, which gives the loop back once ``SLICE`` seconds have passed since
it last did. A small request waits at most about two slices, whatever else is going on;
work on a quiet loop loses nothing but a clock read per slice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

SLICE = 0.02
"""Seconds of work after which long work lets the loop run other things."""
STEP = 1000
"""Items (jobs, status objects) handled between two checks of the clock: about a
millisecond of work each, so a slice overruns ``SLICE`` by little."""

T = TypeVar("T")


class Pacer:
    """Gives the event loop back every ``slice`` seconds of the work that awaits it."""

    __slots__ = ("_slice", "_since", "yields")

    def __init__(self, slice: float = SLICE) -> None:
        self._slice = slice
        self._since = time.perf_counter()
        self.yields = 0
        """How many times the loop was given back (tests read it)."""

    async def breathe(self) -> None:
        """Let other tasks run if this work has held the loop for a slice."""
        if time.perf_counter() - self._since >= self._slice:
            # Twice: the first lets the loop poll its sockets, and a request read there
            # is queued behind this work's next step; the second lets that request's
            # handler run before the next slice, not after it.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            self.yields += 1
            self._since = time.perf_counter()

    async def steps(self, items: Sequence[T], step: int = STEP) -> AsyncIterator[Sequence[T]]:
        """``items`` a step at a time, breathing between steps."""
        for start in range(0, len(items), step):
            yield items[start:start + step]
            await self.breathe()
