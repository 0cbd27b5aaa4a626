"""Who waits for whom among the queued jobs: the index behind `wr.queue.Queue`'s
dependencies (spec rest-and-queue §4.8-4.9).

A job waits for every queued job of the dep groups its ``deps`` name, including ones that
join later (live dependencies), and for the queued jobs its ``cmd_deps`` name by key. This
module keeps those waits; the queue decides what they mean for each job's state (rule 1
of `wr.queue`: no state changes here). It also keeps them free of cycles: `check_add` and
`check_replacements` refuse a change that would close one (`wr.cycles`), and `removable`
lets jobs that wait for each other be removed together, so a cycle restored from an older
database can still go (issue 13).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping

from wr.cycles import (
    DependencyCycle,
    DependencyGraph,
    PendingJobs,
    cannot_close_cycle,
    describe,
    find_cycle,
    pending_of,
)
from wr.jobs import Job

_NO_PARENTS: set[str] = frozenset()  # type: ignore[assignment]
"""What `parents_of` answers for the many jobs without dependencies (never changed)."""


class Dependencies:
    """The dependency index of one queue. Keys only: the queue holds the jobs."""

    def __init__(self) -> None:
        self.unresolved: dict[str, set[str]] = {}
        """Job -> the queued jobs it still waits for."""
        self.dependants: dict[str, set[str]] = defaultdict(set)
        """Job -> the queued jobs waiting for it."""
        self.members: dict[str, set[str]] = defaultdict(set)
        """Dep group -> its queued jobs."""
        self.waiters: dict[str, set[str]] = defaultdict(set)
        """Dep group -> the queued jobs that wait for it."""
        self.pending: list[PendingJobs] = []
        """Adds that passed `check_add` and are being stored: later checks count them."""

    # -- jobs coming and going ----------------------------------------------------------------

    def join(self, job: Job) -> None:
        """A job entered the queue: index its dep groups and the groups it waits for."""
        for grp in job.dep_grps:
            self.members[grp].add(job.key)
        for grp in job.deps:
            self.waiters[grp].add(job.key)

    def link(self, fresh: list[Job], jobs: Mapping[str, Job]) -> list[str]:
        """Work out what newly joined jobs wait for, and make queued jobs that wait for the
        dep groups they joined wait for them too (live dependencies). Returns the keys of
        those queued jobs, for the queue to send back to waiting if they were ready."""
        fresh_keys = {j.key for j in fresh}
        for job in fresh:
            parents = self.parents_of(job, jobs)
            if parents:
                self.unresolved[job.key] = parents
        joined: dict[str, set[str]] = defaultdict(set)
        for job in fresh:
            for grp in job.dep_grps:
                joined[grp].add(job.key)
        gained = []
        for grp, new_members in joined.items():
            for waiter_key in self.waiters.get(grp, ()):
                if waiter_key in fresh_keys:
                    continue
                parents = new_members - {waiter_key}
                if not parents:
                    continue
                self.unresolved.setdefault(waiter_key, set()).update(parents)
                for p in parents:
                    self.dependants[p].add(waiter_key)
                gained.append(waiter_key)
        return gained

    def parents_of(self, job: Job, jobs: Mapping[str, Job]) -> set[str]:
        """The queued jobs ``job`` waits for (never itself), recorded as its parents."""
        if not job.deps and not job.cmd_deps:
            return _NO_PARENTS
        parents: set[str] = set()
        for grp in job.deps:
            parents |= self.members.get(grp, set())
        for key in job.cmd_deps:
            if key in jobs:
                parents.add(key)
        parents.discard(job.key)
        for p in parents:
            self.dependants[p].add(job.key)
        return parents

    def waits(self, key: str) -> bool:
        """Whether the job still waits for a queued job."""
        return bool(self.unresolved.get(key))

    def leave(self, job: Job) -> list[str]:
        """The job left the queue (complete or deleted): forget it, and return the jobs
        that waited for it and now wait for nothing."""
        key = job.key
        for grp in job.dep_grps:
            members = self.members.get(grp)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.members[grp]
        for grp in job.deps:
            waiters = self.waiters.get(grp)
            if waiters is not None:
                waiters.discard(key)
                if not waiters:
                    del self.waiters[grp]
        self._forget_parents(key, drop_empty=True)
        freed = []
        for child_key in self.dependants.pop(key, ()):
            unresolved = self.unresolved.get(child_key)
            if unresolved is None:
                continue
            unresolved.discard(key)
            if not unresolved:
                freed.append(child_key)
        return freed

    def detach(self, job: Job) -> set[str]:
        """Take a job out of the index without telling the jobs that wait for it (it is
        being replaced: `rekey`); returns those jobs."""
        key = job.key
        for grp in job.dep_grps:
            self.members[grp].discard(key)
        for grp in job.deps:
            self.waiters[grp].discard(key)
        self._forget_parents(key, drop_empty=False)
        return self.dependants.pop(key, set())

    def rekey(self, old_key: str, new_key: str, children: Iterable[str]) -> None:
        """Jobs that waited for ``old_key`` (from `detach`) wait for ``new_key`` instead."""
        for child in children:
            unresolved = self.unresolved.get(child)
            if unresolved is not None and old_key in unresolved:
                unresolved.discard(old_key)
                unresolved.add(new_key)
                self.dependants[new_key].add(child)

    def _forget_parents(self, key: str, *, drop_empty: bool) -> None:
        for parent in self.unresolved.pop(key, ()):
            deps = self.dependants.get(parent)
            if deps is not None:
                deps.discard(key)
                if drop_empty and not deps:
                    del self.dependants[parent]

    # -- removing -------------------------------------------------------------------------

    def removable(self, chosen: Iterable[str]) -> dict[str, None]:
        """Of the ``chosen`` jobs, those that may be removed together: each job whose every
        dependant goes too (spec §4.9), jobs in a cycle included (issue 13)."""
        keep = dict.fromkeys(chosen)
        check = list(keep)
        while check:
            key = check.pop()
            if key in keep and any(d not in keep for d in self.dependants.get(key, ())):
                del keep[key]  # something stays that waits for it: it stays, and so on up
                check.extend(p for p in self.unresolved.get(key, ()) if p in keep)
        return keep

    def removal_order(self, keys: Collection[str]) -> list[str]:
        """``keys`` (a `removable` set) with each job before the jobs it waits for, so
        removing them in this order frees no job that is itself about to go; jobs on a
        cycle are ordered as far as the cycle allows."""
        order: list[str] = []
        seen: set[str] = set()
        for root in keys:
            if root in seen:
                continue
            seen.add(root)
            work = [(root, iter(self.dependants.get(root, ())))]
            while work:
                node, below = work[-1]
                for child in below:
                    if child not in seen:
                        seen.add(child)
                        work.append((child, iter(self.dependants.get(child, ()))))
                        break
                else:
                    work.pop()
                    order.append(node)
        return order

    # -- cycles ---------------------------------------------------------------------------

    def check_add(self, jobs: Iterable[Job], queued: Mapping[str, Job], *,
                  outcome: str = "nothing was added") -> PendingJobs | None:
        """Before new jobs are stored: raise `DependencyCycle` if queuing them (after the
        adds checked before them and not yet queued) would make jobs wait for each other
        in a cycle. Else count them in later checks until `forget_pending` is given what
        this returns (None: none of them waits for anything, so none can be on a cycle
        and nothing was checked)."""
        pending = pending_of(jobs, queued)
        if pending is None:
            return None
        if self.pending or not cannot_close_cycle(pending, self.waiters):
            held = [*self.pending, pending]
            graph = DependencyGraph(queued, self.members, self.unresolved, held)
            cycle = find_cycle(self._awaited(pending, held), graph.waits_for, pending.jobs)
            if cycle is not None:
                raise DependencyCycle(describe(cycle, graph.cmd_of, outcome), cycle)
        self.pending.append(pending)
        return pending

    def cycle_among(self, jobs: Iterable[Job], queued: Mapping[str, Job]) -> str | None:
        """What `check_add` would refuse ``jobs`` with, or None; changes nothing. For jobs
        that are stored already and will be queued anyway (see `wr.manager.core`)."""
        try:
            self.forget_pending(self.check_add(
                jobs, queued, outcome="they are stored, and wait until removed together"))
        except DependencyCycle as exc:
            return exc.message
        return None

    def _awaited(self, pending: PendingJobs, held: list[PendingJobs]) -> list[str]:
        """The jobs of ``pending`` that something could wait for: only they can be on a
        cycle, so only they need a search (none, in an add of jobs that only wait for
        queued ones)."""
        waited = {grp for p in held for job in p.jobs.values() for grp in job.deps}
        named = {key for p in held for job in p.jobs.values() for key in job.cmd_deps}
        waiters = self.waiters
        return [key for key, job in pending.jobs.items()
                if key in named or any(g in waited or waiters.get(g) for g in job.dep_grps)]

    def forget_pending(self, pending: PendingJobs | None) -> None:
        """An add `check_add` passed is queued now, or given up: stop counting it."""
        self.pending = [p for p in self.pending if p is not pending]

    def check_replacements(self, versions: Mapping[str, Job],
                           queued: Mapping[str, Job]) -> None:
        """Raise `DependencyCycle` if replacing the queued jobs named by the keys of
        ``versions`` with their values (``wr mod`` changing deps or cmd_deps) would make
        jobs wait for each other in a cycle."""
        changed = {key: new for key, new in versions.items()
                   if key in queued and (new.deps or new.cmd_deps)}
        if not changed:
            return
        graph = DependencyGraph(queued, self.members, self.unresolved, self.pending,
                                changed)
        cycle = find_cycle(changed, graph.waits_for, changed)
        if cycle is not None:
            raise DependencyCycle(describe(cycle, graph.cmd_of, "nothing was modified"),
                                  cycle)
