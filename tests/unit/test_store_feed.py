"""`Store.add_feed`: an add handed to the writer a part at a time, still one transaction.

Real SQLite files in tmp_path; each test drives its async part with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from wr.jobs import Job, compute_key
from wr.store import Store
from wr.store_feed import AddAborted, AddFeed


def make_job(cmd: str, **kw: object) -> Job:
    return Job(key=compute_key(cmd), cmd=cmd, req_grp=cmd.split()[0], **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "db")
    s.open()
    yield s
    s.close()


def writing(path: Path) -> bool:
    """Whether the store's writer has begun a transaction (it holds the write lock)."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return True
        raise
    else:
        conn.execute("ROLLBACK")
        return False
    finally:
        conn.close()


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def live_keys(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM live")}


def test_parts_put_while_the_writer_writes_are_stored_together(store: Store) -> None:
    parts = [[make_job(f"echo {p}.{i}", rep_grp=f"r{p}") for i in range(300)] for p in range(3)]

    async def main() -> None:
        feed, stored = store.add_feed()
        feed.put(parts[0], frozenset())
        await until(lambda: writing(store.path), "the writer to begin with the first part")
        assert not stored.done()
        assert live_keys(store.path) == set()  # one transaction: nothing is visible yet
        feed.put(parts[1], frozenset())
        feed.put(parts[2], frozenset())
        feed.end()
        result = await stored
        assert result.stored == [job for part in parts for job in part]

    asyncio.run(main())
    assert live_keys(store.path) == {job.key for part in parts for job in part}


def test_an_aborted_feed_stores_nothing_and_logs_no_error(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    first = [make_job(f"echo {i}") for i in range(50)]

    async def main() -> None:
        feed, stored = store.add_feed()
        feed.put(first, frozenset())
        await until(lambda: writing(store.path), "the writer to begin with the first part")
        feed.abort()
        with pytest.raises(AddAborted):
            await stored
        # The writer goes on with the next write.
        assert (await store.add_jobs([make_job("echo after")])).stored

    with caplog.at_level(logging.ERROR, logger="wr.store"):
        asyncio.run(main())
    assert live_keys(store.path) == {compute_key("echo after")}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_feed_in_a_retried_transaction_is_written_whole(store: Store) -> None:
    """Another write of the same batch fails on its own: the batch is retried without it,
    and the feed gives its parts again from the first."""
    jobs = [make_job(f"echo {i}") for i in range(40)]

    def broken(conn: sqlite3.Connection) -> None:
        raise ValueError("a bug in one write")

    async def main() -> None:
        feed, stored = store.add_feed()
        bad = store._submit(broken)  # the same loop iteration: the same batch
        feed.put(jobs[:20], frozenset())
        feed.put(jobs[20:], frozenset())
        feed.end()
        with pytest.raises(Exception, match="a bug in one write"):
            await bad
        assert (await stored).stored == jobs

    asyncio.run(main())
    assert live_keys(store.path) == {job.key for job in jobs}


def test_a_feed_that_stalls_is_given_up() -> None:
    feed = AddFeed(stall_timeout=0.05)
    feed.put([make_job("echo 1")], frozenset())
    parts = feed.parts()
    assert len(next(parts)[0]) == 1
    with pytest.raises(AddAborted, match="did not come within"):
        next(parts)


def test_queued_jobs_in_a_part_are_skipped_and_repeats_across_parts_stored_once(
        store: Store) -> None:
    queued = make_job("echo queued")
    again = make_job("echo again", rep_grp="first")

    async def main() -> None:
        await store.add_jobs([queued])
        feed, stored = store.add_feed()
        feed.put([again, queued], frozenset({queued.key}))
        feed.put([make_job("echo again", rep_grp="second")], frozenset())
        feed.end()
        result = await stored
        assert result.stored == [again]

    asyncio.run(main())
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT count(*) FROM live").fetchone() == (2,)
        # the repeat's rep group can still find it
        assert conn.execute("SELECT rep_grp FROM rep_grp_keys WHERE key = ?",
                            (again.key,)).fetchall() == [("second",)]


def test_jobs_are_stored_as_they_were_when_put(store: Store) -> None:
    """The manager works out a big add's places in the queue (changing its jobs) while the
    writer still writes them: what is stored is each job as it was put."""
    jobs = [make_job(f"echo {i}") for i in range(30)]

    async def main() -> None:
        feed, stored = store.add_feed()
        feed.put(jobs, frozenset())
        for job in jobs:
            job.sched_group, job.ram = "changed", 12345
        feed.end()
        await stored
        live = await store.live_jobs()
        assert {(j.sched_group, j.ram) for j in live} == {("", jobs[0].user_ram)}

    asyncio.run(main())


def test_records_made_by_the_caller_are_the_ones_stored(store: Store) -> None:
    """The manager makes a part's records itself, a slice at a time between other work
    (issue 13): what is stored is those records, even if the jobs change afterwards; a
    count of records that does not match the jobs is refused."""
    jobs = [make_job(f"echo {i}", rep_grp="mine") for i in range(20)]
    records = [job.record_bytes() for job in jobs]

    async def main() -> None:
        feed, stored = store.add_feed()
        with pytest.raises(ValueError, match="19 records for 20 jobs"):
            feed.put(jobs, frozenset(), records[:-1])
        feed.put(jobs, frozenset(), records)
        for job in jobs:
            job.rep_grp = "changed"
        feed.end()
        await stored

    asyncio.run(main())
    with sqlite3.connect(store.path) as conn:
        stored_records = dict(conn.execute("SELECT key, data FROM live"))
    assert stored_records == {job.key: record for job, record in zip(jobs, records, strict=True)}
