"""Time `Store.add_jobs` of 100,000 jobs (one group commit, WAL, synchronous=FULL).

Usage: ``python bench/store_bench.py [N] [DIR]`` (DIR defaults to a temporary directory; give
one on the disk the manager will use). Prints jobs/s for the add, and the longest time the
event loop went without running (the store must not stall it).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from wr.jobs import Job, compute_key, default_req_grp
from wr.store import Store


async def _ticker(stop: asyncio.Event, worst: list[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst[0] = max(worst[0], now - last)
        last = now


async def bench(store: Store, n: int) -> None:
    cmds = [f"bench_cmd --input file{i}.txt --output out{i}.txt" for i in range(n)]
    jobs = [Job(key=compute_key(c), cmd=c, rep_grp="bench", req_grp=default_req_grp(c),
                dep_grps=["bench"]) for c in cmds]
    stop, worst = asyncio.Event(), [0.0]
    ticker = asyncio.create_task(_ticker(stop, worst))
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    result = await store.add_jobs(jobs)
    took = time.perf_counter() - start
    stop.set()
    await ticker
    assert len(result.stored) == n
    print(f"add_jobs: {n:,} jobs in {took:.2f} s = {n / took:,.0f} jobs/s "
          f"({store.commits} commit); longest event-loop stall {worst[0] * 1000:.1f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(dir=sys.argv[2] if len(sys.argv) > 2 else None) as tmp:
        store = Store(Path(tmp) / "db")
        store.open()
        try:
            asyncio.run(bench(store, n))
        finally:
            store.close()


if __name__ == "__main__":
    main()
