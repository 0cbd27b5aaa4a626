"""The job queue: every state change of every job happens here, and only here.

Rules (h11-style; keep them true when you change anything):

1. Everything that affects a job's state lives in this module (and its parts: intake of jobs
   in bulk, `wr.queue_intake`; limit groups, `wr.queue_limits`; what a job asks for,
   `wr.requirements`; the records passed in and out, `wr.queue_records`). Other modules report facts
   (a runner started a job, a runner fell silent, a user asked for a kill) by calling a
   command; they never assign ``job.state``.
2. No I/O, no clock, no threads. Time is an argument (``now``) of every command that needs it,
   randomness comes from the ``rng`` given at construction. A command never awaits, so it is
   atomic on the manager's event loop without locks.
3. Commands append events (``Changed``, ``LimitChanged``) to an outbox that the caller drains
   with ``drain()``; the manager persists them and tells the world.
4. Every transition is listed in ``TRANSITIONS``; ``_move`` refuses any other, so a bug shows
   up as an exception in a test instead of a job in two states.

Theory of operation. A queued job sits in exactly one state. Ready jobs wait in one heap per
*scheduler group* (jobs with the same resource needs, so one runner can run any of them),
ordered by priority (high first) then age. A runner reserves the best ready job of its group;
it then reports ``start``, keeps the job alive with ``touch`` and ends it with ``end``. A job not
touched for ``ttr`` seconds after it started is *lost*; one reserved but never started goes
back to ready. Failed jobs wait in *delayed* for a growing back-off before the next attempt,
and are *buried* when their retries are used up. Jobs with unfinished dependencies are
*dependent* until the jobs they depend on leave the queue. Heaps use lazy deletion: an entry
is valid only while it is the one recorded for its job.

Dependencies are by dep group: a job with ``deps=["g"]`` waits for every job *currently
queued* that belongs to ``g`` — including ones added later (live dependencies). They never
go round in a circle: `check_add` and `check_replacements` refuse a change that would
close one, and `delete` removes jobs that depend on each other together, so even a cycle
restored from an older database can be removed. Who waits for whom is kept by
`wr.dependencies.Dependencies`; what that means for each job's state is decided here.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping

from wr.cycles import PendingJobs
from wr.dependencies import Dependencies
from wr.jobs import (
    DELETABLE_STATES,
    RUN_STATES,
    FailReason,
    Job,
    State,
    check_limit,
    check_limit_name,
    limit_plan,
)
from wr.learning import Recommendation
from wr.queue_intake import Intake
from wr.queue_limits import LimitBook
from wr.queue_records import (
    Changed,
    EndReport,
    LimitChanged,
    Marked,
    QueueError,
    Replaced,
    Staged,
)
from wr.requirements import adjust_requirements

__all__ = ["TRANSITIONS", "Changed", "EndReport", "LimitChanged", "Marked", "Queue",
           "QueueError", "Replaced", "Staged"]

S = State

#: Every allowed (old, new) pair; ``None`` as old means "enters the queue".
TRANSITIONS: frozenset[tuple[State | None, State]] = frozenset(
    {
        (None, S.READY), (None, S.DEPENDENT), (None, S.RUNNING), (None, S.BURIED),
        (None, S.RESERVED),
        (None, S.LOST), (None, S.DELAYED),
        (S.READY, S.RESERVED), (S.READY, S.DEPENDENT), (S.READY, S.BURIED),
        (S.READY, S.DELETED),
        (S.DELAYED, S.READY), (S.DELAYED, S.DEPENDENT), (S.DELAYED, S.DELETED),
        (S.DEPENDENT, S.READY), (S.DEPENDENT, S.DELETED),
        (S.RESERVED, S.RUNNING), (S.RESERVED, S.READY), (S.RESERVED, S.BURIED),
        (S.RESERVED, S.DELAYED), (S.RESERVED, S.DEPENDENT),
        (S.RUNNING, S.COMPLETE), (S.RUNNING, S.DELAYED), (S.RUNNING, S.READY),
        (S.RUNNING, S.BURIED), (S.RUNNING, S.LOST), (S.RUNNING, S.DEPENDENT),
        (S.LOST, S.RUNNING), (S.LOST, S.COMPLETE), (S.LOST, S.DELAYED), (S.LOST, S.READY),
        (S.LOST, S.BURIED), (S.LOST, S.DEPENDENT),
        (S.BURIED, S.READY), (S.BURIED, S.DEPENDENT), (S.BURIED, S.DELETED),
    }
)

_FOREVER = float("inf")


class Queue(Intake):
    """The in-memory queue of incomplete jobs. See the module docstring."""

    def __init__(
        self,
        *,
        ttr: float = 60.0,
        retry_delay_min: float = 30.0,
        retry_delay_max: float = 1800.0,
        group_of: Callable[[Job], str] | None = None,
        recommend: Callable[[str], Recommendation] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ttr = ttr
        self.retry_delay_min = retry_delay_min
        self.retry_delay_max = retry_delay_max
        self.group_of = group_of or (lambda job: "")
        self.recommend = recommend
        self.rng = rng or random.Random()
        self._connected: set[str] = set()
        """Runners now connected (told by the manager): their reservations do not expire
        (issue 6)."""
        self.jobs: dict[str, Job] = {}
        self._outbox: list[Changed | LimitChanged | Marked | Replaced] = []
        self._seq = 0
        self._ready: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        self._ready_entry: dict[str, tuple[int, int, str]] = {}
        self._delay: list[tuple[float, int, str]] = []
        self._delay_at: dict[str, float] = {}
        self._run: list[tuple[float, str]] = []
        self._release_at: dict[str, float] = {}
        self.deps = Dependencies()
        self._rep_grps: dict[str, dict[str, None]] = defaultdict(dict)
        self._removing: Collection[str] = ()
        """The jobs `delete` is removing together: none is made ready on the way out."""
        self.book = LimitBook()
        self.limits = self.book.limits
        self.limit_counts = self.book.counts
        self.bsub_ids = 0
        """The last LSF job id given to a job in bsub mode (wr.lsf); the manager keeps it
        in the store, so ids never repeat, even across restarts (issue 15)."""
        self.counts: Counter[State] = Counter()
        self.ready_by_group: Counter[str] = Counter()
        self.run_by_group: Counter[str] = Counter()

    # -- outbox -----------------------------------------------------------------------------

    def has_events(self) -> bool:
        """Whether commands since the last `drain` changed anything to store."""
        return bool(self._outbox)

    def drain(self) -> list[Changed | LimitChanged | Marked | Replaced]:
        """Hand over (and forget) the events produced since the last drain."""
        out, self._outbox = self._outbox, []
        return out

    # -- adding -----------------------------------------------------------------------------

    def add(self, jobs: Iterable[Job], now: float, *, prepared: bool = False,
            staged: Staged | None = None) -> list[Job]:
        """Queue new jobs; return the queue's job for each input (the existing one for a
        duplicate key), in input order. Jobs of one call may depend on each other.
        ``prepared``: every job went through `prepare` already. ``staged``: what `stage`
        worked out for them meanwhile, used for each job it still holds good for."""
        jobs = list(jobs)
        fresh: list[Job] = []
        for job in jobs if staged is None else self._add_staged(jobs, staged, now):
            if job.key not in self.jobs:
                self._insert(job, now, prepared)
                fresh.append(job)
        self._link_fresh(fresh, now)
        for job in fresh:
            self._enter(job, now)
        return [self.jobs[job.key] for job in jobs]

    def check_add(self, jobs: Iterable[Job]) -> PendingJobs | None:
        """Before new jobs are stored: raise `wr.cycles.DependencyCycle` if queuing them
        would close a dependency cycle; else count them in later checks until
        `forget_pending` (see `Dependencies.check_add`)."""
        return self.deps.check_add(jobs, self.jobs)

    def cycle_among(self, jobs: Iterable[Job]) -> str | None:
        """The refusal `check_add` would give ``jobs``, or None; changes nothing."""
        return self.deps.cycle_among(jobs, self.jobs)

    def forget_pending(self, pending: PendingJobs | None) -> None:
        """An add `check_add` passed is queued now, or given up: stop counting it."""
        self.deps.forget_pending(pending)

    def check_replacements(self, versions: Mapping[str, Job]) -> None:
        """Raise `wr.cycles.DependencyCycle` if `replace` of each key of ``versions`` with
        its value would close a dependency cycle."""
        self.deps.check_replacements(versions, self.jobs)

    def prepare(self, job: Job, limits: dict[str, int | None] | None = None) -> None:
        """Give a job its place in line (and, in bsub mode, its LSF job id) and take its
        ``name:N`` limit settings out of its limit groups, before it is stored, so that
        what is stored is what a restart will restore. The settings are applied at once,
        or, given a ``limits`` dict, collected there (the last setting of a name wins) for
        the caller to apply (with ``set_limit``) once the job is stored."""
        if not job.seq:
            self._seq += 1
            job.seq = self._seq
            if job.bsub_mode and not job.bsub_id:  # (a rerun keeps its id)
                self.bsub_ids += 1
                job.bsub_id = self.bsub_ids
        else:
            self._seq = max(self._seq, job.seq)
        if job.limit_grps:
            settings, job.limit_grps = limit_plan(job.limit_grps)
            if limits is not None:
                limits.update(settings)
            else:
                for name, limit in settings:
                    self.set_limit(name, limit)
        job.compact()

    def _insert(self, job: Job, now: float, prepared: bool = False) -> None:
        if not job.seq:
            self.prepare(job)
        else:  # prepared by the caller (and so compacted), or restored from the store
            if job.seq > self._seq:
                self._seq = job.seq
            if not prepared:
                job.compact()
        if not job.added:
            job.added = now
        self.jobs[job.key] = job
        self._rep_grps[job.rep_grp][job.key] = None
        self.deps.join(job)

    def _link_fresh(self, fresh: list[Job], now: float) -> None:
        """Resolve dependencies of newly inserted jobs; queued jobs that depend on the dep
        groups they joined wait for them too (live dependencies)."""
        for key in self.deps.link(fresh, self.jobs):
            waiter = self.jobs[key]
            if waiter.state in (S.READY, S.DELAYED):
                self._move(waiter, S.DEPENDENT)

    def _enter(self, job: Job, now: float) -> None:
        """A new (or restored) job takes its first state."""
        if self.deps.waits(job.key):
            self._move(job, S.DEPENDENT, from_state=None)
        else:
            self._make_ready(job, from_state=None)

    # -- reservation and running -----------------------------------------------------------

    def reserve(self, group: str, runner: str, now: float) -> Job | None:
        """Give ``runner`` the best ready job of ``group``, or None."""
        heap = self._ready.get(group)
        while heap:
            entry = heap[0]
            key = entry[2]
            if self._ready_entry.get(key) is not entry:
                heapq.heappop(heap)
                continue
            job = self.jobs[key]
            if not self.limits_allow(job.limit_grps, now):
                return None
            heapq.heappop(heap)
            del self._ready_entry[key]
            self.book.track(job, +1)
            job.reserved_by = runner
            job.exited = False
            job.pid = 0
            job.host = ""
            job.started = None
            job.ended = None
            job.peak_ram = 0
            job.peak_disk = 0
            job.cpu_time = 0.0
            job.exitcode = -1
            job.kill_called = False
            failures = job.retries - job.until_buried + 1
            base = min(self.retry_delay_min * (2 ** max(failures, 0)), self.retry_delay_max)
            job.delay = base + self.rng.uniform(0, self.retry_delay_min)
            self._move(job, S.RESERVED)
            self._set_release(job, now + self.ttr)
            return job
        return None

    def start(self, key: str, runner: str, *, pid: int, host: str, host_ip: str,
              now: float, at: float | None = None) -> Job:
        """The runner started the job's command (at ``at`` by its clock, if it says).

        The runner's own start time keeps Walltime true: its start report may arrive after
        the command already ended."""
        job = self._owned(key, runner, (S.RESERVED,))
        job.pid = pid
        job.host = host
        job.host_ip = host_ip
        job.started = now if at is None else min(at, now)
        job.ended = None
        job.attempts += 1
        self._move(job, S.RUNNING, why="")
        self._set_release(job, now + self.ttr)
        return job

    def touch(self, key: str, runner: str, now: float, peak_ram: int = 0) -> bool:
        """Keep a job alive; returns True when its runner should kill it instead.
        ``peak_ram``: the most memory (MB) the job has used so far, kept in case the runner
        is killed with it (issue 13 item 10: the memory bump of its retry needs it)."""
        job = self._owned(key, runner, RUN_STATES)
        if peak_ram > job.peak_ram:
            job.peak_ram = peak_ram
        if job.kill_called:
            return True
        if job.state == S.LOST:
            job.ended = None
            self._move(job, S.RUNNING, why="")
        self._set_release(job, now + self.ttr)
        return False

    def end(self, key: str, runner: str, report: EndReport, now: float) -> Job:
        """The runner finished with the job: complete it, retry it later, or bury it."""
        job = self._owned(key, runner, RUN_STATES)
        started = job.started is not None
        if report.outcome == "archive" and not started:
            raise QueueError(f"job {key} was never started, so it cannot be complete")
        if report.outcome not in ("archive", "release", "bury", "interrupted"):
            raise QueueError(f"unknown outcome {report.outcome!r}")
        self.book.track(job, -1)
        self._release_at.pop(key, None)
        job.reserved_by = ""
        job.exited = report.outcome != "interrupted"
        job.exitcode = report.exitcode
        job.peak_ram = report.peak_ram
        job.peak_disk = report.peak_disk
        job.cpu_time = report.cpu_time
        job.ended = report.ended or now
        if job.started is not None and job.ended < job.started:
            job.ended = job.started  # clocks of runner and manager differ slightly
        if report.actual_cwd:
            job.actual_cwd = report.actual_cwd
        if report.outcome == "archive":
            self._leave(job, S.COMPLETE, why="")
            return job
        if report.outcome == "interrupted":
            # The manager stopped it: put it back as if this attempt never happened.
            if started:
                job.attempts -= 1
            job.exited = False
            job.started = None
            job.ended = None
            job.exitcode = 0
            self._make_ready(job, why="")
            return job
        self._release(job, started=started, force_bury=report.outcome == "bury", now=now,
                      why=report.fail_reason)
        if job.state == S.BURIED and report.remove:
            self.delete([key], now)
        return job

    def runner_connected(self, runner: str) -> None:
        """A runner is connected (again): what it holds stays its own however long it
        takes to start (issue 6)."""
        self._connected.add(runner)

    def runner_disconnected(self, runner: str) -> None:
        """A runner's connection closed: its reservations now expire ``ttr`` after it."""
        self._connected.discard(runner)

    def hold_reserved(self, key: str, runner: str, now: float) -> None:
        """Keep a job ``runner`` reserved for another ``ttr`` from ``now`` (its connection
        just closed; it may be reconnecting with the job started), if it still holds it."""
        job = self.jobs.get(key)
        if job is not None and job.state == S.RESERVED and job.reserved_by == runner:
            self._set_release(job, now + max(self.ttr, 1.0))

    def release_unstarted(self, key: str, runner: str, now: float) -> Job:
        """A runner gave back a job it reserved but did not start (it is going away)."""
        job = self._owned(key, runner, (S.RESERVED,))
        self.book.track(job, -1)
        self._release_at.pop(key, None)
        job.reserved_by = ""
        job.exitcode = 0
        self._make_ready(job)
        return job

    def _release(self, job: Job, *, started: bool, force_bury: bool, now: float,
                 why: str) -> None:
        """wr's release rule: bury when forced or out of attempts, else back off; ``why``
        is the FailReason."""
        if force_bury or (started and job.until_buried <= 1):
            job.until_buried = 0
            self._move(job, S.BURIED, why=why)
            return
        if started:
            job.until_buried -= 1
        if job.delay <= 0:
            self._make_ready(job, why=why)
            return
        at = now + job.delay
        self._delay_at[job.key] = at
        heapq.heappush(self._delay, (at, job.seq, job.key))
        self._move(job, S.DELAYED, why=why)

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Job]:
        """Advance the clock: delays that have passed end, silent jobs become lost, and
        reservations never started are given back (unless their runner is still
        connected: `runner_connected`). Returns the jobs that just became lost
        (the manager asks the scheduler whether their processes are really gone)."""
        while self._delay and self._delay[0][0] <= now:
            at, _, key = heapq.heappop(self._delay)
            if self._delay_at.get(key) != at:
                continue
            del self._delay_at[key]
            job = self.jobs[key]
            if job.state == S.DELAYED:
                self._make_ready(job)
        lost: list[Job] = []
        while self._run and self._run[0][0] <= now:
            at, key = heapq.heappop(self._run)
            if self._release_at.get(key) != at:
                continue
            del self._release_at[key]
            job = self.jobs[key]
            if job.state == S.RESERVED and job.reserved_by in self._connected:
                # Its runner may be starting it right now (a slow runner under load): handing
                # it to another would run it twice. The runner gives it back itself, or its
                # disconnection does.
                self._set_release(job, now + max(self.ttr, 1.0))
            elif job.state == S.RESERVED:
                self.book.track(job, -1)
                job.reserved_by = ""
                self._make_ready(job)
            elif job.state == S.RUNNING:
                job.ended = now
                self._move(job, S.LOST, why=str(FailReason.LOST))
                if job.kill_called:
                    self.confirm_dead(key, now)
                else:
                    lost.append(job)
        return lost

    def postpone(self, seconds: float) -> None:
        """Move every keep-alive and reservation deadline ``seconds`` later: the manager
        could not listen that long (its loop was busy), and runners must not be blamed
        for it (issue 6: a slow runner under load is not marked lost)."""
        if seconds <= 0 or not self._release_at:
            return
        self._release_at = {key: at + seconds for key, at in self._release_at.items()}
        self._run = [(at, key) for key, at in self._release_at.items()]
        heapq.heapify(self._run)

    def next_deadline(self) -> float:
        """When ``tick`` next has something to do (inf when nothing is pending)."""
        while self._delay and self._delay_at.get(self._delay[0][2]) != self._delay[0][0]:
            heapq.heappop(self._delay)
        while self._run and self._release_at.get(self._run[0][1]) != self._run[0][0]:
            heapq.heappop(self._run)
        d = self._delay[0][0] if self._delay else _FOREVER
        r = self._run[0][0] if self._run else _FOREVER
        return min(d, r)

    def window_check(self, now: float) -> tuple[list[str], float]:
        """For the manager's clock (issue 15): the scheduler groups with ready jobs whose
        time windows have opened since the last check (their waiting runners should look
        again, and runners be wanted), and when the next closed one opens (inf: none
        will)."""
        return self.book.window_check(now, self.ready_by_group)

    def confirm_dead(self, key: str, now: float, why: str = "") -> Job:
        """A lost job's process is known to be gone: retry it later or bury it. ``why``:
        what is known of its runner's end, added to its FailReason."""
        job = self.jobs.get(key)
        if job is None or job.state != S.LOST:
            raise QueueError(f"job {key} is not lost")
        self.book.track(job, -1)
        self._release_at.pop(key, None)
        job.reserved_by = ""
        job.exited = True
        job.exitcode = -1
        job.peak_ram = 0
        job.peak_disk = 0
        job.cpu_time = 0.0
        job.ended = now
        self._release(job, started=True, force_bury=False, now=now,
                      why=f"{FailReason.LOST}: {why}" if why else str(FailReason.LOST))
        return job

    # -- user actions -----------------------------------------------------------------------

    def kill(self, keys: Iterable[str], now: float) -> list[Job]:
        """Ask for running jobs to be killed; lost ones are confirmed dead at once.

        Returns the jobs affected (those held by runners)."""
        affected = []
        for key in keys:
            job = self.jobs.get(key)
            if job is None or job.state not in RUN_STATES:
                continue
            affected.append(job)
            job.kill_called = True
            if job.state == S.LOST:
                self.confirm_dead(key, now)
            else:
                self._outbox.append(Marked(job))
        return affected

    def kick(self, keys: Iterable[str], now: float) -> list[Job]:
        """Retry buried jobs: they get all their attempts back."""
        kicked = []
        for key in keys:
            job = self.jobs.get(key)
            if job is None or job.state != S.BURIED:
                continue
            job.until_buried = job.retries + 1
            if self.deps.waits(key):
                self._move(job, S.DEPENDENT)
            else:
                self._make_ready(job)
            kicked.append(job)
        return kicked

    def delete(self, keys: Iterable[str], now: float) -> list[Job]:
        """Remove deletable jobs, except those other queued jobs still depend on (unless
        those dependants are removed in the same call: spec §4.9). Returns what was
        removed, each job before the jobs it waited for where it waited for any.

        Jobs that wait for each other in a cycle (restored from an older database: adds
        refuse cycles) go when all of them, and all their dependants, are named (issue
        13); none of them is made ready on the way out."""
        chosen = self.deps.removable(
            k for k in keys if k in self.jobs and self.jobs[k].state in DELETABLE_STATES)
        removed: list[Job] = []
        self._removing = chosen
        try:
            for key in self.deps.removal_order(chosen):
                job = self.jobs[key]
                self._leave(job, S.DELETED)
                removed.append(job)
        finally:
            self._removing = ()
        return removed

    def bury_impossible(self, group: str, now: float, why: str = "") -> list[Job]:
        """The scheduler can never run this group's jobs (``why``: which of its limits is in
        the way): bury every ready one."""
        buried = []
        reason = f"{FailReason.IMPOSSIBLE}: {why}" if why else str(FailReason.IMPOSSIBLE)
        for key in list(self._ready_entry):
            job = self.jobs[key]
            if job.sched_group != group:
                continue
            del self._ready_entry[key]
            job.until_buried = 0
            self._move(job, S.BURIED, why=reason)
            buried.append(job)
        self._ready.pop(group, None)
        return buried

    def set_limit(self, name: str, limit: int | None) -> None:
        """Set (or with None remove) the count limit of a limit group. A name or limit the
        store could not hold is a ValueError (callers check them first: issue 13)."""
        check_limit_name(name)
        if limit is None:
            if self.limits.pop(name, None) is None:
                return
        else:
            if self.limits.get(name) == check_limit(limit, str(limit)):
                return
            self.limits[name] = limit
        self._outbox.append(LimitChanged(name, limit))

    def replace(self, old_key: str, new: Job, now: float) -> Job:
        """Swap a queued, not running job for a modified version of it (``wr mod``).

        The new version may have another key (its cmd, cwd or mounts changed); jobs that
        waited for the old one wait for the new one instead. A buried job stays buried;
        any other goes through its dependencies again. The caller checks that the new key
        is free.
        """
        old = self.jobs.get(old_key)
        if old is None or old.state in RUN_STATES:
            raise QueueError(f"bad job {old_key} (not in queue or running)")
        if new.key != old_key and new.key in self.jobs:
            raise QueueError(f"job {new.key} is already in the queue")
        was = old.state
        children = self._detach(old)
        new.seq = old.seq
        new.added = old.added
        self._insert(new, now)
        self._link_fresh([new], now)
        self.deps.rekey(old_key, new.key, children)
        self._outbox.append(Replaced(old_key, new, old.rep_grp))
        if was == S.BURIED:
            self._move(new, S.BURIED, from_state=None)
        else:
            self._enter(new, now)
        return new

    def _detach(self, job: Job) -> set[str]:
        """Take a job out of every index without telling its dependants (see replace);
        returns them."""
        key = job.key
        self.counts[job.state] -= 1
        if job.state == S.READY:
            self.ready_by_group[job.sched_group] -= 1
        self._ready_entry.pop(key, None)
        self._delay_at.pop(key, None)
        del self.jobs[key]
        children = self.deps.detach(job)
        rep = self._rep_grps.get(job.rep_grp)
        if rep is not None:
            rep.pop(key, None)
        return children

    # -- queries ----------------------------------------------------------------------------

    def get(self, key: str) -> Job | None:
        return self.jobs.get(key)

    def in_rep_grp(self, rep_grp: str) -> list[Job]:
        keys = self._rep_grps.get(rep_grp, {})
        return [self.jobs[k] for k in keys if k in self.jobs]

    def rep_grp_names(self) -> list[str]:
        return [name for name, keys in self._rep_grps.items() if keys]

    def has_dependants(self, key: str) -> bool:
        return bool(self.deps.dependants.get(key))

    def unresolved(self, key: str) -> frozenset[str]:
        return frozenset(self.deps.unresolved.get(key, ()))

    # -- internals --------------------------------------------------------------------------

    def _owned(self, key: str, runner: str, states: Iterable[State]) -> Job:
        job = self.jobs.get(key)
        if job is None or job.state not in states:
            raise QueueError(f"bad job {key} (not in queue or correct state)")
        if runner and job.reserved_by != runner:
            raise QueueError(f"job {key} is reserved by another runner")
        return job

    def _make_ready(self, job: Job, from_state: State | None | str = "current",
                    why: str | None = None) -> None:
        if from_state == "current" and job.state != S.READY and self.deps.waits(job.key):
            # A live dependency arrived while a runner held the job (spec §4.8): when it
            # comes back it waits for that dependency instead of running again first.
            self._move(job, S.DEPENDENT, why=why)
            return
        self._adjust_requirements(job, why)
        group = self.group_of(job)
        if job.limit_grps:
            self.book.note_windows(group, job)
        if from_state == "current" and job.state == S.READY:
            if group != job.sched_group:
                self.ready_by_group[job.sched_group] -= 1
                self.ready_by_group[group] += 1
                job.sched_group = group
        else:
            self._move(job, S.READY, from_state=from_state, group=group, why=why)
        entry = (-job.priority, job.seq, job.key)
        self._ready_entry[job.key] = entry
        heapq.heappush(self._ready[group], entry)

    def _adjust_requirements(self, job: Job, why: str | None = None) -> None:
        """Learned values and failure bumps (spec §4.7; `wr.requirements`)."""
        adjust_requirements(job, self.recommend, why)

    def _move(self, job: Job, new: State, from_state: State | None | str = "current",
              group: str | None = None, why: str | None = None) -> None:
        """The one place a job's state is assigned, and why it failed (``why``: its new
        FailReason, "" to clear it; None leaves it); keeps the counters and the outbox.
        `_enter_ready` is its bulk form for the jobs of a big add."""
        old = job.state if from_state == "current" else from_state
        if (old, new) not in TRANSITIONS:
            raise QueueError(f"job {job.key} cannot go from {old} to {new}")
        if old is not None:
            self.counts[old] -= 1
            if old == S.READY:
                self.ready_by_group[job.sched_group] -= 1
                self._ready_entry.pop(job.key, None)
            elif old in RUN_STATES and new not in RUN_STATES:
                self.run_by_group[job.sched_group] -= 1
        if group is not None:
            job.sched_group = group
        if new not in (S.COMPLETE, S.DELETED):
            self.counts[new] += 1
            if new == S.READY:
                self.ready_by_group[job.sched_group] += 1
            elif new in RUN_STATES and old not in RUN_STATES:
                self.run_by_group[job.sched_group] += 1
        job.state = new
        if why is not None:
            job.fail_reason = why
        self._outbox.append(Changed(job, old, new))

    def _enter_ready(self, jobs: Iterable[Job]) -> None:
        """`_move` of new jobs into ready, in bulk (a big add's: `_add_staged`): their
        scheduler groups are set, the caller files them in the ready heaps."""
        n = 0
        outbox = self._outbox
        for job in jobs:
            job.state = S.READY
            outbox.append(Changed(job, None, S.READY))
            n += 1
        self.counts[S.READY] += n

    def _leave(self, job: Job, new: State, why: str | None = None) -> None:
        """The job leaves the queue (complete or deleted): its dependants may now run."""
        key = job.key
        self._move(job, new, why=why)
        del self.jobs[key]
        self._delay_at.pop(key, None)
        self._release_at.pop(key, None)
        self._ready_entry.pop(key, None)
        freed = self.deps.leave(job)
        rep = self._rep_grps.get(job.rep_grp)
        if rep is not None:
            rep.pop(key, None)
            if not rep:
                del self._rep_grps[job.rep_grp]
        for child_key in freed:
            child = self.jobs.get(child_key)
            if (child is not None and child.state == S.DEPENDENT
                    and child_key not in self._removing):
                self._make_ready(child)

    def _set_release(self, job: Job, at: float) -> None:
        self._release_at[job.key] = at
        heapq.heappush(self._run, (at, job.key))

    def limits_allow(self, names: Iterable[str], now: float) -> bool:
        """Whether a job of these limit groups may start at ``now`` (`LimitBook.allow`)."""
        return self.book.allow(names, now)
