"""The queue's state machine, driven directly (spec rest-and-queue.md §4.4-4.9, §4.13, §5).

Time is always an argument: tests move the clock by passing ``now``, never by sleeping.
"""

import random
from collections import Counter

import pytest

from wr.jobs import RUN_STATES, FailReason, Job, State
from wr.learning import Recommendation
from wr.queue import TRANSITIONS, Changed, EndReport, LimitChanged, Queue, QueueError

S = State
TTR = 60.0


def new_job(key: str, **kw) -> Job:
    """A job as the submission layer builds it: all its attempts ahead of it."""
    kw.setdefault("until_buried", kw.get("retries", 0) + 1)
    return Job(key=key, cmd=f"echo {key}", **kw)


def make_queue(**kw) -> Queue:
    kw.setdefault("ttr", TTR)
    kw.setdefault("rng", random.Random(7))
    return Queue(**kw)


def changes(q: Queue) -> list[tuple[str, State | None, State]]:
    """Drain the outbox, keeping the state changes as (key, old, new)."""
    out = []
    for event in q.drain():
        if isinstance(event, Changed):
            assert (event.old, event.new) in TRANSITIONS
            out.append((event.job.key, event.old, event.new))
    return out


def take(q: Queue, key: str | None = None, *, runner: str = "r1", now: float = 0.0,
         group: str = "") -> Job:
    """Reserve the next job of ``group`` (checking it is ``key``) and start it."""
    job = q.reserve(group, runner, now)
    assert job is not None, "nothing ready"
    if key is not None:
        assert job.key == key
    q.start(job.key, runner, pid=4242, host="node1", host_ip="10.0.0.1", now=now)
    return job


def failed(reason: FailReason = FailReason.EXIT, **kw) -> EndReport:
    return EndReport("release", exitcode=kw.pop("exitcode", 1), fail_reason=str(reason), **kw)


ARCHIVE = EndReport("archive", exitcode=0)


def assert_consistent(q: Queue) -> None:
    """The queue's counters equal a recount of its jobs."""
    jobs = q.jobs.values()
    assert {s: n for s, n in q.counts.items() if n} == Counter(j.state for j in jobs)
    assert {g: n for g, n in q.ready_by_group.items() if n} == Counter(
        j.sched_group for j in jobs if j.state == S.READY)
    assert {g: n for g, n in q.run_by_group.items() if n} == Counter(
        j.sched_group for j in jobs if j.state in RUN_STATES)
    assert dict(q.limit_counts) == Counter(
        g for j in jobs if j.state in RUN_STATES for g in j.limit_grps)


# -- adding -------------------------------------------------------------------------------


def test_add_without_dependencies_is_ready():
    q = make_queue()
    [job] = q.add([new_job("a")], now=5.0)
    assert job.state == S.READY
    assert job.added == 5.0
    assert q.get("a") is job
    assert changes(q) == [("a", None, S.READY)]
    assert q.counts[S.READY] == 1
    assert_consistent(q)


def test_add_with_a_queued_dependency_is_dependent():
    q = make_queue()
    q.add([new_job("a", dep_grps=["g"])], 0)
    [b] = q.add([new_job("b", deps=["g"])], 0)
    assert b.state == S.DEPENDENT
    assert q.unresolved("b") == {"a"}
    assert q.has_dependants("a")
    assert changes(q) == [("a", None, S.READY), ("b", None, S.DEPENDENT)]
    assert_consistent(q)


def test_jobs_of_one_call_may_depend_on_each_other():
    q = make_queue()
    b, a = q.add([new_job("b", deps=["g"]), new_job("a", dep_grps=["g"])], 0)
    assert (a.state, b.state) == (S.READY, S.DEPENDENT)


def test_depending_on_an_empty_or_finished_group_is_ready():
    """Spec §4.8: deps on groups with no queued members are already satisfied."""
    q = make_queue()
    [x] = q.add([new_job("x", deps=["nothing", "here"])], 0)
    assert x.state == S.READY
    take(q, "x")
    q.add([new_job("a", dep_grps=["g"])], 0)
    take(q, "a")
    q.end("a", "r1", ARCHIVE, 1)
    [b] = q.add([new_job("b", deps=["g"])], 2)
    assert b.state == S.READY


def test_cmd_deps_wait_for_that_job_only_while_it_is_queued():
    q = make_queue()
    q.add([new_job("a")], 0)
    b, c = q.add([new_job("b", cmd_deps=["a"]), new_job("c", cmd_deps=["gone"])], 0)
    assert (b.state, c.state) == (S.DEPENDENT, S.READY)
    take(q, "a")
    q.end("a", "r1", ARCHIVE, 1)
    assert b.state == S.READY


def test_a_duplicate_key_returns_the_queued_job():
    q = make_queue()
    [a] = q.add([new_job("a", priority=1)], 0)
    changes(q)
    [again] = q.add([new_job("a", priority=9)], 1)
    assert again is a and a.priority == 1
    assert changes(q) == []
    assert q.counts[S.READY] == 1


# -- reserving, starting, touching --------------------------------------------------------


def test_reserve_takes_highest_priority_then_oldest():
    q = make_queue()
    q.add([new_job("low1", priority=0), new_job("high1", priority=5)], 0)
    q.add([new_job("low2", priority=0), new_job("high2", priority=5)], 1)
    order = [q.reserve("", "r1", 2).key for _ in range(4)]
    assert order == ["high1", "high2", "low1", "low2"]
    assert q.reserve("", "r1", 2) is None


def test_reserve_only_from_the_given_scheduler_group():
    q = make_queue(group_of=lambda j: j.req_grp)
    q.add([new_job("a1", req_grp="a"), new_job("b1", req_grp="b", priority=9),
           new_job("a2", req_grp="a")], 0)
    assert q.ready_by_group == Counter({"a": 2, "b": 1})
    assert q.reserve("c", "r1", 0) is None
    assert q.reserve("a", "r1", 0).key == "a1"
    assert q.reserve("a", "r1", 0).key == "a2"
    assert q.reserve("a", "r1", 0) is None
    assert q.reserve("b", "r1", 0).key == "b1"
    assert q.run_by_group == Counter({"a": 2, "b": 1})
    assert_consistent(q)


def test_reserve_resets_the_run_fields():
    q = make_queue()
    q.add([new_job("a", retries=1)], 0)
    take(q, "a")
    q.kill(["a"], 1)
    q.end("a", "r1", EndReport("bury", exitcode=-1, fail_reason=str(FailReason.KILLED),
                               peak_ram=50, cpu_time=2.0), 2)
    q.kick(["a"], 3)
    job = q.reserve("", "r2", 4)
    assert job.state == S.RESERVED and job.reserved_by == "r2"
    assert (job.pid, job.host, job.started, job.ended) == (0, "", None, None)
    assert (job.peak_ram, job.cpu_time, job.exitcode, job.kill_called) == (0, 0.0, -1, False)


def test_start_records_the_attempt():
    q = make_queue()
    q.add([new_job("a")], 0)
    q.reserve("", "r1", 1)
    changes(q)
    job = q.start("a", "r1", pid=99, host="n1", host_ip="10.1.1.1", now=2)
    assert job.state == S.RUNNING
    assert (job.pid, job.host, job.host_ip, job.started, job.attempts) == (99, "n1", "10.1.1.1",
                                                                          2, 1)
    assert changes(q) == [("a", S.RESERVED, S.RUNNING)]
    assert_consistent(q)


def test_touch_keeps_a_running_job_alive():
    q = make_queue()
    q.add([new_job("a")], 0)
    take(q, "a", now=0)
    assert q.touch("a", "r1", now=50) is False
    assert q.tick(100) == []  # 50 s since the touch
    assert q.get("a").state == S.RUNNING
    assert q.next_deadline() == 110
    [lost] = q.tick(110)
    assert lost.key == "a"


def test_touch_keeps_the_highest_peak_ram_reported():
    """Issue 13 item 10: a runner killed with its job cannot report its peak, so its
    keep-alives carry it; a new attempt starts from nothing again."""
    q = make_queue()
    q.add([new_job("a", retries=1)], 0)
    take(q, "a")
    for peak in (100, 300, 0, 200):
        q.touch("a", "r1", 1, peak_ram=peak)
    assert q.get("a").peak_ram == 300
    q.end("a", "r1", failed(peak_ram=350), 2)
    q.tick(10_000)
    take(q, "a", runner="r2", now=10_000)
    assert q.get("a").peak_ram == 0


def test_wrong_runner_or_wrong_state_is_refused():
    q = make_queue()
    q.add([new_job("a"), new_job("b")], 0)
    q.reserve("", "r1", 0)
    with pytest.raises(QueueError):
        q.start("a", "r2", pid=1, host="h", host_ip="", now=0)
    with pytest.raises(QueueError):
        q.start("b", "r1", pid=1, host="h", host_ip="", now=0)  # only ready
    with pytest.raises(QueueError):
        q.touch("nope", "r1", 0)
    with pytest.raises(QueueError):
        q.end("b", "r1", ARCHIVE, 0)
    with pytest.raises(QueueError, match="never started"):
        q.end("a", "r1", ARCHIVE, 0)
    with pytest.raises(QueueError, match="outcome"):
        q.end("a", "r1", EndReport("explode"), 0)
    with pytest.raises(QueueError):
        q.touch("a", "r2", 0)
    with pytest.raises(QueueError):
        q.release_unstarted("b", "r1", 0)
    with pytest.raises(QueueError):
        q.confirm_dead("a", 0)
    assert q.get("a").state == S.RESERVED and q.get("b").state == S.READY
    assert_consistent(q)


# -- ending -------------------------------------------------------------------------------


def test_archive_completes_the_job_and_frees_its_dependants():
    q = make_queue()
    q.add([new_job("a", dep_grps=["g"], rep_grp="r")], 0)
    q.add([new_job("b", deps=["g"])], 0)
    take(q, "a", now=1)
    changes(q)
    job = q.end("a", "r1", EndReport("archive", peak_ram=12, cpu_time=0.5, ended=9.0,
                                     actual_cwd="/tmp/x/cwd"), 10)
    assert job.state == S.COMPLETE
    assert (job.exited, job.exitcode, job.ended, job.peak_ram) == (True, 0, 9.0, 12)
    assert job.actual_cwd == "/tmp/x/cwd"
    assert "a" not in q.jobs
    assert changes(q) == [("a", S.RUNNING, S.COMPLETE), ("b", S.DEPENDENT, S.READY)]
    assert q.in_rep_grp("r") == [] and "r" not in q.rep_grp_names()
    assert not q.has_dependants("a")
    assert q.reserve("", "r1", 11).key == "b"
    assert_consistent(q)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("failures", "base"), [(0, 30), (1, 60), (2, 120), (5, 960),
                                                (6, 1800), (9, 1800)])
def test_release_backs_off_exponentially(failures, base, seed):
    """Spec §4.5: delay = min(min * 2**failures, max) + jitter up to min."""
    q = make_queue(retry_delay_min=30, retry_delay_max=1800, rng=random.Random(seed))
    q.add([new_job("a", retries=10)], 0)
    now = 0.0
    for n in range(failures):
        take(q, "a", now=now)
        assert q.end("a", "r1", failed(), now).until_buried == 10 - n
        now = q.next_deadline()
        q.tick(now)
    take(q, "a", now=now)
    job = q.end("a", "r1", failed(), now)
    assert job.state == S.DELAYED
    assert base <= job.delay <= base + 30
    at = now + job.delay
    assert q.next_deadline() == at
    q.tick(at - 0.001)
    assert job.state == S.DELAYED
    q.tick(at + 0.001)
    assert job.state == S.READY
    assert_consistent(q)


def test_release_with_no_delay_goes_straight_to_ready():
    q = make_queue(retry_delay_min=0)
    q.add([new_job("a", retries=1)], 0)
    take(q, "a")
    changes(q)
    q.end("a", "r1", failed(), 1)
    assert changes(q) == [("a", S.RUNNING, S.READY)]


def test_retries_exhausted_buries():
    """retries=1 means two attempts; the second failure buries."""
    q = make_queue()
    q.add([new_job("a", retries=1)], 0)
    take(q, "a")
    assert q.end("a", "r1", failed(), 1).state == S.DELAYED
    q.tick(1000)
    take(q, "a", now=1000)
    job = q.end("a", "r1", failed(exitcode=3), 1001)
    assert job.state == S.BURIED
    assert (job.until_buried, job.attempts, job.exitcode) == (0, 2, 3)
    assert job.fail_reason == "command exited non-zero"
    assert q.next_deadline() == float("inf")
    assert_consistent(q)


def test_bury_outcome_buries_even_with_retries_left():
    q = make_queue()
    q.add([new_job("a", retries=5)], 0)
    take(q, "a")
    job = q.end("a", "r1", EndReport("bury", exitcode=127,
                                     fail_reason=str(FailReason.NOTFOUND)), 1)
    assert (job.state, job.until_buried, job.fail_reason) == (S.BURIED, 0, "command not found")


def test_buried_with_remove_behaviour_is_deleted():
    q = make_queue()
    q.add([new_job("a")], 0)
    take(q, "a")
    changes(q)
    q.end("a", "r1", EndReport("bury", exitcode=1, fail_reason="x", remove=True), 1)
    assert changes(q) == [("a", S.RUNNING, S.BURIED), ("a", S.BURIED, S.DELETED)]
    assert "a" not in q.jobs


def test_interrupted_goes_back_as_if_never_run():
    q = make_queue()
    q.add([new_job("a", retries=2)], 0)
    take(q, "a")
    job = q.end("a", "r1", EndReport("interrupted", exitcode=-1,
                                     fail_reason=str(FailReason.SIGNAL)), 5)
    assert job.state == S.READY
    assert (job.attempts, job.until_buried) == (0, 3)
    assert (job.started, job.ended, job.exited, job.fail_reason) == (None, None, False, "")
    assert job.reserved_by == ""
    assert_consistent(q)


def test_an_unstarted_job_given_back_keeps_its_retries():
    q = make_queue()
    q.add([new_job("a"), new_job("b")], 0)
    q.reserve("", "r1", 0)
    q.reserve("", "r1", 0)
    assert q.release_unstarted("a", "r1", 1).state == S.READY
    job = q.end("b", "r1", failed(FailReason.START), 1)  # "command failed to start"
    assert (job.state, job.until_buried) == (S.DELAYED, 1)
    assert_consistent(q)


# -- time: TTR and lost -------------------------------------------------------------------


def test_a_reservation_never_started_expires_to_ready():
    q = make_queue()
    q.add([new_job("a", limit_grps=["lim:1"])], 0)
    q.reserve("", "r1", 0)
    assert q.tick(TTR - 1) == []
    assert q.get("a").state == S.RESERVED
    assert q.tick(TTR) == []
    job = q.get("a")
    assert (job.state, job.reserved_by, job.until_buried) == (S.READY, "", 1)
    assert q.limit_counts["lim"] == 0
    assert q.reserve("", "r2", TTR).key == "a"
    assert_consistent(q)


def test_a_reservation_held_by_a_connected_runner_does_not_expire():
    """Issue 6: a slow runner under load may start its job after ``ttr``; while it is
    connected the job stays its own, or another runner would run it too."""
    q = make_queue()
    q.runner_connected("r1")
    q.add([new_job("a")], 0)
    q.reserve("", "r1", 0)
    assert q.tick(TTR * 5) == [] and q.get("a").state == S.RESERVED
    assert q.reserve("", "r2", TTR * 5) is None
    q.start("a", "r1", pid=1, host="h", host_ip="", now=TTR * 5)
    assert q.get("a").state == S.RUNNING
    q.runner_disconnected("r1")  # gone without a word: its next reservation expires
    q.add([new_job("b")], TTR * 5)
    q.reserve("", "r1", TTR * 5)
    q.tick(TTR * 6)
    assert q.get("b").state == S.READY
    assert_consistent(q)


def test_postpone_moves_keep_alive_deadlines_but_not_retry_delays():
    """Issue 6: time the manager could not listen (a stalled loop) does not count against
    runners; a retry delay is the job's own and still ends on time."""
    q = make_queue(retry_delay_min=10, retry_delay_max=10, rng=random.Random(1))
    q.add([new_job("run"), new_job("wait", retries=1)], 0)
    take(q, "run")
    take(q, "wait")
    q.end("wait", "r1", failed(), 0)
    delay = q.get("wait").delay
    q.postpone(100)
    assert q.tick(TTR + 50) == [] and q.get("run").state == S.RUNNING
    assert delay < TTR + 50 and q.get("wait").state == S.READY
    assert [j.key for j in q.tick(TTR + 100)] == ["run"]
    assert_consistent(q)


def test_a_silent_running_job_becomes_lost():
    q = make_queue()
    q.add([new_job("a")], 0)
    take(q, "a", now=10)
    changes(q)
    [lost] = q.tick(10 + TTR)
    assert lost.state == S.LOST
    assert lost.fail_reason == "lost contact with runner"
    assert lost.ended == 10 + TTR
    assert changes(q) == [("a", S.RUNNING, S.LOST)]
    assert q.tick(10_000) == []  # reported once
    assert q.run_by_group[""] == 1
    assert_consistent(q)


def test_a_lost_job_touched_again_is_running():
    q = make_queue()
    q.add([new_job("a")], 0)
    take(q, "a")
    q.tick(TTR)
    assert q.touch("a", "r1", TTR + 5) is False
    job = q.get("a")
    assert (job.state, job.ended, job.fail_reason) == (S.RUNNING, None, "")
    assert q.tick(2 * TTR) == []
    assert [j.key for j in q.tick(2 * TTR + 5)] == ["a"]


def test_a_lost_job_may_still_report_success():
    q = make_queue()
    q.add([new_job("a")], 0)
    take(q, "a")
    q.tick(TTR)
    assert q.end("a", "r1", ARCHIVE, TTR + 1).state == S.COMPLETE
    assert_consistent(q)


@pytest.mark.parametrize(("retries", "state"), [(0, S.BURIED), (1, S.DELAYED)])
def test_confirm_dead_retries_or_buries(retries, state):
    q = make_queue()
    q.add([new_job("a", retries=retries, limit_grps=["lim:1"])], 0)
    take(q, "a")
    q.tick(TTR)
    job = q.confirm_dead("a", TTR + 15)
    assert job.state == state
    assert (job.exited, job.exitcode, job.fail_reason) == (True, -1, "lost contact with runner")
    assert job.until_buried == (0 if state == S.BURIED else retries)
    assert job.reserved_by == ""
    with pytest.raises(QueueError):
        q.touch("a", "r1", TTR + 16)
    assert_consistent(q)


def test_a_superseded_attempt_can_change_nothing():
    """Issue 16: a runner cut off from the manager for long enough has its job ended as lost
    (its node looked dead) and run again elsewhere; when it is heard from again, its
    keep-alives and its report of the first attempt are refused, and the second attempt's
    result is the one kept."""
    q = make_queue(retry_delay_min=0)
    q.add([new_job("a", retries=2)], 0)
    take(q, "a", runner="old")
    q.tick(TTR)
    q.end("a", "old", failed(FailReason.LOST, exitcode=-1), TTR + 10)
    take(q, "a", runner="new", now=TTR + 11)
    with pytest.raises(QueueError, match="reserved by another runner"):
        q.touch("a", "old", TTR + 12, peak_ram=500)
    with pytest.raises(QueueError, match="reserved by another runner"):
        q.end("a", "old", ARCHIVE, TTR + 13)
    job = q.get("a")
    assert (job.state, job.reserved_by, job.attempts, job.peak_ram) == (
        S.RUNNING, "new", 2, 0)
    done = q.end("a", "new", EndReport("archive", exitcode=0, peak_ram=42), TTR + 20)
    assert (done.state, done.peak_ram, done.ended) == (S.COMPLETE, 42, TTR + 20)
    with pytest.raises(QueueError, match="not in queue"):
        q.end("a", "old", ARCHIVE, TTR + 21)
    assert_consistent(q)


# -- kill, kick ---------------------------------------------------------------------------


def test_kill_of_a_running_job_is_told_on_the_next_touch():
    q = make_queue()
    q.add([new_job("a", retries=3), new_job("b")], 0)
    take(q, "a")
    affected = q.kill(["a", "b", "nope"], 1)
    assert [j.key for j in affected] == ["a"]
    assert q.get("a").state == S.RUNNING
    assert q.touch("a", "r1", 2) is True
    job = q.end("a", "r1", EndReport("bury", exitcode=-1,
                                     fail_reason=str(FailReason.KILLED)), 3)
    assert (job.state, job.fail_reason) == (S.BURIED, "killed by user request")
    assert q.get("b").state == S.READY


def test_kill_of_a_lost_job_confirms_it_dead():
    q = make_queue()
    q.add([new_job("a")], 0)
    take(q, "a")
    q.tick(TTR)
    [job] = q.kill(["a"], TTR + 1)
    assert job.state == S.BURIED
    assert job.fail_reason == "lost contact with runner"
    assert_consistent(q)


def test_a_killed_job_whose_runner_goes_silent_is_confirmed_dead():
    q = make_queue()
    q.add([new_job("a", retries=1)], 0)
    take(q, "a")
    q.kill(["a"], 1)
    changes(q)
    assert q.tick(TTR) == []  # not reported as lost: nobody needs to check on it
    assert changes(q) == [("a", S.RUNNING, S.LOST), ("a", S.LOST, S.DELAYED)]


def test_kick_gives_a_buried_job_all_its_retries_back():
    q = make_queue()
    q.add([new_job("a", retries=2), new_job("b")], 0)
    take(q, "a")
    q.end("a", "r1", EndReport("bury", exitcode=1, fail_reason="x"), 1)
    kicked = q.kick(["a", "b", "nope"], 2)
    assert [j.key for j in kicked] == ["a"]
    assert (kicked[0].state, kicked[0].until_buried) == (S.READY, 3)
    assert q.get("b").state == S.READY
    assert_consistent(q)


def test_a_buried_job_waits_for_dependencies_that_arrived_meanwhile():
    """Spec §4.4: buried stays buried on a live dep update; kick then makes it dependent."""
    q = make_queue()
    q.add([new_job("b", deps=["g"])], 0)
    take(q, "b")
    q.end("b", "r1", EndReport("bury", exitcode=1, fail_reason="x"), 1)
    q.add([new_job("a", dep_grps=["g"])], 2)
    assert q.get("b").state == S.BURIED
    assert q.unresolved("b") == {"a"}
    [b] = q.kick(["b"], 3)
    assert b.state == S.DEPENDENT
    take(q, "a", now=4)
    q.end("a", "r1", ARCHIVE, 5)
    assert b.state == S.READY
    assert_consistent(q)


# -- deletion -----------------------------------------------------------------------------


def put_in_state(q: Queue, key: str, state: State, now: float = 0.0) -> Job:
    """Drive a new job to ``state`` (the queue must give each job its own group)."""
    deps = [f"{key}-g"] if state == S.DEPENDENT else []
    if deps:
        q.add([new_job(f"{key}-parent", dep_grps=deps)], now)
    [job] = q.add([new_job(key, deps=deps, retries=1)], now)
    if state in (S.READY, S.DEPENDENT):
        return job
    q.reserve(key, "r1", now)
    if state != S.RESERVED:
        q.start(key, "r1", pid=1, host="h", host_ip="", now=now)
    if state == S.LOST:
        q.tick(now + q.ttr)
    elif state == S.DELAYED:
        q.end(key, "r1", failed(), now)
    elif state == S.BURIED:
        q.end(key, "r1", EndReport("bury", exitcode=1, fail_reason="x"), now)
    assert job.state == state
    return job


@pytest.mark.parametrize("state", [S.READY, S.DELAYED, S.BURIED, S.DEPENDENT, S.RESERVED,
                                   S.RUNNING, S.LOST])
def test_only_deletable_jobs_are_deleted(state):
    """DESIGN.md: deletable = delayed | ready | buried | dependent."""
    q = make_queue(group_of=lambda j: j.key)
    put_in_state(q, "a", state)
    changes(q)
    removed = q.delete(["a"], 1)
    if state in (S.READY, S.DELAYED, S.BURIED, S.DEPENDENT):
        assert [j.key for j in removed] == ["a"]
        assert changes(q) == [("a", state, S.DELETED)]
        assert "a" not in q.jobs
    else:
        assert removed == [] and q.get("a").state == state
    assert q.tick(10_000) in ([], [q.get("a")])  # no stale timer trips over a deleted job
    assert_consistent(q)


def test_delete_is_blocked_by_dependants_unless_they_go_too():
    """Spec §4.9: a tree deleted together goes bottom-up; a parent alone stays."""
    q = make_queue()
    q.add([new_job("a", dep_grps=["g1"])], 0)
    q.add([new_job("b", deps=["g1"], dep_grps=["g2"])], 0)
    q.add([new_job("c", deps=["g2"]), new_job("other")], 0)
    assert q.delete(["a"], 1) == []
    assert q.delete(["a", "b"], 1) == []  # c still needs b
    removed = q.delete(["a", "b", "c", "other", "unknown"], 1)
    assert sorted(j.key for j in removed) == ["a", "b", "c", "other"]
    assert [j.key for j in removed].index("c") < [j.key for j in removed].index("b")
    assert q.jobs == {}
    assert_consistent(q)


def test_deleting_a_dependant_unblocks_its_parent():
    q = make_queue()
    q.add([new_job("a", dep_grps=["g"]), new_job("b", deps=["g"])], 0)
    assert [j.key for j in q.delete(["b"], 1)] == ["b"]
    assert not q.has_dependants("a")
    assert [j.key for j in q.delete(["a"], 1)] == ["a"]


def test_delete_removes_the_job_from_its_rep_group():
    q = make_queue()
    q.add([new_job("a", rep_grp="r"), new_job("b", rep_grp="r"), new_job("c", rep_grp="s")], 0)
    assert [j.key for j in q.in_rep_grp("r")] == ["a", "b"]
    q.delete(["a", "c"], 1)
    assert [j.key for j in q.in_rep_grp("r")] == ["b"]
    assert q.rep_grp_names() == ["r"]


# -- live dependencies --------------------------------------------------------------------


def test_a_new_member_of_a_dep_group_sends_ready_dependants_back():
    """Spec §4.8: B deps=["g"] is ready; A joins g; B waits for A."""
    q = make_queue()
    q.add([new_job("b", deps=["g"])], 0)
    changes(q)
    q.add([new_job("a", dep_grps=["g"])], 1)
    assert sorted(changes(q)) == [("a", None, S.READY), ("b", S.READY, S.DEPENDENT)]
    assert q.reserve("", "r1", 2).key == "a"
    assert q.reserve("", "r1", 2) is None
    q.start("a", "r1", pid=1, host="h", host_ip="", now=2)
    q.end("a", "r1", ARCHIVE, 3)
    assert q.get("b").state == S.READY
    assert_consistent(q)


def test_a_new_member_of_a_dep_group_sends_delayed_dependants_back():
    q = make_queue()
    q.add([new_job("b", deps=["g"], retries=1)], 0)
    take(q, "b")
    q.end("b", "r1", failed(), 1)
    q.add([new_job("a", dep_grps=["g"])], 2)
    assert q.get("b").state == S.DEPENDENT
    q.tick(10_000)  # its old delay passing changes nothing
    assert q.get("b").state == S.DEPENDENT
    assert_consistent(q)


def _back_by_interrupt(q, now):
    q.end("b", "r1", EndReport("interrupted"), now)


def _back_by_release(q, now):
    q.end("b", "r1", failed(), now)
    q.tick(now + 10_000)


def _back_by_lost(q, now):
    q.tick(now + TTR)
    q.confirm_dead("b", now + TTR)
    q.tick(now + 10_000)


def _back_unstarted(q, now):
    q.release_unstarted("b", "r1", now)


def _back_by_expiry(q, now):
    q.tick(now + TTR)


@pytest.mark.parametrize(
    ("started", "come_back"),
    [(True, _back_by_interrupt), (True, _back_by_release), (True, _back_by_lost),
     (False, _back_unstarted), (False, _back_by_expiry)],
)
def test_a_job_held_by_a_runner_waits_for_dependencies_added_meanwhile(started, come_back):
    """Dependants never run before their dependencies, even live ones that arrived while the
    dependant was reserved or running: when it comes back it is dependent, not ready."""
    q = make_queue(retry_delay_min=5)
    q.add([new_job("b", deps=["g"], retries=3)], 0)
    if started:
        take(q, "b")
    else:
        q.reserve("", "r1", 0)
    q.add([new_job("a", dep_grps=["g"])], 1)
    come_back(q, 2)
    assert q.get("b").state == S.DEPENDENT
    assert_consistent(q)
    take(q, "a", now=20_000)
    assert q.reserve("", "r2", 20_000) is None
    q.end("a", "r1", ARCHIVE, 20_001)
    assert q.get("b").state == S.READY


# -- limit groups -------------------------------------------------------------------------


def test_a_count_limit_lets_one_job_run_at_a_time():
    q = make_queue()
    a, b = q.add([new_job("a", limit_grps=["lim:1"]), new_job("b", limit_grps=["lim"])], 0)
    assert [e for e in q.drain() if isinstance(e, LimitChanged)] == [LimitChanged("lim", 1)]
    assert q.limits == {"lim": 1}
    assert list(a.limit_grps) == ["lim"]
    take(q, "a")
    assert q.limit_counts["lim"] == 1
    assert q.reserve("", "r2", 1) is None
    q.end("a", "r1", ARCHIVE, 2)
    assert q.limit_counts["lim"] == 0
    assert q.reserve("", "r2", 3) is b
    assert_consistent(q)


def test_setting_the_same_limit_again_says_nothing():
    q = make_queue()
    q.add([new_job("a", limit_grps=["lim:2"])], 0)
    q.drain()
    q.add([new_job("b", limit_grps=["lim:2"])], 0)
    assert [e for e in q.drain() if isinstance(e, LimitChanged)] == []


def test_limit_minus_one_removes_and_zero_blocks():
    q = make_queue()
    q.add([new_job("a", limit_grps=["lim:0"])], 0)
    assert q.reserve("", "r1", 0) is None
    q.add([new_job("b", limit_grps=["lim:-1"])], 1)
    assert LimitChanged("lim", None) in q.drain()
    assert q.limits == {}
    assert q.reserve("", "r1", 1).key == "a"


@pytest.mark.parametrize("how", ["expiry", "confirm_dead", "release", "bury", "interrupted"])
def test_limit_counts_are_given_back_however_the_run_ends(how):
    q = make_queue(retry_delay_min=0)
    q.add([new_job("a", limit_grps=["lim:1"], retries=2)], 0)
    if how == "expiry":
        q.reserve("", "r1", 0)
        q.tick(TTR)
    else:
        take(q, "a")
        if how == "confirm_dead":
            q.tick(TTR)
            q.confirm_dead("a", TTR)
        else:
            outcome = {"release": "release", "bury": "bury", "interrupted": "interrupted"}[how]
            q.end("a", "r1", EndReport(outcome, exitcode=1, fail_reason="x"), 1)
    assert q.limit_counts["lim"] == 0
    assert_consistent(q)


def test_time_window_limit_groups_set_no_count_limit():
    q = make_queue()
    [a] = q.add([new_job("a", limit_grps=["time < 23:59:59"])], 0)
    assert q.limits == {}
    assert list(a.limit_grps) == ["time < 23:59:59"]


# -- learned requirements -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "user_ram", "learned", "ram"),
    [
        (0, 1000, 2000, 2000),
        (0, 3000, 2000, 2000),  # override 0 uses the learned value even when lower
        (1, 1000, 2000, 2000),
        (1, 3000, 2000, 3000),  # override 1 only raises
        (2, 1000, 2000, 1000),
        (2, 3000, 2000, 3000),  # override 2 keeps the user's value
        (2, 0, 2000, 2000),  # the user gave nothing: learned it is
        (0, 1000, 0, 1000),  # nothing learned: unchanged
    ],
)
def test_learned_requirements_respect_override(override, user_ram, learned, ram):
    rec = Recommendation(ram_mb=learned, time_s=120.0 if learned else 0.0)
    q = make_queue(recommend=lambda req_grp: rec if req_grp == "blast" else Recommendation(),
                   group_of=lambda j: f"{j.ram}")
    [job] = q.add([new_job("a", req_grp="blast", ram=user_ram or 1024, user_ram=user_ram,
                           override=override)], 0)
    assert job.ram == ram
    assert job.sched_group == str(ram)
    [other] = q.add([new_job("b", req_grp="sort", ram=1000, user_ram=1000)], 0)
    assert other.ram == 1000


def test_learned_time():
    q = make_queue(recommend=lambda g: Recommendation(time_s=95.0))
    [job] = q.add([new_job("a", time=3600.0, user_time=3600.0)], 0)
    assert job.time == 95.0


def test_what_was_learned_since_applies_when_a_job_is_next_made_ready():
    learned = {"blast": Recommendation()}
    q = make_queue(recommend=lambda g: learned[g], group_of=lambda j: f"{j.ram}")
    q.add([new_job("a", req_grp="blast", ram=1000, user_ram=1000)], 0)
    assert q.ready_by_group == Counter({"1000": 1})
    learned["blast"] = Recommendation(ram_mb=300)
    assert q.reserve("1000", "r1", 1).key == "a"  # a queued job keeps what it was given
    q.release_unstarted("a", "r1", 1)
    assert q.get("a").ram == 300
    assert {g: n for g, n in q.ready_by_group.items() if n} == {"300": 1}
    assert q.reserve("1000", "r1", 1) is None
    assert q.reserve("300", "r1", 1).key == "a"
    assert_consistent(q)


@pytest.mark.parametrize(("peak", "ram"), [(3000, 6000), (10000, 13000), (8192, 16400),
                                           (100, 1100)])
def test_a_ram_failure_raises_the_memory_for_the_next_attempt(peak, ram):
    q = make_queue(retry_delay_min=0)
    q.add([new_job("a", retries=1, ram=1000, user_ram=1000)], 0)
    take(q, "a")
    job = q.end("a", "r1", failed(FailReason.RAM, peak_ram=peak), 1)
    assert job.fail_reason == "command used too much RAM"
    assert (job.state, job.ram) == (S.READY, ram)


def test_override_two_keeps_the_memory_after_a_ram_failure():
    q = make_queue(retry_delay_min=0)
    q.add([new_job("a", retries=1, ram=1000, user_ram=1000, override=2)], 0)
    take(q, "a")
    assert q.end("a", "r1", failed(FailReason.RAM, peak_ram=3000), 1).ram == 1000


def test_a_time_failure_raises_the_time_for_the_next_attempt():
    q = make_queue(retry_delay_min=0)
    q.add([new_job("a", retries=1, time=60.0)], 0)
    take(q, "a", now=100)
    job = q.end("a", "r1", failed(FailReason.TIME, ended=400.0), 400)
    assert job.time == 300 + 3600


# -- impossible requirements --------------------------------------------------------------


def test_bury_impossible_buries_the_ready_jobs_of_one_group():
    q = make_queue(group_of=lambda j: "big" if j.ram > 10_000 else "small")
    q.add([new_job("a", ram=20_000), new_job("b", ram=30_000), new_job("c", ram=100)], 0)
    buried = q.bury_impossible("big", 1)
    assert sorted(j.key for j in buried) == ["a", "b"]
    assert all(j.state == S.BURIED and j.until_buried == 0 for j in buried)
    assert buried[0].fail_reason == "resource requirements cannot be met"
    assert q.reserve("big", "r1", 2) is None
    assert q.reserve("small", "r1", 2).key == "c"
    assert_consistent(q)
    q.kick(["a"], 3)
    assert q.reserve("big", "r1", 3).key == "a"


# -- restart ------------------------------------------------------------------------------


def test_restore_after_a_restart():
    """Steps: run P (r1), reserve S (r2), bury B, delay D, leave R ready and C waiting on P;
    serialise every job with to_record, restore into a new queue.
    Expected: P running (recovered, same runner, fresh TTR); S still reserved by r2 for the
    grace period, then ready; B buried; D ready; R ready; C dependent on P again and ready
    once P completes."""
    q1 = make_queue(group_of=lambda j: j.key)
    q1.add([new_job("P", dep_grps=["p"], limit_grps=["lim:2"]), new_job("S"),
            new_job("B"), new_job("D", retries=1), new_job("R"),
            new_job("C", deps=["p"])], 0)
    take(q1, "P", group="P")
    q1.reserve("S", "r2", 0)
    take(q1, "B", group="B")
    q1.end("B", "r1", EndReport("bury", exitcode=1, fail_reason="x"), 1)
    take(q1, "D", group="D")
    q1.end("D", "r1", failed(), 1)
    states = {k: j.state for k, j in q1.jobs.items()}
    assert states == {"P": S.RUNNING, "S": S.RESERVED, "B": S.BURIED, "D": S.DELAYED,
                      "R": S.READY, "C": S.DEPENDENT}
    records = [j.to_record() for j in q1.jobs.values()]

    q2 = make_queue(group_of=lambda j: j.key)
    q2.set_limit("lim", 2)  # limits come back from the store
    q2.drain()
    q2.restore([Job.from_record(r) for r in reversed(records)], 100, grace=30)
    got = {key: (old, new) for key, old, new in changes(q2)}
    assert got == {"P": (None, S.RUNNING), "S": (None, S.RESERVED), "B": (None, S.BURIED),
                   "D": (None, S.READY), "R": (None, S.READY), "C": (None, S.DEPENDENT)}
    p, s_ = q2.get("P"), q2.get("S")
    assert (p.recovered, p.reserved_by, p.attempts) == (True, "r1", 1)
    assert (s_.recovered, s_.reserved_by) == (True, "r2")
    assert q2.limit_counts["lim"] == 1
    assert q2.get("B").until_buried == 0
    assert q2.get("D").until_buried == 1
    assert q2.unresolved("C") == {"P"}
    assert_consistent(q2)
    assert q2.tick(100 + 30) == []  # S's grace is over: back to ready
    assert (s_.state, s_.reserved_by) == (S.READY, "")
    assert p.state == S.RUNNING
    assert q2.touch("P", "r1", 100 + TTR - 1) is False
    q2.end("P", "r1", ARCHIVE, 200)
    assert q2.get("C").state == S.READY
    assert_consistent(q2)


def test_restore_recomputes_dependencies_and_keeps_order():
    old = make_queue()
    old.add([new_job("a", dep_grps=["g"]), new_job("b"), new_job("c", deps=["g"])], 0)
    records = {k: j.to_record() for k, j in old.jobs.items()}
    q = make_queue()
    # "a" completed while the manager was down: c no longer waits.
    q.restore([Job.from_record(records[k]) for k in ("c", "b")], 10)
    assert q.get("c").state == S.READY
    assert [q.reserve("", "r1", 10).key for _ in range(2)] == ["b", "c"]
    [d] = q.add([new_job("d")], 11)
    assert d.seq > q.get("c").seq


def test_a_runner_can_still_start_a_job_reserved_before_a_restart():
    q1 = make_queue()
    q1.add([new_job("a")], 0)
    q1.reserve("", "r1", 0)
    q2 = make_queue()
    q2.restore([Job.from_record(j.to_record()) for j in q1.jobs.values()], 50)
    job = q2.start("a", "r1", pid=1, host="h", host_ip="", now=60)
    assert job.state == S.RUNNING
    assert q2.tick(60 + TTR - 1) == []
    assert_consistent(q2)


def test_restoring_a_job_already_queued_is_ignored():
    q = make_queue()
    [a] = q.add([new_job("a")], 0)
    q.drain()
    q.restore([Job.from_record(a.to_record())], 1)
    assert q.drain() == [] and q.get("a") is a


def test_next_deadline_is_the_earliest_timer():
    q = make_queue()
    assert q.next_deadline() == float("inf")
    q.add([new_job("a"), new_job("b")], 0)
    take(q, "a", now=5)
    q.reserve("", "r1", 10)
    assert q.next_deadline() == 5 + TTR
    q.touch("a", "r1", 30)
    assert q.next_deadline() == 10 + TTR


def test_start_time_is_the_runners_and_end_never_precedes_it():
    """A start report can arrive after the command ended (it travels while the job runs):
    Started is the runner's start time, and Ended is never before it."""
    q = Queue()
    job = Job(key="k", cmd="true")
    q.add([job], 0)
    q.reserve("", "r", 10)
    q.start("k", "r", pid=1, host="h", host_ip="i", now=12, at=10.5)
    assert job.started == 10.5
    q.end("k", "r", EndReport("archive", ended=10.4), 12)
    assert job.ended == 10.5
    q2 = Queue()
    late = Job(key="k2", cmd="true")
    q2.add([late], 0)
    q2.reserve("", "r", 1)
    q2.start("k2", "r", pid=1, host="h", host_ip="i", now=5, at=99)  # a runner clock ahead
    assert late.started == 5


def test_a_reservation_held_after_a_disconnection_goes_back_after_ttr() -> None:
    q = Queue(ttr=10)
    q.runner_connected("r")
    [job] = q.add([Job(key="k", cmd="true")], now=0.0)
    assert q.reserve("", "r", now=0.0) is job
    q.tick(now=25.0)  # its runner is connected: the reservation is kept
    assert job.state == State.RESERVED
    q.runner_disconnected("r")
    q.hold_reserved("k", "r", now=26.0)
    q.tick(now=35.0)  # within ttr of the disconnection: still R's
    assert job.state == State.RESERVED and job.reserved_by == "r"
    q.tick(now=36.5)
    assert job.state == State.READY and job.reserved_by == ""
    q.hold_reserved("k", "r", now=37.0)  # not R's any more: nothing changes
    assert job.state == State.READY
