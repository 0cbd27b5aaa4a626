"""The queue holds jobs of closed time windows and says when they open (issue 15).

The queue reads no clock: these tests move time by passing ``now`` (local wall-clock times,
as the manager's windows are in its local time zone).
"""

from __future__ import annotations

import random
from datetime import datetime

from wr.jobs import Job, State
from wr.queue import EndReport, Queue
from wr.windows import FOREVER

WINDOW = "12:00:00 < time < 13:00:00"


def local(text: str) -> float:
    return datetime.strptime(f"2025-03-04 {text}", "%Y-%m-%d %H:%M:%S").timestamp()


def make_queue() -> Queue:
    # Scheduler groups by limit groups, as the manager's include them.
    return Queue(ttr=60, rng=random.Random(3), group_of=lambda j: ",".join(j.limit_grps))


def job(key: str, *groups: str) -> Job:
    return Job(key=key, cmd=f"echo {key}", limit_grps=list(groups))


def test_a_job_waits_for_its_window_and_the_clock_says_when_it_opens() -> None:
    q = make_queue()
    (a,) = q.add([job("a", WINDOW)], local("11:00:00"))
    assert a.state == State.READY
    assert q.reserve(WINDOW, "r1", local("11:00:00")) is None
    opened, next_open = q.window_check(local("11:00:00"))
    assert opened == [] and next_open == local("12:00:01")
    assert q.reserve(WINDOW, "r1", local("12:00:00")) is None  # bounds are exclusive
    opened, _ = q.window_check(local("12:00:01"))
    assert opened == [WINDOW]
    assert q.window_check(local("12:00:02"))[0] == []  # told once
    assert q.reserve(WINDOW, "r1", local("12:00:01")) is a


def test_a_started_job_runs_past_the_end_of_its_window() -> None:
    q = make_queue()
    q.add([job("a", WINDOW), job("b", WINDOW)], local("12:30:00"))
    a = q.reserve(WINDOW, "r1", local("12:30:00"))
    assert a is not None
    q.start(a.key, "r1", pid=1, host="h", host_ip="", now=local("12:30:00"))
    q.touch(a.key, "r1", local("13:30:00"))
    assert a.state == State.RUNNING
    assert q.reserve(WINDOW, "r2", local("13:30:00")) is None  # b waits for tomorrow
    q.end(a.key, "r1", EndReport("archive"), local("13:31:00"))
    assert a.state == State.COMPLETE


def test_windows_are_not_counts_and_combine_with_count_limits() -> None:
    q = make_queue()
    a, b = q.add([job("a", WINDOW, "lim:1"), job("b", WINDOW, "lim")], local("12:10:00"))
    group = ",".join(a.limit_grps)
    assert q.limits == {"lim": 1}
    first = q.reserve(group, "r1", local("12:10:00"))
    assert first is a
    assert dict(q.limit_counts) == {"lim": 1}  # the window is not counted
    assert q.reserve(group, "r2", local("12:10:00")) is None  # the count holds b
    assert not q.limits_allow(a.limit_grps, local("12:10:00"))
    q.set_limit("lim", 5)
    assert q.limits_allow(a.limit_grps, local("12:10:00"))
    assert not q.limits_allow(a.limit_grps, local("14:00:00"))  # the window holds it


def test_the_next_opening_is_the_latest_of_a_groups_closed_windows() -> None:
    q = make_queue()
    q.add([job("a", "11:00:00 < time", "time < 10:00:00")], local("10:30:00"))
    opened, next_open = q.window_check(local("10:30:00"))
    # At 11:00:01 the second window is closed too: the whole group opens no sooner than
    # tomorrow's midnight.
    assert opened == [] and next_open == datetime(2025, 3, 5).timestamp()


def test_groups_without_ready_jobs_are_forgotten() -> None:
    q = make_queue()
    (a,) = q.add([job("a", WINDOW)], local("11:00:00"))
    assert q.window_check(local("11:00:00"))[1] == local("12:00:01")
    q.delete([a.key], local("11:00:01"))
    assert q.window_check(local("11:00:02")) == ([], FOREVER)


def test_a_passed_datetime_window_never_opens() -> None:
    q = make_queue()
    q.add([job("a", "datetime < 2000-01-01 00:00:00")], local("11:00:00"))
    assert q.window_check(local("11:00:00")) == ([], FOREVER)
    assert q.reserve("datetime < 2000-01-01 00:00:00", "r1", local("11:00:00")) is None


def test_jobs_staged_in_bulk_are_held_too() -> None:
    q = make_queue()
    jobs = [job(f"k{i}", WINDOW) for i in range(3)]
    for j in jobs:
        q.prepare(j)
    staged = q.stage(jobs)
    q.add(jobs, local("11:00:00"), prepared=True, staged=staged)
    assert q.ready_by_group[WINDOW] == 3
    assert q.window_check(local("11:00:00")) == ([], local("12:00:01"))
    assert q.reserve(WINDOW, "r1", local("11:00:00")) is None
