"""Queue invariants under random command sequences (hypothesis rule-based state machine).

Rules call the queue's commands the way the manager would (only for jobs in a state the command
applies to, plus deliberate misuse that must be refused without side effects); invariants,
checked after every step, say what must stay true whatever happened:

* every job is in exactly one queued state, and ``counts``, ``ready_by_group``,
  ``run_by_group`` and ``limit_counts`` equal recounts;
* replaying the drained ``Changed`` events gives each job's current state, every one is a
  ``TRANSITIONS`` pair, and no job is lost: each key ever added is queued or was reported
  complete/deleted exactly once;
* a job's unresolved dependencies are exactly the queued members of its dep groups (and its
  queued cmd_deps), so dependants never run before their dependencies;
* count limits are never exceeded.
"""

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from wr.jobs import QUEUED_STATES, RUN_STATES, FailReason, Job, State
from wr.queue import TRANSITIONS, Changed, EndReport, LimitChanged, Marked, Queue, QueueError

S = State
TTR = 10.0
DEP_GROUPS = ("g0", "g1")
LIMITS = {"one": 1, "two": 2}
SCHED_GROUPS = ("", "one", "two", "one~two")
RUNNERS = ("ra", "rb")
TERMINAL = (S.COMPLETE, S.DELETED)
REASONS = (FailReason.EXIT, FailReason.RAM, FailReason.TIME, FailReason.KILLED)


def group_of(job: Job) -> str:
    """Like wr, limit groups are part of the scheduler group."""
    return "~".join(job.limit_grps)


job_specs = st.fixed_dictionaries(
    {
        "deps": st.lists(st.sampled_from(DEP_GROUPS), max_size=2, unique=True),
        "dep_grps": st.lists(st.sampled_from(DEP_GROUPS), max_size=2, unique=True),
        "cmd_deps": st.lists(st.integers(0, 30), max_size=2, unique=True),
        "priority": st.integers(0, 3),
        "retries": st.integers(0, 2),
        "limit_grps": st.lists(st.sampled_from(sorted(LIMITS)), max_size=2, unique=True),
        "rep_grp": st.sampled_from(("r1", "r2")),
    }
)


class QueueMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.q = self._new_queue()
        self.now = 0.0
        self.serial = 0
        self.added: set[str] = set()
        self.finished: dict[str, State] = {}  # key -> COMPLETE/DELETED, from the events
        self.replay: dict[str, State] = {}  # key -> state, from the events
        self.deadline: dict[str, float] = {}  # TTR deadline of reserved/running jobs

    def _new_queue(self) -> Queue:
        return Queue(ttr=TTR, retry_delay_min=3.0, retry_delay_max=20.0, group_of=group_of,
                     rng=random.Random(0))

    # -- helpers ----------------------------------------------------------------------------

    def keys_in(self, *states: State) -> list[str]:
        return sorted(k for k, j in self.q.jobs.items() if j.state in states)

    def pick(self, data, *states: State) -> str | None:
        """A queued job in one of ``states`` (any state when none given), or None."""
        keys = self.keys_in(*states) if states else sorted(self.q.jobs)
        return data.draw(st.sampled_from(keys)) if keys else None

    def settle(self) -> None:
        """Drain the outbox and replay it onto our model of the queue."""
        for event in self.q.drain():
            if isinstance(event, LimitChanged):
                assert LIMITS.get(event.name) == event.limit
                continue
            if isinstance(event, Marked):  # a kill asked for: the job's record changed
                assert event.job.kill_called and event.job.key in self.q.jobs
                continue
            assert isinstance(event, Changed)
            key = event.job.key
            assert (event.old, event.new) in TRANSITIONS
            assert self.replay.get(key) == event.old, (key, event)
            if event.new in TERMINAL:
                assert key not in self.finished, f"{key} reported {event.new} twice"
                self.finished[key] = event.new
                del self.replay[key]
                self.deadline.pop(key, None)
            else:
                self.replay[key] = event.new

    def snapshot(self):
        return {k: (j.state, j.until_buried, j.reserved_by, j.attempts)
                for k, j in self.q.jobs.items()}

    def refused(self, call) -> None:
        """``call`` must raise QueueError and change nothing."""
        before = self.snapshot()
        with pytest.raises(QueueError):
            call()
        assert self.snapshot() == before
        assert self.q.drain() == []

    def check_can_run(self, job: Job) -> None:
        """A reserved job has no queued dependency left."""
        assert not (self.q.unresolved(job.key) & self.q.jobs.keys())
        for key, other in self.q.jobs.items():
            if key != job.key:
                assert not set(other.dep_grps) & set(job.deps), (job.key, "needs", key)
                assert key not in job.cmd_deps

    # -- commands ---------------------------------------------------------------------------

    @initialize(specs=st.lists(job_specs, min_size=1, max_size=6))
    def first_jobs(self, specs):
        self.add(specs)

    @rule(specs=st.lists(job_specs, min_size=1, max_size=3))
    def add(self, specs):
        jobs = []
        for spec in map(dict, specs):  # (copies: hypothesis prints what it drew)
            self.serial += 1
            key = f"k{self.serial}"
            cmd_deps = [f"k{n}" for n in spec.pop("cmd_deps") if n < self.serial]
            limit_grps = [f"{name}:{LIMITS[name]}" for name in spec.pop("limit_grps")]
            jobs.append(Job(key=key, cmd=f"echo {key}", cmd_deps=cmd_deps,
                            limit_grps=limit_grps, until_buried=spec["retries"] + 1, **spec))
        result = self.q.add(jobs, self.now)
        assert result == jobs
        self.added.update(j.key for j in jobs)
        for job in jobs:
            assert job.state in (S.READY, S.DEPENDENT)
            assert list(job.limit_grps) == sorted(job.limit_grps)
            assert ":" not in "".join(job.limit_grps)
        self.settle()

    @rule(data=st.data())
    def add_duplicate(self, data):
        key = self.pick(data)
        if key is None:
            return
        existing = self.q.jobs[key]
        [got] = self.q.add([Job(key=key, cmd="other", priority=9)], self.now)
        assert got is existing
        assert self.q.drain() == []

    @rule(data=st.data(), runner=st.sampled_from(RUNNERS), and_start=st.booleans())
    def reserve(self, data, runner, and_start):
        ready_groups = sorted({self.q.jobs[k].sched_group for k in self.keys_in(S.READY)})
        # Mostly a group with ready jobs; sometimes any group (an empty one gives nothing).
        mostly = ready_groups and data.draw(st.integers(0, 9)) > 0
        group = data.draw(st.sampled_from(ready_groups if mostly else SCHED_GROUPS))
        ready = [j for j in self.q.jobs.values() if j.state == S.READY and j.sched_group == group]
        best = min(ready, key=lambda j: (-j.priority, j.seq), default=None)
        job = self.q.reserve(group, runner, self.now)
        if job is None:
            if best is not None:  # only a full limit group may hold the best job back
                assert any(self.q.limit_counts[g] >= self.q.limits.get(g, 1 << 30)
                           for g in best.limit_grps)
        else:
            assert job is best
            assert (job.state, job.reserved_by) == (S.RESERVED, runner)
            base = min(3.0 * 2 ** (job.retries - job.until_buried + 1), 20.0)
            assert base <= job.delay <= base + 3.0
            self.check_can_run(job)
            self.deadline[job.key] = self.now + TTR
            if and_start:
                self.q.start(job.key, runner, pid=1, host="h", host_ip="", now=self.now)
                assert job.state == S.RUNNING and job.attempts >= 1
        self.settle()

    @rule(data=st.data())
    def start(self, data):
        key = self.pick(data, S.RESERVED)
        if key is None:
            return
        job = self.q.jobs[key]
        attempts = job.attempts
        self.q.start(key, job.reserved_by, pid=1, host="h", host_ip="", now=self.now)
        assert (job.state, job.attempts, job.started) == (S.RUNNING, attempts + 1, self.now)
        self.deadline[key] = self.now + TTR
        self.settle()

    @rule(data=st.data())
    def touch(self, data):
        key = self.pick(data, *RUN_STATES)
        if key is None:
            return
        job = self.q.jobs[key]
        killed, state = job.kill_called, job.state
        assert self.q.touch(key, job.reserved_by, self.now) is killed
        if not killed:
            assert job.state == (S.RUNNING if state == S.LOST else state)
            self.deadline[key] = self.now + TTR
        self.settle()

    @rule(data=st.data(), runner=st.sampled_from(("ra", "rb", "intruder")))
    def misuse(self, data, runner):
        """Commands for the wrong runner or in the wrong state are refused, harmlessly."""
        key = self.pick(data)
        if key is None:
            return
        job = self.q.jobs[key]
        if job.state in RUN_STATES and runner != job.reserved_by:
            self.refused(lambda: self.q.touch(key, runner, self.now))
            self.refused(lambda: self.q.end(key, runner, EndReport("release"), self.now))
        if job.state != S.RESERVED:
            self.refused(lambda: self.q.start(key, job.reserved_by or runner, pid=1, host="h",
                                              host_ip="", now=self.now))
            self.refused(lambda: self.q.release_unstarted(key, job.reserved_by, self.now))
        if job.state not in RUN_STATES:
            self.refused(lambda: self.q.touch(key, runner, self.now))
            self.refused(lambda: self.q.end(key, runner, EndReport("archive"), self.now))
        if job.state != S.LOST:
            self.refused(lambda: self.q.confirm_dead(key, self.now))
        if job.state == S.RESERVED:
            self.refused(lambda: self.q.end(key, job.reserved_by, EndReport("archive"),
                                            self.now))

    @rule(data=st.data(),
          outcome=st.sampled_from(("archive", "release", "bury", "interrupted")),
          reason=st.sampled_from(REASONS), peak_ram=st.sampled_from((0, 3000)),
          remove=st.booleans())
    def end(self, data, outcome, reason, peak_ram, remove):
        key = self.pick(data, *RUN_STATES)
        if key is None:
            return
        job = self.q.jobs[key]
        started = job.started is not None
        report = EndReport(outcome, exitcode=0 if outcome == "archive" else 1,
                           fail_reason="" if outcome == "archive" else str(reason),
                           peak_ram=peak_ram, remove=remove, ended=self.now)
        if outcome == "archive" and not started:
            self.refused(lambda: self.q.end(key, job.reserved_by, report, self.now))
            return
        until_buried = job.until_buried
        self.q.end(key, job.reserved_by, report, self.now)
        self.deadline.pop(key, None)
        if outcome == "archive":
            assert job.state == S.COMPLETE and key not in self.q.jobs
        elif outcome == "interrupted":
            assert job.state in (S.READY, S.DEPENDENT)
            assert job.until_buried == until_buried
        elif outcome == "bury" or (started and until_buried <= 1):
            assert job.state in (S.BURIED, S.DELETED) and job.until_buried == 0
        else:
            assert job.state in (S.DELAYED, S.READY, S.DEPENDENT)
            assert job.until_buried == until_buried - started
        self.settle()

    @rule(data=st.data())
    def release_unstarted(self, data):
        key = self.pick(data, S.RESERVED)
        if key is None:
            return
        job = self.q.jobs[key]
        self.q.release_unstarted(key, job.reserved_by, self.now)
        assert job.state in (S.READY, S.DEPENDENT)
        self.deadline.pop(key, None)
        self.settle()

    @rule(dt=st.one_of(st.integers(0, 25), st.floats(0, 3, allow_nan=False)))
    def tick(self, dt):
        self.now += dt
        overdue = {k for k, at in self.deadline.items() if at <= self.now
                   and self.q.jobs[k].state in (S.RESERVED, S.RUNNING)}
        lost = self.q.tick(self.now)
        for job in lost:
            assert job.key in overdue and job.state == S.LOST and not job.kill_called
            assert job.fail_reason == str(FailReason.LOST)
        for key in overdue:
            assert self.q.jobs[key].state not in (S.RESERVED, S.RUNNING)
            del self.deadline[key]
        assert self.q.next_deadline() > self.now
        self.settle()

    @rule(data=st.data())
    def kill(self, data):
        keys = data.draw(st.lists(st.sampled_from(sorted(self.added)), max_size=3)
                         if self.added else st.just([]))
        held = {k for k in keys if k in self.q.jobs and self.q.jobs[k].state in RUN_STATES}
        affected = self.q.kill(keys, self.now)
        assert {j.key for j in affected} == held
        for job in affected:
            if job.state in RUN_STATES:
                assert job.kill_called and job.state != S.LOST
        self.settle()

    @rule(data=st.data())
    def confirm_dead(self, data):
        key = self.pick(data, S.LOST)
        if key is None:
            return
        job = self.q.confirm_dead(key, self.now)
        assert job.state in (S.DELAYED, S.READY, S.DEPENDENT, S.BURIED)
        assert job.reserved_by == ""
        self.settle()

    @rule(data=st.data())
    def kick(self, data):
        keys = data.draw(st.lists(st.sampled_from(sorted(self.added)), max_size=3)
                         if self.added else st.just([]))
        buried = {k for k in keys if k in self.q.jobs and self.q.jobs[k].state == S.BURIED}
        kicked = self.q.kick(keys, self.now)
        assert {j.key for j in kicked} == buried
        for job in kicked:
            assert job.until_buried == job.retries + 1
            waiting = bool(self.q.unresolved(job.key))
            assert job.state == (S.DEPENDENT if waiting else S.READY)
        self.settle()

    @rule(data=st.data())
    def delete(self, data):
        keys = data.draw(st.lists(st.sampled_from(sorted(self.added)), max_size=3)
                         if self.added else st.just([]))
        before = {k: self.q.jobs[k].state for k in keys if k in self.q.jobs}
        removed = self.q.delete(keys, self.now)
        removed_keys = {j.key for j in removed}
        assert removed_keys <= before.keys()
        for key in removed_keys:
            assert before[key] in (S.DELAYED, S.READY, S.BURIED, S.DEPENDENT)
            assert key not in self.q.jobs
        for key, state in before.items():
            if key not in removed_keys and state in (S.DELAYED, S.READY, S.BURIED,
                                                     S.DEPENDENT):
                assert self.q.deps.dependants.get(key)  # only dependants can keep a job
        self.settle()

    @rule(group=st.sampled_from(SCHED_GROUPS[2:]))
    def bury_impossible(self, group):
        ready = set(self.keys_in(S.READY))
        expected = {k for k in ready if self.q.jobs[k].sched_group == group}
        buried = self.q.bury_impossible(group, self.now)
        assert {j.key for j in buried} == expected
        assert all(j.state == S.BURIED for j in buried)
        self.settle()

    @rule()
    def restart(self):
        """The manager restarts: jobs come back from their stored records."""
        records = [j.to_record() for j in self.q.jobs.values()]
        states = {j.key: j.state for j in self.q.jobs.values()}
        limits = dict(self.q.limits)
        self.q = self._new_queue()
        for name, limit in limits.items():
            self.q.set_limit(name, limit)
        self.replay = {}
        self.q.restore([Job.from_record(r) for r in records], self.now)
        for key, job in self.q.jobs.items():
            old = states[key]
            if old in (S.RESERVED, S.RUNNING, S.LOST, S.BURIED):
                assert job.state == old
            else:
                assert job.state in (S.READY, S.DEPENDENT)
            if job.state in RUN_STATES:
                assert job.recovered
                self.deadline[key] = self.now + TTR
            else:
                self.deadline.pop(key, None)
        self.settle()

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def states_are_counted(self):
        jobs = self.q.jobs.values()
        assert all(j.state in QUEUED_STATES for j in jobs)
        assert all(n >= 0 for n in self.q.counts.values())
        assert {s: n for s, n in self.q.counts.items() if n} == Counter(j.state for j in jobs)

    @invariant()
    def groups_are_counted(self):
        jobs = self.q.jobs.values()
        assert all(n >= 0 for n in self.q.ready_by_group.values())
        assert all(n >= 0 for n in self.q.run_by_group.values())
        assert {g: n for g, n in self.q.ready_by_group.items() if n} == Counter(
            j.sched_group for j in jobs if j.state == S.READY)
        assert {g: n for g, n in self.q.run_by_group.items() if n} == Counter(
            j.sched_group for j in jobs if j.state in RUN_STATES)

    @invariant()
    def events_tell_the_whole_story(self):
        assert self.replay == {k: j.state for k, j in self.q.jobs.items()}
        assert self.added == self.q.jobs.keys() | self.finished.keys()
        assert not self.q.jobs.keys() & self.finished.keys()

    @invariant()
    def dependencies_are_exactly_the_queued_parents(self):
        for key, job in self.q.jobs.items():
            parents = {k for k, other in self.q.jobs.items()
                       if set(other.dep_grps) & set(job.deps)} | set(job.cmd_deps)
            parents = (parents & self.q.jobs.keys()) - {key}
            assert self.q.unresolved(key) == parents, key
            if job.state == S.DEPENDENT:
                assert parents, f"{key} would wait forever"
            if job.state == S.READY:  # (a reserved job may gain a live dependency)
                assert not parents, f"{key} could run before {parents}"
            assert bool(self.q.deps.dependants.get(key)) == any(
                key in self.q.unresolved(k) for k in self.q.jobs)

    @invariant()
    def limits_hold(self):
        held = Counter(g for j in self.q.jobs.values() if j.state in RUN_STATES
                       for g in j.limit_grps)
        assert dict(self.q.limit_counts) == held
        for name, limit in self.q.limits.items():
            assert self.q.limit_counts[name] <= limit

    @invariant()
    def job_fields_agree_with_states(self):
        for job in self.q.jobs.values():
            assert (job.state in RUN_STATES) == bool(job.reserved_by)
            if job.state == S.BURIED:
                assert job.until_buried == 0
            else:
                assert 1 <= job.until_buried <= job.retries + 1
            assert job.attempts >= 0


QueueMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestQueueMachine = QueueMachine.TestCase
