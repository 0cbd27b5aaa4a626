"""Storage faults: a full disk, a missing or corrupt db, and backups under load.

Each test inflicts the fault for real: the manager's directory is a small tmpfs that the
test fills up, or its db file is deleted or overwritten before a start. The invariants are
DESIGN.md principle 3, "durable before acknowledged": a POST answered 201 is all there after
a restart, a POST answered 503 left nothing behind, no job runs twice, and the manager heals
by itself when space comes back.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import re
import signal
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ManagerHandle, _descendants_of_home, wait_for

pytestmark = pytest.mark.integration


def _api(m: ManagerHandle, timeout: float = 60) -> httpx.Client:
    return m.http(timeout=timeout)


def _stop_everything(m: ManagerHandle) -> None:
    if (m.dir / "pid").exists():
        m.stop()
    for pid in _descendants_of_home(m.home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def small_disk(make_manager: Any) -> Iterator[ManagerHandle]:
    """A manager (not yet started) whose whole directory is a 24 MiB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    m = make_manager()
    m.dir.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(m.dir)],
                   check=True)
    try:
        yield m
    finally:
        _stop_everything(m)
        done = subprocess.run(["umount", str(m.dir)], capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(m.dir)], check=False)


def _fill(directory: Path) -> Path:
    """Take every free byte of the filesystem holding ``directory``; return the filler."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        small = b"\0" * 4096
        while True:
            try:
                f.write(small)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def _empty_wal(db: Path) -> None:
    """Checkpoint the db and truncate its WAL, so that once the disk is full every commit
    needs space it cannot get (a WAL that still has room would take small commits)."""
    deadline = time.monotonic() + 10
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        while conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] != 0:
            assert time.monotonic() < deadline, "could not checkpoint the db"
            time.sleep(0.05)


def _batch(record: Path, tag: str, n: int) -> bytes:
    pad = "x" * 200  # bigger records reach a full disk sooner
    return orjson.dumps([{"cmd": f"sleep 1.5 && echo {tag}.{i} >> {record} # {pad}", "cpus": 0,
                          "memory": "20M"} for i in range(n)])


def test_a_full_disk_refuses_what_it_cannot_store_and_heals(small_disk: ManagerHandle,
                                                            tmp_path: Path) -> None:
    """Steps: on a 24 MiB tmpfs, add batches of jobs that append their name to a file and
    run at once; fill the disk and keep adding until the API answers 503; wait for the
    jobs that were running then to end; free the space; add one more batch; wait for every
    accepted job; restart the manager.
    Expected: the 503 says why; GETs keep working while the disk is full; after the space
    returns, adds succeed again without a restart; every batch answered 201 ends complete
    with each job run exactly once, and no job of a refused batch exists, before or after
    the restart."""
    m = small_disk
    m.start()
    record = tmp_path / "record"
    accepted: dict[str, int] = {}
    refused: list[str] = []
    reasons: set[str] = set()
    with _api(m) as api:
        def add(tag: str, n: int = 6) -> httpx.Response:
            r = api.post("/rest/v1/jobs/", content=_batch(record, tag, n),
                         params={"rep_grp": tag, "limit_grps": f"{tag}-lim:7"})
            if r.status_code == 201:
                assert len(r.json()) == n
                accepted[tag] = n
            else:
                assert r.status_code == 503, r.text
                reasons.add(r.text)
                refused.append(tag)
            return r

        for i in range(3):
            assert add(f"before{i}", 6).status_code == 201

        def running_keys() -> set[str]:
            """Jobs running (not just reserved: the "running" filter takes both)."""
            return {j["Key"] for j in api.get("/rest/v1/jobs/", params={"state": "running"})
                    .json() if j["State"] == "running"}

        running = wait_for(lambda: len(keys := running_keys()) >= 3 and keys,
                           what="jobs to run")
        _empty_wal(m.dir / "db")
        filler = _fill(m.dir)
        deadline = time.monotonic() + 60
        i = 0
        while len(refused) < 3 and time.monotonic() < deadline:
            add(f"full{i}")
            i += 1
            assert api.get("/rest/v1/jobs/", params={"limit": "1"}).status_code == 200
        assert len(refused) >= 3, f"no 503 after {i} adds to a full disk\n{m.log()}"
        assert all("disk is full" in r or "could not write" in r for r in reasons), reasons
        for tag in refused:
            got = api.get(f"/rest/v1/jobs/{tag}")
            assert (got.status_code, got.json()) == (200, []), tag
            # nor did its jobs' "name:N" limit settings take effect
            assert api.get(f"/rest/v1/limits/{tag}-lim").json()["limit"] == -1, tag
        assert api.get("/rest/v1/limits/before0-lim").json()["limit"] == 7
        # The jobs that were running when the disk filled end meanwhile; their ends cannot
        # be stored, so they are kept.
        wait_for(lambda: not running & running_keys(), timeout=60,
                 what="the jobs running when the disk filled to end")
        filler.unlink()
        assert wait_for(lambda: add("after").status_code == 201, timeout=30,
                        what="an add to succeed once space returned")

        def all_done() -> bool:
            return all(
                len(js := api.get(f"/rest/v1/jobs/{tag}").json()) == n
                and all(j["State"] == "complete" for j in js)
                for tag, n in accepted.items())

        wait_for(all_done, timeout=60, interval=0.5, what="every accepted job to complete")
    # The fault hit changes to running jobs too, not just adds: they were kept and stored.
    assert re.search(r"stored [1-9]\d* kept changes", m.log()), m.log()
    _check_record(record, accepted)
    m.stop()
    m.start()
    with _api(m) as api:
        for tag, n in accepted.items():
            js = api.get(f"/rest/v1/jobs/{tag}").json()
            assert len(js) == n and {j["State"] for j in js} == {"complete"}, tag
        for tag in refused:
            assert api.get(f"/rest/v1/jobs/{tag}").json() == [], tag
        assert api.get("/rest/v1/jobs/").json() == []
    _check_record(record, accepted)


def _check_record(record: Path, accepted: dict[str, int]) -> None:
    counts = collections.Counter(record.read_text().split())
    want = {f"{tag}.{i}" for tag, n in accepted.items() for i in range(n)}
    assert set(counts) == want
    assert [k for k, c in counts.items() if c != 1] == []



# -- a missing or corrupt db ----------------------------------------------------------------

def _held_jobs(m: ManagerHandle, n: int = 5) -> list[str]:
    """Add jobs that stay queued (a limit group of 0) and return their keys."""
    with _api(m) as api:
        body = orjson.dumps([{"cmd": f"echo held {i}", "limit_grps": ["hold:0"]}
                             for i in range(n)])
        r = api.post("/rest/v1/jobs/", content=body, params={"rep_grp": "held"})
        assert r.status_code == 201, r.text
        return sorted(j["Key"] for j in r.json())


def _keys_now(m: ManagerHandle) -> list[str]:
    with _api(m) as api:
        return sorted(j["Key"] for j in api.get("/rest/v1/jobs/held").json())


def _damage_missing(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            db.with_name(db.name + suffix).unlink()


def _damage_garbage(db: Path) -> None:
    _damage_missing(db)
    db.write_bytes(b"not a database, not at all " * 400)


def _damage_scribbled(db: Path) -> None:
    data = db.read_bytes()
    _damage_missing(db)
    db.write_bytes(data[:4096] + os.urandom(len(data) - 4096))


@pytest.mark.parametrize(("damage", "said"), [
    (_damage_missing, "recreated missing db file {db} from backup file {bk}"),
    (_damage_garbage, "recreated corrupt db file {db} from backup file {bk}"),
    (_damage_scribbled, "recreated corrupt db file {db} from backup file {bk}"),
], ids=["missing", "garbage", "scribbled"])
def test_a_start_without_a_usable_db_restores_the_backup(make_manager: Any, damage: Any,
                                                         said: str) -> None:
    """Steps: queue jobs; stop the manager (it takes a final backup to db_bk); delete the
    db or overwrite it; start again.
    Expected: the manager starts from db_bk with every job, says so in its log, and keeps a
    corrupt db as db.corrupt for inspection."""
    m = make_manager()
    m.start()
    keys = _held_jobs(m)
    assert m.stop().returncode == 0
    db, bk = m.dir / "db", m.dir / "db_bk"
    assert bk.exists()
    damage(db)
    m.start()
    assert _keys_now(m) == keys
    assert f'msg="{said.format(db=db, bk=bk)}' in m.log()
    assert (m.dir / "db.corrupt").exists() == ("corrupt" in said)
    assert _mode(db) == 0o600 and _mode(bk) == 0o600


def test_a_corrupt_db_without_a_backup_refuses_to_start(make_manager: Any) -> None:
    """Without a usable db_bk a corrupt db is left alone and the start fails, saying why,
    instead of starting empty and losing the queue silently."""
    m = make_manager()
    m.start()
    _held_jobs(m)
    assert m.stop().returncode == 0
    db = m.dir / "db"
    _damage_garbage(db)
    (m.dir / "db_bk").unlink()
    proc = m.wr("manager", "start")
    assert proc.returncode != 0
    assert "is corrupt" in m.log() and "cannot be recreated from a backup" in m.log()
    assert db.read_bytes().startswith(b"not a database")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- online backups under load --------------------------------------------------------------

def _large_history(db: Path, n: int) -> None:
    """A db with ``n`` completed jobs (about 3 KiB each), made through the store itself."""
    from wr.jobs import Job, State, compute_key
    from wr.store import Store

    async def fill() -> None:
        store = Store(db)
        store.open()
        try:
            pad = "p" * 3000
            for start in range(0, n, 20_000):
                jobs = []
                for i in range(start, min(n, start + 20_000)):
                    cmd = f"echo history {i} # {pad}"
                    jobs.append(Job(key=compute_key(cmd), cmd=cmd, rep_grp=f"h{i % 50}"))
                await store.add_jobs(jobs)
                for job in jobs:
                    job.state = State.COMPLETE
                    job.started, job.ended, job.exited = 1.0, 2.0, True
                await store.archive(jobs)
        finally:
            store.close()

    import asyncio

    asyncio.run(fill())


def test_online_backups_of_a_large_db_never_stall_the_api(make_manager: Any) -> None:
    """Steps: start a manager on a db holding 40,000 completed jobs (~150 MB); for 8 s,
    add one job at a time and ask for it back, so each commit asks for a backup (taken
    at most once a second); time every request.
    Expected: several backups complete meanwhile, each copying the whole db, and no request
    waits for one: the slowest answer is far quicker than a backup takes."""
    m = make_manager()
    m.dir.mkdir(mode=0o700)
    _large_history(m.dir / "db", 40_000)
    size = (m.dir / "db").stat().st_size
    m.start()
    bk = m.dir / "db_bk"
    latencies: list[float] = []
    backups: set[float] = set()
    with _api(m, timeout=30) as api:
        ends = time.monotonic() + 8
        i = 0
        while time.monotonic() < ends:
            body = orjson.dumps([{"cmd": f"echo probe {i}", "limit_grps": ["hold:0"]}])
            t0 = time.perf_counter()
            r = api.post("/rest/v1/jobs/", content=body, params={"rep_grp": "probe"})
            t1 = time.perf_counter()
            assert r.status_code == 201, r.text
            got = api.get(f"/rest/v1/jobs/{r.json()[0]['Key']}")
            t2 = time.perf_counter()
            assert got.status_code == 200 and len(got.json()) == 1
            latencies += [t1 - t0, t2 - t1]
            with contextlib.suppress(FileNotFoundError):
                backups.add(bk.stat().st_mtime)
            i += 1
    took = _time_one_backup(m.dir / "db")
    latencies.sort()
    worst = latencies[-1]
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"\nbackups of a {size / 1e6:.0f} MB db: {len(backups)} seen, one takes "
          f"{took * 1000:.0f} ms; {len(latencies)} requests meanwhile: p50 "
          f"{latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max "
          f"{worst * 1000:.1f} ms")
    assert len(backups) >= 3, "backups did not keep up with the writes"
    assert size > 100e6
    assert worst < max(0.25, took / 2), (worst, took)


def _time_one_backup(db: Path) -> float:
    """How long the store's stepwise backup of ``db`` takes when nothing else runs."""
    started = time.perf_counter()
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(db.with_name("timing.db"))
    try:
        src.backup(dst, pages=1024, sleep=0.01)
    finally:
        src.close()
        dst.close()
        db.with_name("timing.db").unlink()
    return time.perf_counter() - started
