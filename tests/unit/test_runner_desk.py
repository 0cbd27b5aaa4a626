"""The runner desk (wr.manager.runner_batches) and the runner endpoint in front of it
(wr.manager.runner_ws), driven in-process as the runner wire drives them (issue 16, part 5).

A real `Manager` over a real `Store` (SQLite in a temporary directory), as in
test_manager.py; a runner is a `RunnerLink` whose ``post`` records each answer, and the
database is read at the moment an answer is posted, with a separate SQLite connection: what
it sees then is what a crash at that moment would leave.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit.test_manager import jobs, run, running, stored
from wr.jobs import State
from wr.manager import runner_batches
from wr.manager.clock import BEAT
from wr.manager.core import Manager
from wr.manager.runner_batches import RunnerRequest
from wr.manager.runner_ws import RunnerEndpoint
from wr.manager.runners import RunnerLink
from wr.store_sql import read_live


def _db_states(db: Path) -> dict[str, str]:
    """The live jobs' states as committed now (a reader of its own, as after a crash)."""
    con = sqlite3.connect(db)
    try:
        return {job.key: job.state.value for job in read_live(con)}
    finally:
        con.close()


def _runner(m: Manager, runner: str, group: str,
            on_answer: Any = None) -> tuple[RunnerLink, list[dict[str, Any]]]:
    """A connected runner whose answers are recorded (``on_answer`` sees each as it is
    posted)."""
    answers: list[dict[str, Any]] = []

    def post(msg: dict[str, Any]) -> None:
        if on_answer is not None:
            on_answer(msg)
        answers.append(msg)

    async def send(msg: dict[str, Any]) -> None:
        post(msg)

    link = RunnerLink(runner, group, send, post=post)
    m.connect_runner(link)
    return link, answers


async def _until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def test_reservations_in_a_batch_are_stored_before_any_runner_hears_of_them(
        tmp_path: Path) -> None:
    """Steps: 40 runners each send a reserve at once through the endpoint.
    Expected: each gets one job; at the moment each answer is posted the database already
    holds that job reserved (a committed read by another connection)."""
    db = tmp_path / "db"

    async def body(m: Manager) -> None:
        added = (await m.add_parts([jobs(*(f"echo {i}" for i in range(40)))])).queued
        group = added[0].sched_group
        endpoint = RunnerEndpoint(m, "token")
        seen: dict[str, str] = {}

        def check(msg: dict[str, Any]) -> None:
            key = msg["job"]["key"]
            seen[key] = _db_states(db).get(key, "absent")

        links = [_runner(m, f"r{i}", group, check) for i in range(40)]
        for i, (link, _) in enumerate(links):
            endpoint.received(link, orjson.dumps({"id": i, "op": "reserve", "timeout": 0}))
        await _until(lambda: len(seen) == 40, "40 answers")
        assert set(seen) == {job.key for job in added}
        assert set(seen.values()) == {State.RESERVED.value}

    run(tmp_path, body)


def test_an_end_is_stored_before_it_is_answered_and_carries_the_next_job(
        tmp_path: Path) -> None:
    """Steps: a runner reserves a job, then sends its end (with its start) asking for the
    next one in the same message.
    Expected: when the answer is posted the first job is no longer live (it moved to the
    completed jobs) and the next is stored reserved; the answer names the next job."""
    db = tmp_path / "db"

    async def body(m: Manager) -> None:
        added = (await m.add_parts([jobs("true 1", "true 2")])).queued
        endpoint = RunnerEndpoint(m, "token")
        at_answer: list[dict[str, str]] = []
        link, answers = _runner(m, "r1", added[0].sched_group,
                                lambda msg: at_answer.append(_db_states(db)))
        endpoint.received(link, orjson.dumps({"id": 1, "op": "reserve", "timeout": 0}))
        await _until(lambda: len(answers) == 1, "the reservation")
        first = answers[0]["job"]["key"]
        end = {"id": 2, "op": "end", "key": first, "report": {"outcome": "archive"},
               "start": {"pid": 5, "host": "h", "at": time.time()}, "reserve": 0}
        endpoint.received(link, orjson.dumps(end))
        await _until(lambda: len(answers) == 2, "the end's answer")
        nxt = answers[1]["job"]["key"]
        assert "error" not in answers[1] and nxt != first
        assert first not in at_answer[1]
        assert at_answer[1][nxt] == State.RESERVED.value
        [done] = await m.store.complete_jobs([first])
        assert done.state == State.COMPLETE

    run(tmp_path, body)


def test_a_bad_request_is_answered_with_what_was_wrong(tmp_path: Path) -> None:
    """Steps: a runner sends bytes that are not JSON, a JSON list, an unknown op and a
    start without its pid.
    Expected: four error answers, each saying what was wrong; nothing stored changed."""

    async def body(m: Manager) -> None:
        [job] = (await m.add_parts([jobs("echo a")])).queued
        endpoint = RunnerEndpoint(m, "token")
        link, answers = _runner(m, "r1", job.sched_group)
        endpoint.received(link, b"{not json")
        endpoint.received(link, b"[1, 2]")
        endpoint.received(link, orjson.dumps({"id": 3, "op": "fly"}))
        endpoint.received(link, orjson.dumps({"id": 4, "op": "started", "key": job.key}))
        await _until(lambda: len(answers) == 4, "four answers")
        unnamed = sorted(a["error"] for a in answers if a["id"] is None)
        by_id = {a["id"]: a["error"] for a in answers if a["id"] is not None}
        assert len(unnamed) == 2 and all(e.startswith("bad request") for e in unnamed)
        assert "a request is a JSON object" in unnamed[0]
        assert by_id[3] == "unknown op 'fly'"
        assert "bad request" in by_id[4] and "pid" in by_id[4]
        assert (await stored(m))[job.key].state == State.READY

    run(tmp_path, body)


def _beats(m: Manager, t0: float, seconds: float) -> None:
    """The heartbeat of a loop that keeps turning (every beat on time, so no stall) from
    ``t0`` for ``seconds``, then the clock's look before its tick."""
    m._beat = t0
    for i in range(1, int(seconds / BEAT) + 1):
        m._catch_up(t0 + i * BEAT, settle=False)
    m._catch_up(t0 + seconds)


@pytest.mark.parametrize("where", ["inbox", "storing", "outbox"])
def test_a_touching_runner_is_not_lost_while_the_desk_is_behind(tmp_path: Path,
                                                                where: str) -> None:
    """Steps: a job runs (ttr 60 s); a request read at the job's last keep-alive is still
    unanswered: waiting to be served (inbox), on its way to the store (its runner waits
    for the answer to its start before it touches), or answered but not sent (outbox);
    the clock looks 70 s later. The loop kept turning (its heartbeat on time): only the
    desk was behind. Then, as a control, the same with nothing waiting.
    Expected: with the backlog the job stays running (the time the manager was behind
    does not count against its runner); without it the job is lost."""

    async def body(m: Manager) -> None:
        job = await running(m)
        link, _ = _runner(m, "r2", job.sched_group)
        t0 = time.time()
        m.queue.touch(job.key, "r1", t0)
        req = RunnerRequest(link, {"op": "started"}, lambda req: None, t0)
        if where == "storing":
            m._storing[id(req)] = t0
        else:
            getattr(m, f"_{where}").append(req)
        _beats(m, t0, 70)
        assert m.queue.tick(t0 + 70) == []
        assert m.queue.get(job.key).state == State.RUNNING

        m._inbox.clear()
        m._outbox.clear()
        m._storing.clear()
        m.queue.touch(job.key, "r1", t0)
        _beats(m, t0, 70)
        assert [j.key for j in m.queue.tick(t0 + 70)] == [job.key]

    run(tmp_path, body)


def test_an_end_read_behind_a_backlog_counts_as_a_keep_alive(tmp_path: Path) -> None:
    """Steps: a job runs; its runner's end report is read (not yet served).
    Expected: at once, before the desk gets to it, the job's keep-alive deadline is a full
    ttr from now; once served, the job is complete."""

    async def body(m: Manager) -> None:
        job = await running(m)
        endpoint = RunnerEndpoint(m, "token")
        link, answers = _runner(m, "r1", job.sched_group)
        m.queue.touch(job.key, "r1", time.time() - 50)  # 10 s of its 60 s ttr left
        before = m.queue._release_at[job.key]
        endpoint.received(link, orjson.dumps({"id": 1, "op": "end", "key": job.key,
                                              "report": {"outcome": "archive"}}))
        assert m.queue._release_at[job.key] >= before + 49  # (served on a later turn)
        assert m.queue.get(job.key).state == State.RUNNING
        await _until(lambda: answers, "the end's answer")
        assert "error" not in answers[0]
        assert job.key not in await stored(m)

    run(tmp_path, body)


def test_a_crowd_asking_for_many_at_once_shares_a_wave(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps: with a wave of 8 jobs, four runners each ask for 16 of 100 ready jobs at once.
    Expected: each is handed at most its share of the wave among the requests waiting
    behind it when it is served (8 // 4, 8 // 3, 8 // 2, 8 // 1), not 16 each."""
    monkeypatch.setattr(runner_batches, "WAVE", 8)

    async def body(m: Manager) -> None:
        added = (await m.add_parts([jobs(*(f"echo {i}" for i in range(100)))])).queued
        endpoint = RunnerEndpoint(m, "token")
        runners = [_runner(m, f"r{i}", added[0].sched_group) for i in range(4)]
        for link, _ in runners:
            endpoint.received(link, orjson.dumps({"id": 1, "op": "reserve", "timeout": 0,
                                                  "many": 16}))
        await _until(lambda: all(answers for _, answers in runners), "four answers")
        got = [1 + len(answers[0].get("more", ())) for _, answers in runners]
        assert got == [2, 2, 4, 8]

    run(tmp_path, body)
