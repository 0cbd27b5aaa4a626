"""The Manager on its own (issue 14): every change goes through one awaited method that
returns only once the change is stored.

A real `Manager` with a real `Store` (SQLite in a temporary directory); after each call the
test reads the database afresh, so what it sees is what a restart would see. The scheduler
is a stand-in that records what it is asked for (a real one would start runner processes;
their part is tested in tests/integration), and runners are links whose ``send`` records
what the manager pushes to them: the manager is driven the way its handlers drive it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from wr.config import load_config
from wr.jobs import Job, State
from wr.manager.core import Manager
from wr.manager.runners import Ending, RunnerLink
from wr.queue import EndReport
from wr.schedulers.base import GroupRequirements, RunnerCommand, Scheduler
from wr.store import Store


class Recorder(Scheduler):
    """A scheduler that starts no runner and remembers what it was asked for."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.wants: dict[str, int] = {}

    def check(self, req: GroupRequirements) -> None:
        return None

    def want(self, group: str, req: GroupRequirements, count: int, priority: int,
             command: RunnerCommand) -> None:
        self.wants[group] = count

    def runners(self, group: str | None = None) -> int:
        return 0

    async def process_gone(self, pid: int, host: str) -> bool:
        return False

    async def shutdown(self, grace: float) -> None:
        return None


def run(tmp_path: Path, body: Callable[[Manager], Awaitable[Any]]) -> Any:
    """Run ``body`` with a fresh manager over a fresh database, then close it all."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = load_config(environ={"WR_TTR": "60", "WR_RETRYDELAYMIN": "0",
                                  "WR_RETRYDELAYMAX": "0"}, home=home, cwd=home, uid=1000)

    async def main() -> Any:
        store = Store(tmp_path / "db")
        store.open()
        manager = Manager(config, store=store, scheduler=Recorder())
        try:
            return await body(manager)
        finally:
            store.close()

    return asyncio.run(main())


def jobs(*cmds: str, **fields: Any) -> list[Job]:
    from wr.jobs import compute_key

    return [Job(key=compute_key(cmd), cmd=cmd, **fields) for cmd in cmds]


async def stored(manager: Manager) -> dict[str, Job]:
    """What the database holds of the queued jobs, read afresh."""
    return {job.key: job for job in await manager.store.live_jobs()}


async def connected(manager: Manager, runner: str, group: str = "") -> list[dict[str, Any]]:
    pushed: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        pushed.append(msg)

    manager.connect_runner(RunnerLink(runner, group, send))
    return pushed


async def running(manager: Manager, runner: str = "r1") -> Job:
    [job] = (await manager.add_parts([jobs("sleep 10")])).queued
    [reserved] = await manager.reserve(job.sched_group, runner, 0)
    await manager.started(reserved.key, runner, pid=7, host="h", host_ip="")
    return reserved


def test_an_add_is_stored_before_it_returns(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        added = await m.add_parts([jobs("echo a", "echo b"), jobs("echo c")])
        assert [j.cmd for j in added.queued] == ["echo a", "echo b", "echo c"]
        assert {j.cmd: j.state for j in (await stored(m)).values()} == {
            "echo a": State.READY, "echo b": State.READY, "echo c": State.READY}
        await asyncio.sleep(0)  # scheduling is asked for on the next turn of the loop
        assert sum(m.scheduler.wants.values()) == 3

    run(tmp_path, body)


def test_a_reservation_is_stored_before_the_runner_hears_of_it(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        [job] = (await m.add_parts([jobs("echo a")])).queued
        await connected(m, "r1", job.sched_group)
        [got] = await m.reserve(job.sched_group, "r1", 0)
        assert (await stored(m))[got.key].state == State.RESERVED
        assert (await stored(m))[got.key].reserved_by == "r1"
        assert await m.reserve(job.sched_group, "r2", 0) == []

    run(tmp_path, body)


def test_an_end_with_its_start_completes_the_job_in_one_store(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        [job] = (await m.add_parts([jobs("true")])).queued
        [got] = await m.reserve(job.sched_group, "r1", 0)
        start = {"pid": 9, "host": "h", "ip": "", "at": 1.0}
        nxt, refused = await m.ended("r1", [Ending(got.key, EndReport("archive"), start=start)])
        assert (nxt, refused) == ([], {})
        assert got.key not in await stored(m)
        [done] = await m.store.complete_jobs([got.key])
        assert (done.state, done.attempts, done.pid) == (State.COMPLETE, 1, 9)

    run(tmp_path, body)


def test_a_late_report_from_a_superseded_runner_is_refused(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        job = await running(m, "r1")
        await m.kill([job.key])
        await m.ended("r1", [Ending(job.key, EndReport("bury", fail_reason="killed"))])
        await m.kick([job.key])
        [again] = await m.reserve(job.sched_group, "r2", 0)
        assert again.key == job.key
        from wr.queue import QueueError

        with pytest.raises(QueueError):  # r1's report of the old attempt, arriving late
            await m.ended("r1", [Ending(job.key, EndReport("archive"))])
        assert (await stored(m))[job.key].reserved_by == "r2"

    run(tmp_path, body)


def test_kill_tells_the_runner_once_the_kill_is_stored(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        [job] = (await m.add_parts([jobs("sleep 10")])).queued
        pushed = await connected(m, "r1", job.sched_group)
        await m.reserve(job.sched_group, "r1", 0)
        await m.started(job.key, "r1", pid=7, host="h", host_ip="")
        killed = await m.kill([job.key])
        assert [j.key for j in killed] == [job.key]
        assert (await stored(m))[job.key].kill_called
        await asyncio.sleep(0)
        assert {"op": "kill", "key": job.key} in pushed
        assert await m.touch(job.key, "r1") is True  # and its keep-alive says so too

    run(tmp_path, body)


def test_delete_and_kick_are_stored_before_they_return(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        a, b = (await m.add_parts([jobs("echo a", "echo b", retries=0)])).queued
        [got] = await m.reserve(a.sched_group, "r1", 0)
        first = got.key
        await m.started(first, "r1", pid=1, host="h", host_ip="")
        await m.ended("r1", [Ending(first, EndReport("release", exitcode=1,
                                                     fail_reason="command exited non-zero"))])
        assert (await stored(m))[first].state == State.BURIED
        assert [j.key for j in await m.kick([first])] == [first]
        assert (await stored(m))[first].state == State.READY
        other = b.key if first == a.key else a.key
        assert [j.key for j in await m.delete([other])] == [other]
        assert other not in await stored(m)

    run(tmp_path, body)


def test_limits_and_modifications_are_stored_before_they_return(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        assert await m.set_limit("g", 2) == 2
        assert await m.store.limits() == {"g": 2}
        assert await m.set_limit("g", None) == -1
        assert await m.store.limits() == {}
        [job] = (await m.add_parts([jobs("echo a")])).queued
        mapping = await m.modify([job], {"cmd": "echo b"})
        [new_key] = mapping.values()
        assert list(mapping) == [job.key] and new_key != job.key
        held = await stored(m)
        assert job.key not in held and held[new_key].cmd == "echo b"

    run(tmp_path, body)


def test_a_touch_of_a_lost_job_stores_it_running_again(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        job = await running(m)
        m.queue.tick(job.started + 61)  # (the manager's clock would: ttr passed)
        await m._persist()
        assert (await stored(m))[job.key].state == State.LOST
        assert await m.touch(job.key, "r1") is False
        assert (await stored(m))[job.key].state == State.RUNNING

    run(tmp_path, body)


def test_a_runner_gives_back_what_it_will_not_start(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        a, b = (await m.add_parts([jobs("echo a", "echo b")])).queued
        await connected(m, "r1", a.sched_group)
        got = await m.reserve(a.sched_group, "r1", 0, many=2)
        assert len(got) == 2
        assert await m.release(got[0].key, "r1") is True
        assert await m.release(got[0].key, "r1") is False  # not its own any more
        assert (await stored(m))[got[0].key].state == State.READY
        released = await m.runner_bye("r1")  # holds nothing else it has not reported
        assert [j.key for j in released] == [got[1].key]
        assert (await stored(m))[got[1].key].state == State.READY

    run(tmp_path, body)


def test_a_reconnected_runner_takes_over_what_it_held(tmp_path: Path) -> None:
    async def body(m: Manager) -> None:
        [job] = (await m.add_parts([jobs("echo a")])).queued
        await connected(m, "r1", job.sched_group)
        old = m.runner_links["r1"]
        await m.reserve(job.sched_group, "r1", 0)
        await connected(m, "r1", job.sched_group)  # its keeper, or itself reconnecting
        m.disconnect_runner("r1", old)  # the old connection's close, heard late
        assert "r1" in m.runner_links and m.held_by("r1") == {job.key}
        m.disconnect_runner("r1", m.runner_links["r1"])
        await connected(m, "r1", job.sched_group)
        assert m.held_by("r1") == {job.key}

    run(tmp_path, body)
