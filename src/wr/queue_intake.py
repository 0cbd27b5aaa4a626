"""How jobs enter the queue besides one by one: a big add worked out in bulk, and a restart.

A part of `wr.queue.Queue` (its rules are there): a big add's jobs without dependencies are
worked out while the store writes them (`stage`) and then made ready in bulk
(`_add_staged`, through `Queue._enter_ready`, the bulk form of `Queue._move`); a restart
puts back what the store holds (`restore`); a completed job that an add brings back runs
afresh (`revive`).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from wr.jobs import Job, State
from wr.queue_records import Staged

if TYPE_CHECKING:
    from wr.queue import Queue

S = State


class Intake:
    """The queue's intake of jobs in bulk (mixed into `wr.queue.Queue`)."""

    def stage(self: Queue, jobs: Iterable[Job]) -> Staged:
        """Work out, before new (prepared) jobs are stored, where in the queue `add` will
        put those that depend on nothing and that nothing can depend on (no deps, dep groups
        or cmd_deps), the jobs of nearly every big add: their requirements and scheduler
        group. Changes nothing the queue shows; the manager does this while the
        store writes the jobs, so that making them queued afterwards is a few bulk
        updates instead of 100,000 moves (a third of a big add's time)."""
        staged = Staged()
        recommend = self.recommend
        for job in jobs:
            key = job.key
            if (job.deps or job.dep_grps or job.cmd_deps or not job.seq
                    or key in staged.jobs or key in self.jobs):
                continue
            if recommend is not None and job.req_grp not in staged.recommendations:
                staged.recommendations[job.req_grp] = recommend(job.req_grp)
            self._adjust_requirements(job)
            job.sched_group = self.group_of(job)
            staged.jobs[key] = job
        return staged

    def _add_staged(self: Queue, jobs: list[Job], staged: Staged, now: float) -> list[Job]:
        """`add` for the jobs `stage` worked out (in bulk, each straight to ready), if what it
        worked out still holds; returns the other jobs, for `add` to queue one by one."""
        recommend = self.recommend
        if recommend is not None and any(recommend(name) != rec for name, rec
                                         in staged.recommendations.items()):
            return jobs  # something was learned meanwhile: work it out again
        held, queued = staged.jobs, self.jobs
        taken: dict[str, Job] = {}
        others = []
        for job in jobs:
            key = job.key
            if held.get(key) is job and key not in queued and key not in taken:
                taken[key] = job
            else:
                others.append(job)
        if not taken:
            return jobs
        by_group: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        ready_entry, rep_grps = self._ready_entry, self._rep_grps
        for key, job in taken.items():
            if not job.added:
                job.added = now
            rep_grps[job.rep_grp][key] = None
            entry = ready_entry[key] = (-job.priority, job.seq, key)
            by_group[job.sched_group].append(entry)
        queued.update(taken)
        for group, new in by_group.items():
            self.book.note_windows(group, taken[new[0][2]])
            heap = self._ready[group]
            if len(heap) <= len(new):  # cheaper to rebuild than to push each
                heap.extend(new)
                heapq.heapify(heap)
            else:
                for entry in new:
                    heapq.heappush(heap, entry)
            self.ready_by_group[group] += len(new)
        self._enter_ready(taken.values())  # the moves `_make_ready` would make, in bulk
        return others

    def restore(self: Queue, jobs: Iterable[Job], now: float, grace: float | None = None
                ) -> None:
        """Put back jobs read from the store after a manager restart.

        Jobs held by a runner stay held (their runners may still report): running ones with
        a fresh keep-alive deadline, reserved ones for ``grace`` seconds (default ``ttr``)
        before they go back to ready, so a runner that started one just before a crash can
        still claim it. Buried stay buried; delayed become ready; the rest wait on their
        dependencies again.
        """
        fresh = []
        for job in jobs:
            if job.key in self.jobs:
                continue
            self._insert(job, now)
            fresh.append(job)
        self._link_fresh(fresh, now)
        for job in fresh:
            old = job.state
            if old == S.RESERVED and job.reserved_by:
                job.recovered = True
                self.book.track(job, +1)
                self._move(job, S.RESERVED, from_state=None)
                self._set_release(job, now + (self.ttr if grace is None else grace))
            elif old in (S.RUNNING, S.LOST):
                job.recovered = True
                self.book.track(job, +1)
                self._move(job, S.RUNNING if old == S.RUNNING else S.LOST, from_state=None)
                self._set_release(job, now + self.ttr)
            elif old == S.BURIED:
                self._move(job, S.BURIED, from_state=None)
            else:
                job.reserved_by = ""
                self._enter(job, now)

    def revive(self: Queue, job: Job) -> None:
        """A completed job an add brings back (a live dependency of one of its jobs, spec
        §4.8) runs afresh: its results are forgotten and it gets a new place in line, then
        `add` queues it (a completed job has no fail reason to forget)."""
        job.until_buried = job.retries + 1
        job.exited = False
        job.exitcode = 0
        job.pid = 0
        job.started = None
        job.ended = None
        job.reserved_by = ""
        job.seq = 0
        self.prepare(job)
