"""wr.store against real SQLite files in tmp_path (the store is I/O by nature).

pytest-asyncio is not installed: each test drives its async part with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from pathlib import Path

import orjson
import pytest

from wr.errors import StorageUnavailable, WrError
from wr.jobs import Job, State, compute_key
from wr.store import AddResult, Store


def make_job(cmd: str, **kw: object) -> Job:
    return Job(key=compute_key(cmd), cmd=cmd, req_grp=cmd.split()[0], **kw)  # type: ignore[arg-type]


def finished(job: Job, started: float, ended: float, *, peak_ram: int = 10,
             peak_disk: int = 2) -> Job:
    job.state = State.COMPLETE
    job.started, job.ended = started, ended
    job.peak_ram, job.peak_disk = peak_ram, peak_disk
    job.exited = True
    return job


def add(store: Store, jobs: list[Job]) -> AddResult:
    """Add from a fresh event loop (writes must be submitted on a running loop)."""

    async def main() -> AddResult:
        return await store.add_jobs(jobs)

    return asyncio.run(main())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
def store(db: Path):
    s = Store(db)
    assert s.open() == [f"created new empty db file {db}"]
    yield s
    s.close()


# -- adding ---------------------------------------------------------------------------------

def test_add_stores_jobs_durably(store: Store, db: Path) -> None:
    jobs = [make_job(f"echo {i}", rep_grp="r", other={"x": "y"}, deps=["d"]) for i in range(3)]

    async def main() -> None:
        result = await store.add_jobs(jobs)
        assert result == AddResult(stored=jobs, skipped_complete=[], resurrected=[])
        live = sorted(await store.live_jobs(), key=lambda j: j.cmd)
        assert [j.record_bytes() for j in live] == [j.record_bytes() for j in jobs]
        assert await store.rep_grps("") == ["r"]

    asyncio.run(main())
    assert mode(db) == 0o600
    store.close()
    reopened = Store(db)
    assert reopened.open() == []
    try:
        assert len(asyncio.run(reopened.live_jobs())) == 3
    finally:
        reopened.close()


def test_add_skips_complete_and_queued_unless_rerun(store: Store) -> None:
    done, queued, new = make_job("echo done"), make_job("echo queued"), make_job("echo new")

    async def main() -> None:
        await store.add_jobs([done, queued])
        await store.archive([finished(done, 10, 20)])
        again = [make_job("echo done", rep_grp="second"), make_job("echo queued"), new,
                 make_job("echo new", rep_grp="twice")]
        result = await store.add_jobs(again, live_keys=frozenset({queued.key}))
        assert result.skipped_complete == [done.key]
        assert [j.key for j in result.stored] == [new.key]  # a repeated key is stored once
        assert await store.complete_in_rep_grp("second") == []

        rerun = [make_job("echo done", rep_grp="second"),
                 make_job("echo queued", rep_grp="third")]
        result = await store.add_jobs(rerun, rerun=True, live_keys=frozenset({queued.key}))
        assert result.skipped_complete == []
        assert [j.key for j in result.stored] == [done.key]
        live = {j.key: j for j in await store.live_jobs()}
        assert set(live) == {done.key, queued.key, new.key}
        assert live[done.key].rep_grp == "second"
        assert live[queued.key].rep_grp == "manually_added"  # never overwritten
        # the rerun's rep groups became extra lookup names, the queued job's included
        assert await store.rep_grps("") == ["manually_added", "second", "third", "twice"]
        assert [j.key for j in await store.complete_in_rep_grp("second")] == [done.key]

    asyncio.run(main())


def test_live_dependencies_resurrect_a_chain(store: Store) -> None:
    a = make_job("make a", dep_grps=["a"])
    b = make_job("make b", dep_grps=["b"], deps=["a"])
    c = make_job("make c", deps=["b"])
    other = make_job("make other", deps=["unrelated"])

    async def main() -> None:
        await store.add_jobs([a, b, c, other])
        await store.archive([finished(a, 1, 2), finished(b, 3, 4), finished(c, 5, 6),
                             finished(other, 7, 8)])
        a2 = make_job("make a again", dep_grps=["a"])
        result = await store.add_jobs([a2])
        assert result.stored == [a2]
        assert [j.key for j in result.resurrected] == [b.key, c.key]
        assert result.resurrected[0].state is State.COMPLETE  # as stored: caller resets it
        assert {j.key for j in await store.live_jobs()} == {a2.key, b.key, c.key}
        assert [j.key for j in await store.complete_jobs([a.key, b.key, c.key, other.key])] \
            == [a.key, other.key]
        assert await store.complete_counts() == {"manually_added": 2}

    asyncio.run(main())


def test_resurrection_skips_queued_and_stale_dependants(store: Store) -> None:
    b = make_job("make b", dep_grps=["b"], deps=["a"])
    c = make_job("make c", deps=["b"])
    d = make_job("make d", deps=["a"])

    async def main() -> None:
        await store.add_jobs([b, c, d])
        await store.archive([finished(b, 1, 2), finished(c, 3, 4)])
        # d was modified to depend on nothing: its dep_waiters row is stale
        d_mod = make_job("make d", deps=[])
        await store.rekey(d.key, d_mod)
        await store.archive([finished(d_mod, 5, 6)])
        result = await store.add_jobs([make_job("make a", dep_grps=["a"])],
                                      live_keys=frozenset({c.key}))
        assert [j.key for j in result.resurrected] == [b.key]

    asyncio.run(main())


# -- state changes and history --------------------------------------------------------------

def test_save_snapshots_at_call_time(store: Store) -> None:
    job = make_job("sleep 1")

    async def main() -> None:
        await store.add_jobs([job])
        job.state = State.RUNNING
        job.pid = 42
        pending = store.save([job])
        job.state = State.BURIED  # after the call: must not reach the db
        await pending
        (stored,) = await store.live_jobs()
        assert (stored.state, stored.pid) == (State.RUNNING, 42)

    asyncio.run(main())


def test_a_late_save_does_not_bring_a_job_back(store: Store) -> None:
    done, gone, never = make_job("echo done"), make_job("echo gone"), make_job("echo never")

    async def main() -> None:
        await store.add_jobs([done, gone])
        archiving = store.archive([finished(done, 1, 2)])
        store.delete([gone.key])
        await store.save([done, gone, never])
        await archiving
        assert await store.live_jobs() == []
        assert len(await store.complete_jobs([done.key])) == 1

    asyncio.run(main())


def test_archive_moves_to_history(store: Store) -> None:
    job = make_job("blastn x", rep_grp="r")

    async def main() -> None:
        await store.add_jobs([job])
        await store.save_std(job.key, "out", "err")
        await store.save_std(job.key, "out2", "err2")  # replaces
        assert await store.std([job.key, "nope"]) == {job.key: ("out2", "err2")}
        await store.archive([finished(job, 100.0, 102.2, peak_ram=55, peak_disk=7)])
        assert await store.live_jobs() == []
        assert await store.std([job.key]) == {}
        (done,) = await store.complete_jobs([job.key])
        assert done.state is State.COMPLETE and done.peak_ram == 55
        assert await store.complete_counts(["r", "other"]) == {"r": 1}
        assert await store.samples() == {("blastn", "ram"): [55], ("blastn", "disk"): [7],
                                         ("blastn", "time"): [3]}

    asyncio.run(main())


def test_complete_in_rep_grp_orders_and_finds_every_rep_grp(store: Store) -> None:
    j1, j2, j3 = (make_job(f"echo {i}", rep_grp="exp1") for i in range(3))

    async def main() -> None:
        await store.add_jobs([j1, j2, j3])
        await store.add_jobs([make_job("echo 0", rep_grp="exp2")], rerun=True,
                             live_keys=frozenset({j1.key}))
        await store.archive([finished(j1, 30, 31), finished(j2, 10, 50), finished(j3, 10, 20)])
        found = await store.complete_in_rep_grp("exp1")
        assert [j.key for j in found] == [j3.key, j2.key, j1.key]
        (again,) = await store.complete_in_rep_grp("exp2")
        assert again.key == j1.key and again.rep_grp == "exp2"
        assert [j.key for j in await store.complete_in_rep_grp("exp1", exclude=[j2.key])] \
            == [j3.key, j1.key]
        assert await store.rep_grps("exp") == ["exp1", "exp2"]
        assert await store.rep_grps("2") == ["exp2"]
        assert await store.rep_grps("EXP") == []

    asyncio.run(main())


def test_rekey_moves_record_and_std(store: Store) -> None:
    old = make_job("echo old", rep_grp="r")
    new = make_job("echo new", rep_grp="r2", deps=["g"])

    async def main() -> None:
        await store.add_jobs([old])
        await store.save_std(old.key, "o", "e")
        await store.rekey(old.key, new)
        assert [j.key for j in await store.live_jobs()] == [new.key]
        assert await store.std([old.key, new.key]) == {new.key: ("o", "e")}
        assert await store.rep_grps("r") == ["r", "r2"]

    asyncio.run(main())


def test_delete_removes_live_and_std(store: Store) -> None:
    keep, gone = make_job("echo keep"), make_job("echo gone")

    async def main() -> None:
        await store.add_jobs([keep, gone])
        await store.save_std(gone.key, "o", "e")
        await store.delete([gone.key])
        assert [j.key for j in await store.live_jobs()] == [keep.key]
        assert await store.std([gone.key]) == {}

    asyncio.run(main())


def test_limits(store: Store) -> None:
    async def main() -> None:
        await store.set_limit("irods", 5)
        await store.set_limit("disk", 2)
        await store.set_limit("irods", 3)
        assert await store.limits() == {"disk": 2, "irods": 3}
        await store.set_limit("disk", None)
        assert await store.limits() == {"irods": 3}

    asyncio.run(main())


# -- the writer -----------------------------------------------------------------------------

def test_group_commit(store: Store) -> None:
    jobs = [make_job(f"echo {i}") for i in range(5000)]

    async def main() -> None:
        await store.add_jobs(jobs)
        before = store.commits
        futures = []
        for job in jobs:
            job.state = State.RUNNING
            futures.append(store.save([job]))  # 5,000 writes in one loop iteration
        await asyncio.gather(*futures)
        assert store.commits - before == 1
        assert {j.state for j in await store.live_jobs()} == {State.RUNNING}

    asyncio.run(main())


def test_reads_see_earlier_writes_without_awaiting_them(store: Store) -> None:
    async def main() -> None:
        store.add_jobs([make_job("echo 1")])
        assert len(await store.live_jobs()) == 1

    asyncio.run(main())


def test_an_empty_write_waits_for_earlier_writes(store: Store) -> None:
    async def main() -> None:
        assert await store.save([]) is None  # nothing pending: at once
        store.set_limit("a", 1)
        await store.save([])
        assert store.commits == 1
        assert await store.delete([]) is None and await store.archive([]) is None

    asyncio.run(main())


def test_failed_commit_fails_the_batch_and_the_store_recovers(store: Store) -> None:
    def cap(pages: int):
        return lambda conn: conn.execute(f"PRAGMA max_page_count={pages}")

    async def main() -> None:
        await store.add_jobs([make_job("echo first")])
        await store._submit(cap(1))  # nothing more fits: SQLITE_FULL, as a full disk gives
        big = [make_job(f"echo {i}", env=["X=" + "y" * 2000]) for i in range(50)]
        adding = store.add_jobs(big)
        limit = store.set_limit("l", 1)
        for future in (adding, limit):
            with pytest.raises(StorageUnavailable, match="database or disk is full"):
                await future
        assert len(await store.live_jobs()) == 1  # nothing of the batch was kept
        await store._submit(cap(1 << 30))  # space returns
        assert len((await store.add_jobs(big)).stored) == 50
        await store.set_limit("l", 1)
        assert len(await store.live_jobs()) == 51

    asyncio.run(main())


def test_a_write_failing_on_its_own_does_not_sink_its_batch(store: Store) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO limits VALUES ('half-done', 1)")
        raise KeyError("bug")

    async def main() -> None:
        good = store.set_limit("a", 1)
        bad = store._submit(broken)
        also_good = store.set_limit("b", 2)
        await good
        await also_good
        with pytest.raises(WrError, match="bug"):
            await bad
        assert await store.limits() == {"a": 1, "b": 2}
        assert store.commits == 1

    asyncio.run(main())


def test_writes_after_close_are_refused(db: Path) -> None:
    store = Store(db)
    store.open()
    store.close()

    async def main() -> None:
        with pytest.raises(StorageUnavailable, match="not open"):
            await store.set_limit("a", 1)
        with pytest.raises(StorageUnavailable, match="not open"):
            await store.limits()

    asyncio.run(main())


def test_close_commits_pending_writes(db: Path) -> None:
    store = Store(db)
    store.open()

    async def main() -> None:
        store.add_jobs([make_job("echo 1")])  # submitted, never awaited
        store.close()

    asyncio.run(main())
    store = Store(db)
    store.open()
    try:
        assert len(asyncio.run(store.live_jobs())) == 1
    finally:
        store.close()


# -- backups and recovery -------------------------------------------------------------------

def test_backup_to_writes_a_consistent_copy(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "copy.db"

    async def main() -> None:
        store.add_jobs([make_job(f"echo {i}") for i in range(100)])  # not awaited: included
        await store.backup_to(target)

    asyncio.run(main())
    assert mode(target) == 0o600
    assert not target.with_name("copy.db.tmp").exists()
    copy = Store(target)
    assert copy.open() == []
    try:
        assert len(asyncio.run(copy.live_jobs())) == 100
    finally:
        copy.close()


def test_automatic_backups_follow_writes(tmp_path: Path) -> None:
    db, bk = tmp_path / "db", tmp_path / "db_bk"
    store = Store(db, bk, backup_interval=3600)
    store.open()
    try:
        add(store, [make_job("echo 1")])
        deadline = time.monotonic() + 10
        while store.backups < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.backups == 1 and mode(bk) == 0o600
        add(store, [make_job("echo 2")])  # within the interval: deferred
        # No event to wait for: a backup must not happen. Give a wrongly immediate one
        # time to show (this db's backup takes milliseconds).
        time.sleep(0.1)
        assert store.backups == 1
    finally:
        store.close()  # ... until close takes the final backup
    assert store.backups == 2
    copy = Store(bk)
    copy.open()
    try:
        assert len(asyncio.run(copy.live_jobs())) == 2
    finally:
        copy.close()


def _db_with_backup(tmp_path: Path) -> tuple[Path, Path]:
    db, bk = tmp_path / "db", tmp_path / "db_bk"
    store = Store(db, bk)
    store.open()
    add(store, [make_job("echo saved")])
    store.close()
    assert bk.exists()
    return db, bk


def test_open_recreates_a_missing_db_from_backup(tmp_path: Path) -> None:
    db, bk = _db_with_backup(tmp_path)
    db.unlink()
    store = Store(db, bk)
    assert store.open() == [f"recreated missing db file {db} from backup file {bk}"]
    try:
        assert [j.cmd for j in asyncio.run(store.live_jobs())] == ["echo saved"]
        assert mode(db) == 0o600
    finally:
        store.close()


def _garbage(data: bytes) -> bytes:
    return b"this is not a database" * 100


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _scribbled(data: bytes) -> bytes:
    return data[:8192] + bytes(range(256)) * 16 + data[12288:]  # page 3 overwritten


@pytest.mark.parametrize("damage", [_garbage, _truncated, _scribbled])
def test_open_replaces_a_corrupt_db_from_backup(tmp_path: Path, damage) -> None:
    db, bk = _db_with_backup(tmp_path)
    db.write_bytes(damage(db.read_bytes()))
    store = Store(db, bk)
    (message,) = store.open()
    try:
        assert message.startswith(f"recreated corrupt db file {db} from backup file {bk} "
                                  "(error with original db file was: ")
        assert "\n" not in message
        assert [j.cmd for j in asyncio.run(store.live_jobs())] == ["echo saved"]
        assert (tmp_path / "db.corrupt").exists()  # kept for inspection
    finally:
        store.close()


def test_open_fails_on_a_corrupt_db_without_backup(db: Path) -> None:
    db.write_bytes(b"garbage" * 1000)
    with pytest.raises(StorageUnavailable, match="corrupt"):
        Store(db).open()
    assert db.read_bytes() == b"garbage" * 1000  # left alone


def test_open_refuses_a_newer_schema(db: Path) -> None:
    store = Store(db)
    store.open()
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = 99 WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageUnavailable, match="newer"):
        Store(db).open()
    assert not os.path.exists(f"{db}.corrupt")


def test_a_failed_commit_keeps_changes_already_made_and_stores_them_later(db: Path) -> None:
    """Issue 6: a full disk fails every future of its batch (nobody is told a write is
    stored when it is not); the add is forgotten, as its caller queued nothing, but a state
    change (already made in memory) is kept, retried ahead of newer writes and stored by
    itself once space returns; `durable` fails until then."""
    full = True

    def disk(conn: sqlite3.Connection) -> None:  # stands in for a disk that is full
        if full:
            raise sqlite3.OperationalError("database or disk is full")

    store = Store(db)
    store.open()
    running = make_job("echo running")

    async def main() -> None:
        nonlocal full
        await store.add_jobs([running])
        running.state = State.RUNNING
        writes = [store._submit(disk), store.add_jobs([make_job("echo new")]),
                  store.save([running]), store.set_limit("l", 3)]
        for future in writes:
            with pytest.raises(StorageUnavailable, match="database or disk is full"):
                await future
        with pytest.raises(StorageUnavailable):
            await store.durable()
        [live] = await store.live_jobs()
        assert live.state == State.READY and await store.limits() == {}
        full = False
        deadline = time.monotonic() + 10
        while not (await store.limits()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # no new write: the store retries by itself
        await store.durable()
        [live] = await store.live_jobs()
        assert live.state == State.RUNNING and await store.limits() == {"l": 3}

    asyncio.run(main())
    store.close()


def test_close_gives_up_on_changes_it_cannot_store(db: Path) -> None:
    def disk(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    store = Store(db)
    store.open()

    async def main() -> None:
        with pytest.raises(StorageUnavailable):
            await store._submit(disk)

    asyncio.run(main())
    started = time.monotonic()
    store.close()  # one last try, then it stops instead of retrying forever
    assert time.monotonic() - started < 5


def test_a_completed_job_is_found_by_its_rep_group_and_the_one_it_had_before_a_mod(
        store: Store) -> None:
    plain, moved = make_job("echo plain", rep_grp="a"), make_job("echo moved", rep_grp="a")

    async def main() -> None:
        await store.add_jobs([plain, moved])
        assert await store.complete_in_rep_grp("a") == []
        moved.rep_grp = "b"  # as wr mod -i a --rep_grp b would leave it
        await store.rekey(moved.key, moved, old_rep_grp="a")
        await store.archive([finished(plain, 1, 2), finished(moved, 3, 4)])
        assert [j.key for j in await store.complete_in_rep_grp("a")] == [plain.key, moved.key]
        assert [j.key for j in await store.complete_in_rep_grp("b")] == [moved.key]
        assert await store.rep_grps("") == ["a", "b"]

    asyncio.run(main())


def test_a_rerun_completed_under_another_rep_group_is_found_and_counted_under_both(
        store: Store) -> None:
    job = make_job("echo twice", rep_grp="first")

    async def main() -> None:
        await store.add_jobs([job])
        await store.archive([finished(job, 10, 20, peak_ram=100, peak_disk=4)])
        again = make_job("echo twice", rep_grp="second")
        result = await store.add_jobs([again], rerun=True)
        assert result.stored == [again]
        # while it runs again, both names find its earlier completion
        for name in ("first", "second"):
            assert [j.key for j in await store.complete_in_rep_grp(name)] == [job.key]
        await store.archive([finished(again, 30, 45, peak_ram=300, peak_disk=6)])
        for name in ("first", "second"):
            [found] = await store.complete_in_rep_grp(name)
            assert (found.key, found.started, found.peak_ram) == (job.key, 30, 300)
            figures = await store.complete_figures(name)
            assert (figures["n"], figures["ram_mean"], figures["disk_mean"],
                    figures["wall_mean"]) == (1, 300.0, 6.0, 15.0)
        assert (await store.complete_figures("second", exclude=[job.key]))["n"] == 0

    asyncio.run(main())


@pytest.mark.parametrize("tag", ["j1", "j2"])
def test_a_first_layout_db_is_migrated_and_its_history_still_summarised(db: Path, tag: str
                                                                       ) -> None:
    # A database as the first schema wrote it: peak disk only inside the records (layout
    # j1, or j2), a lookup row for every job's own rep group, and the old index.
    from wr.job_fields import J2_NAMES, V1_NAMES

    names = {"j1": V1_NAMES, "j2": J2_NAMES}[tag]

    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE meta(name TEXT PRIMARY KEY, value) WITHOUT ROWID;
        INSERT INTO meta VALUES ('schema_version', 1);
        CREATE TABLE complete(key TEXT PRIMARY KEY, rep_grp TEXT, req_grp TEXT,
            started REAL, ended REAL, exitcode INTEGER, peak_ram INTEGER, cpu_time REAL,
            data BLOB NOT NULL);
        CREATE INDEX complete_rep_grp ON complete(rep_grp, started, ended);
        CREATE TABLE rep_grp_keys(rep_grp TEXT, key TEXT, PRIMARY KEY(rep_grp, key))
            WITHOUT ROWID;
    """)
    for i, disk in enumerate((3, 5)):
        values = {"key": f"k{i}", "cmd": f"echo {i}", "rep_grp": "old", "state": "complete",
                  "peak_disk": disk, "peak_ram": 10, "started": 1.0, "ended": 2.0}
        record = [tag, *(values.get(name, getattr(Job("k", "c"), name)) for name in names)]
        conn.execute("INSERT INTO complete VALUES (?, 'old', 'echo', 1, 2, 0, 10, 0, ?)",
                     (f"k{i}", orjson.dumps(record)))
        conn.execute("INSERT INTO rep_grp_keys VALUES ('old', ?)", (f"k{i}",))
    conn.execute("INSERT INTO rep_grp_keys VALUES ('extra', 'k1')")  # a rerun's other name
    conn.commit()
    conn.close()

    store = Store(db)
    assert store.open() == ["migrated the db from schema version 1 to 2"]
    try:
        async def main() -> None:
            figures = await store.complete_figures("old")
            assert (figures["n"], figures["disk_mean"], figures["ram_mean"]) == (2, 4.0, 10.0)
            assert [j.key for j in await store.complete_in_rep_grp("extra")] == ["k1"]
        asyncio.run(main())
    finally:
        store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta").fetchone() == (2,)
    assert conn.execute("SELECT rep_grp, key FROM rep_grp_keys").fetchall() == [("extra", "k1")]
    assert conn.execute("SELECT peak_disk FROM complete ORDER BY key").fetchall() == [(3,), (5,)]
    conn.close()
