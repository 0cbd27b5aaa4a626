"""Queue.replace: wr mod's swap of a queued job for a modified version of it."""

from __future__ import annotations

import pytest

from wr.jobs import Job, State
from wr.queue import Queue, QueueError, Replaced


def _job(key: str, **kw) -> Job:
    job = Job(key=key, cmd=f"cmd {key}", **kw)
    job.until_buried = job.retries + 1
    return job


def test_a_new_key_keeps_its_dependants_waiting() -> None:
    q = Queue()
    q.add([_job("parent", dep_grps=["g"]), _job("child", deps=["g"])], 0)
    q.drain()
    new = _job("renamed", dep_grps=["g"], priority=9)
    q.replace("parent", new, 1)
    events = q.drain()
    assert any(isinstance(e, Replaced) and e.old_key == "parent" for e in events)
    assert "parent" not in q.jobs and q.jobs["renamed"].state == State.READY
    assert q.unresolved("child") == {"renamed"}
    assert q.jobs["child"].state == State.DEPENDENT
    got = q.reserve("", "r", 2)
    assert got is new
    q.start("renamed", "r", pid=1, host="h", host_ip="i", now=2)
    from wr.queue import EndReport

    q.end("renamed", "r", EndReport("archive", ended=3), 3)
    assert q.jobs["child"].state == State.READY
    assert sum(q.counts.values()) == 1


def test_a_buried_job_stays_buried_and_running_ones_cannot_be_replaced() -> None:
    q = Queue()
    q.add([_job("a"), _job("b")], 0)
    q.reserve("", "r", 0)  # a
    with pytest.raises(QueueError):
        q.replace("a", _job("a2"), 1)
    q.bury_impossible("", 1)  # b is buried
    q.replace("b", _job("b", priority=3), 2)
    assert q.jobs["b"].state == State.BURIED and q.jobs["b"].priority == 3
    assert q.counts[State.BURIED] == 1 and q.counts[State.RESERVED] == 1


def test_the_new_key_must_be_free() -> None:
    q = Queue()
    q.add([_job("a"), _job("b")], 0)
    with pytest.raises(QueueError, match="already in the queue"):
        q.replace("a", _job("b"), 1)
    assert set(q.jobs) == {"a", "b"}
