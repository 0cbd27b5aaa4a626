"""The web page's live overview, driven with a real queue and event hub and a fake store.

The overview recounts the rep groups the events name; these tests check that what a page
ends up with matches the queue, however the events arrive (bursts, gaps, a closing hub).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from wr.jobs import Job, State
from wr.manager import web_live
from wr.manager.events import EventHub
from wr.manager.web_live import STATES, Overview, _Client
from wr.queue import Changed, EndReport, Queue


class FakeStore:
    def __init__(self) -> None:
        self.complete: Counter[str] = Counter()
        self.reads = 0

    async def complete_counts(self, names: list[str]) -> dict[str, int]:
        self.reads += 1
        return {n: self.complete[n] for n in names if self.complete[n]}

    async def recent_rep_grps(self, since: float, limit: int) -> list[tuple[str, float]]:
        return [("old", 1000.0)] if self.complete["old"] else []


class FakeManager:
    def __init__(self, hub: EventHub) -> None:
        self.queue = Queue(ttr=60, rng=random.Random(1))
        self.events = hub
        self.store = FakeStore()
        self.page_warnings: dict[str, Any] = {}
        self.mode = "started"

    def info(self) -> dict[str, Any]:
        return {"Host": "h", "WebPort": "1", "Deployment": "test", "Scheduler": "local",
                "Mode": self.mode, "PID": 1}

    def publish(self) -> None:
        """What Manager._persist does once the changes are stored."""
        out = []
        for ev in self.queue.drain():
            if isinstance(ev, Changed):
                if ev.new == State.COMPLETE:
                    self.store.complete[ev.job.rep_grp] += 1
                out.append((ev.job.key, ev.job.rep_grp, ev.old and str(ev.old), str(ev.new),
                            0, "", 0.0))
        self.events.publish(out)


class FakeSocket:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        import orjson

        self.messages.append(orjson.loads(text))

    async def close(self, code: int = 1000) -> None:
        self.closed = code


def view(messages: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """What a page shows after these messages."""
    groups: dict[str, Any] = {}
    for msg in messages:
        if msg["t"] == "snapshot":
            groups = dict(msg["groups"])
        elif msg["t"] == "update":
            for name, row in msg["groups"].items():
                if row is None:
                    groups.pop(name, None)
                else:
                    groups[name] = row
    return {n: {s: c for s, c in zip(STATES, row[:7], strict=True) if c}
            for n, row in groups.items()}


def truth(m: FakeManager) -> dict[str, dict[str, int]]:
    out: dict[str, Counter[str]] = {}
    for job in m.queue.jobs.values():
        state = "running" if job.state == State.RESERVED else str(job.state)
        out.setdefault(job.rep_grp, Counter())[state] += 1
    for name, n in m.store.complete.items():
        if n:
            out.setdefault(name, Counter())["complete"] += n
    return {n: dict(c) for n, c in out.items()}


def jobs(group: str, n: int, tag: str = "") -> list[Job]:
    return [Job(key=f"{group}-{tag}{i}", cmd=f"echo {i}", rep_grp=group, until_buried=1)
            for i in range(n)]


async def settle(ws: FakeSocket, m: FakeManager, timeout: float = 5.0) -> None:
    """Wait until the page's view matches the queue."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ws.messages or view(ws.messages) != truth(m):
        if loop.time() > deadline:
            raise AssertionError(f"page shows {view(ws.messages)}, queue has {truth(m)}")
        await asyncio.sleep(0.02)


def start(m: FakeManager) -> tuple[Overview, FakeSocket, asyncio.Task[None]]:
    overview = Overview(m)  # type: ignore[arg-type]
    ws = FakeSocket()
    client = _Client(ws)  # type: ignore[arg-type]
    overview.join(client)
    return overview, ws, asyncio.ensure_future(client.run(overview))


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_live, "MIN_INTERVAL", 0.05)


def run_all(m: FakeManager, now: float) -> None:
    """Every ready job runs and completes."""
    q = m.queue
    for group in list(q.ready_by_group):
        while (job := q.reserve(group, "r", now)) is not None:
            q.start(job.key, "r", pid=1, host="h", host_ip="", now=now)
            q.end(job.key, "r", EndReport("archive", ended=now), now)


def test_snapshot_then_updates_match_the_queue() -> None:
    async def scenario() -> None:
        m = FakeManager(EventHub())
        m.store.complete["old"] = 4
        m.queue.add(jobs("a", 3), 1.0)
        m.publish()
        overview, ws, task = start(m)
        await settle(ws, m)
        assert ws.messages[0]["t"] == "snapshot"
        assert view(ws.messages)["old"] == {"complete": 4}  # finished in the last day
        m.queue.add(jobs("b", 5), 2.0)
        m.publish()
        await settle(ws, m)
        run_all(m, 3.0)
        m.publish()
        await settle(ws, m)
        assert view(ws.messages)["b"] == {"complete": 5}
        overview.stop()
        await task
        assert ws.closed == 1012

    asyncio.run(scenario())


def test_bursts_are_coalesced() -> None:
    """2,000 jobs going through 4 states each, published in 200 steps 5 ms apart, reach a
    page in far fewer messages than events, and the page ends right."""

    async def scenario() -> None:
        m = FakeManager(EventHub())
        overview, ws, task = start(m)
        await settle(ws, m)
        for step in range(200):
            m.queue.add(jobs(f"g{step % 7}", 10, f"s{step}") if step < 100 else [],
                        float(step))
            if step >= 100:
                run_all(m, float(step))
            m.publish()
            await asyncio.sleep(0.005)  # the pace of the burst is what the test is about
        await settle(ws, m)
        assert m.events.last_id >= 3000  # 1,000 jobs: added, reserved, running, done
        assert len(ws.messages) < 60
        overview.stop()
        await task

    asyncio.run(scenario())


def test_a_gap_in_the_events_means_a_fresh_snapshot() -> None:
    """More events at once than a subscriber's buffer: the page gets a new snapshot that
    matches the queue."""

    async def scenario() -> None:
        m = FakeManager(EventHub(queue_size=50))
        overview, ws, task = start(m)
        await settle(ws, m)
        m.queue.add(jobs("big", 500), 1.0)
        m.publish()
        for _ in range(250):
            if sum(1 for msg in ws.messages if msg["t"] == "snapshot") == 2:
                break
            await asyncio.sleep(0.02)
        assert sum(1 for msg in ws.messages if msg["t"] == "snapshot") == 2
        await settle(ws, m)
        overview.stop()
        await task

    asyncio.run(scenario())


def test_a_closing_hub_closes_the_pages() -> None:
    async def scenario() -> None:
        m = FakeManager(EventHub())
        overview, ws, task = start(m)
        await settle(ws, m)
        m.mode = "stopping"  # as Manager.shutdown does before closing the hub
        m.events.close()
        await asyncio.wait_for(task, 5)
        assert ws.closed == 1012
        assert overview._tasks == []

    asyncio.run(scenario())


def test_warnings_and_mode_changes_are_pushed() -> None:
    from wr.manager.core import Warning_

    async def scenario() -> None:
        m = FakeManager(EventHub())
        overview, ws, task = start(m)
        await settle(ws, m)
        m.page_warnings["disk full"] = Warning_("disk full", 5.0, 6.0, 2)
        m.mode = "paused"
        overview.poke()
        for _ in range(100):
            if any("warnings" in msg for msg in ws.messages[1:]):
                break
            await asyncio.sleep(0.02)
        update = next(msg for msg in ws.messages[1:] if "warnings" in msg)
        assert update["warnings"] == [{"Msg": "disk full", "FirstDate": 5, "LastDate": 6,
                                       "Count": 2}]
        assert update["manager"]["Mode"] == "paused"
        overview.stop()
        await task

    asyncio.run(scenario())
