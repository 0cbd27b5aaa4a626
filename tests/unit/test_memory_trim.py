"""The manager hands freed memory back after big requests, once, after a quiet moment."""

from __future__ import annotations

import asyncio
import time

from wr.manager.memory import MemoryTrimmer, find_malloc_trim


def test_glibc_provides_malloc_trim_here() -> None:
    trim = find_malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)


def test_one_trim_after_a_burst_of_big_requests_and_none_for_small_ones() -> None:
    calls: list[int] = []

    async def scenario() -> MemoryTrimmer:
        # A delay long enough that a loaded machine's hiccups do not split the burst.
        trimmer = MemoryTrimmer(lambda pad: calls.append(pad) or 1, delay=0.25, threshold=10)
        trimmer.note(9)  # too small to bother
        await asyncio.sleep(0.5)  # nothing must happen: twice the delay, and no trim
        assert calls == []
        for _ in range(3):  # a burst: one trim, after the last
            trimmer.note(100)
            await asyncio.sleep(0.01)  # requests closer together than the delay
        assert calls == []
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return trimmer

    trimmer = asyncio.run(scenario())
    assert calls == [0]
    assert trimmer.trims == 1


def test_closing_cancels_a_pending_trim() -> None:
    calls: list[int] = []

    async def scenario() -> None:
        trimmer = MemoryTrimmer(lambda pad: calls.append(pad) or 1, delay=0.05, threshold=1)
        trimmer.note(5)
        trimmer.close()
        await asyncio.sleep(0.1)  # nothing must happen: twice the delay, and no trim

    asyncio.run(scenario())
    assert calls == []
