"""Dependency cycles: finding the one an add or a modification would close (issue 13).

A job waits for every queued job of the dep groups it names in ``deps`` (live: members
added later count too) and for the queued jobs its ``cmd_deps`` name by key. Were those
waits to go round in a circle, no job on it could ever start, and wr has no check (spec
rest-and-queue §4.8: "a job that depends on a dep group it belongs to waits forever"; here
a job never waits for itself). So `wr.dependencies` looks for one here before an add or a
modification of dependencies is stored, and refuses it with `DependencyCycle`, naming the
jobs on the cycle.

Theory. Draw an edge from each job to each job it waits for. A cycle the change closes
must pass through a job whose edges are new (a new job that waits for something, or a job
whose ``deps`` were modified): every other job's edges only gain new jobs as targets. So
the search starts from those jobs, follows edges wherever they lead, and finds the
strongly connected components of what it reaches (Tarjan's algorithm, iteratively, so a
chain of 100,000 jobs needs no deep recursion). A component of two or more jobs holding a
changed job is a cycle the change closes; components of old jobs only are left alone (a
database written before this check may hold one, and `Queue.delete` can remove them).
Jobs that wait for nothing are dead ends, so an add where no job waits for anything (nearly
every big add) needs no search at all; nor does one where no queued job waits for a group
its jobs join and its jobs wait for each other in no cycle (`cannot_close_cycle`: one
sweep when they come parents first, else a topological sort).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

from wr.errors import BadRequest
from wr.jobs import Job, jobs_that_wait

SHOWN_JOBS = 6
"""Jobs of a cycle named in its refusal; a longer one says how many more there are."""
SHOWN_CMD = 40
"""Characters of each command shown in a refusal."""


class DependencyCycle(BadRequest):
    """A change would make jobs wait for each other in a circle; ``keys`` are the jobs of
    the cycle in order, each waiting for the next and the last for the first."""

    def __init__(self, message: str, keys: Sequence[str]) -> None:
        super().__init__(message)
        self.keys = list(keys)


def find_cycle(starts: Iterable[str], waits_for: Callable[[str], Collection[str]],
               changed: Container[str]) -> list[str] | None:
    """A cycle through a ``changed`` job among the jobs reachable from ``starts`` along
    ``waits_for`` (each job's edges), as keys in order; None if there is none."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in starts:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(waits_for(root)))]
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(waits_for(nxt))))
                    break
                if nxt in on_stack and index[nxt] < low[node]:
                    low[node] = index[nxt]
            else:  # every edge of node followed
                work.pop()
                at = low[node]
                if work and at < low[work[-1][0]]:
                    low[work[-1][0]] = at
                if at != index[node]:
                    continue
                if stack[-1] == node:  # a component of one job (nearly all): no cycle
                    stack.pop()
                    on_stack.discard(node)
                    continue
                component = _pop_component(stack, on_stack, node)
                hit = next((k for k in component if k in changed), None)
                if hit is not None:
                    return _cycle_through(hit, component, waits_for)
    return None


def _pop_component(stack: list[str], on_stack: set[str], root: str) -> set[str]:
    component = set()
    while True:
        key = stack.pop()
        on_stack.discard(key)
        component.add(key)
        if key == root:
            return component


def _cycle_through(start: str, component: set[str],
                   waits_for: Callable[[str], Collection[str]]) -> list[str]:
    """The shortest cycle from ``start`` back to it inside its component (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in waits_for(node):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                if nxt in component and nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def describe(cycle: Sequence[str], cmd_of: Callable[[str], str], outcome: str) -> str:
    """The refusal of a change that would close ``cycle``: its jobs by key and (shortened)
    command, each waiting for the next, and ``outcome`` (what became of the change)."""
    shown = [f"{key} ({_short(cmd_of(key))})" for key in cycle[:SHOWN_JOBS]]
    more = len(cycle) - len(shown)
    if more:
        shown.append(f"... {more:,} more ...")
    shown.append(cycle[0])
    return (f"these jobs would wait for each other in a cycle, so none of them could ever "
            f"start (each waits for the next): {' -> '.join(shown)}; {outcome}")


def _short(cmd: str) -> str:
    return cmd if len(cmd) <= SHOWN_CMD else cmd[:SHOWN_CMD - 3] + "..."


@dataclass(slots=True)
class PendingJobs:
    """The jobs of an add checked by `Queue.check_add` but not queued yet that wait for
    something (the others cannot be on a cycle), and the dep groups they join."""

    jobs: dict[str, Job]
    members: dict[str, list[str]]


def pending_of(jobs: Iterable[Job], queued: Container[str]) -> PendingJobs | None:
    """The jobs among ``jobs`` that an add would queue and that wait for something (the
    first of each key, as `Queue.add` takes it); None if there are none."""
    found: dict[str, Job] = {}
    for job in jobs_that_wait(jobs):
        if job.key not in queued and job.key not in found:
            found[job.key] = job
    if not found:
        return None
    members: dict[str, list[str]] = {}
    for key, job in found.items():
        for grp in job.dep_grps:
            members.setdefault(grp, []).append(key)
    return PendingJobs(found, members)


def cannot_close_cycle(pending: PendingJobs, waiters: Mapping[str, Collection[str]]) -> bool:
    """True when no cycle can pass through ``pending``, found without `find_cycle`'s
    search (which costs five times as much): no queued job waits for a group one of them
    joins (so a path into queued jobs never comes back), and the jobs waiting for each
    other within the add form no cycle. That takes one sweep when each job waits only for
    jobs listed before it (chains and fan-ins, parents first), else a topological sort."""
    if any(waiters.get(grp) for grp in pending.members):
        return False
    return _in_order(pending) or _sorts(pending)


def _in_order(pending: PendingJobs) -> bool:
    place = {key: i for i, key in enumerate(pending.jobs)}
    members = pending.members
    for i, (key, job) in enumerate(pending.jobs.items()):
        for grp in job.deps:
            for other in members.get(grp, ()):
                if place[other] >= i and other != key:
                    return False
        for other in job.cmd_deps:
            at = place.get(other)
            if at is not None and at >= i and other != key:
                return False
    return True


def _sorts(pending: PendingJobs) -> bool:
    """Whether the jobs of ``pending`` can be ordered so each comes after those of them it
    waits for (Kahn's algorithm): exactly when they wait for each other in no cycle."""
    members, jobs = pending.members, pending.jobs
    waiting: dict[str, int] = {}
    children: dict[str, list[str]] = {}
    for key, job in jobs.items():
        parents: set[str] = set()
        for grp in job.deps:
            parents.update(members.get(grp, ()))
        parents.update(other for other in job.cmd_deps if other in jobs)
        parents.discard(key)
        waiting[key] = len(parents)
        for parent in parents:
            children.setdefault(parent, []).append(key)
    free = [key for key, n in waiting.items() if not n]
    left = len(jobs)
    while free:
        key = free.pop()
        left -= 1
        for child in children.get(key, ()):
            waiting[child] -= 1
            if not waiting[child]:
                free.append(child)
    return left == 0


class DependencyGraph:
    """Who waits for whom among the queued jobs, jobs about to be added (``pending``) and
    jobs about to be modified (``replaced``: old key -> new version), as `find_cycle`
    walks it. Read-only views of the queue's indexes: building one copies nothing."""

    def __init__(self, queued: Mapping[str, Job], members: Mapping[str, Collection[str]],
                 unresolved: Mapping[str, Collection[str]], pending: Sequence[PendingJobs],
                 replaced: Mapping[str, Job] | None = None) -> None:
        self.queued = queued
        self.members = members
        self.unresolved = unresolved
        self.pending = pending
        self.replaced = replaced or {}

    def job(self, key: str) -> Job | None:
        for held in self.pending:
            job = held.jobs.get(key)
            if job is not None:
                return job
        return self.replaced.get(key) or self.queued.get(key)

    def cmd_of(self, key: str) -> str:
        job = self.job(key)
        return job.cmd if job is not None else "?"

    def waits_for(self, key: str) -> Collection[str]:
        """The keys ``key`` would wait for once the change is made."""
        new = self.replaced.get(key)
        if new is None:
            new = next((h.jobs[key] for h in self.pending if key in h.jobs), None)
        if new is not None:  # edges of its own: worked out as `Queue` will link them
            return self._parents(new, {key, new.key})
        found = self.unresolved.get(key, ())
        job = self.queued.get(key)
        if job is None or not job.deps or not self.pending:
            return found
        # A queued job also waits for the pending jobs that join its dep groups (live deps).
        joined = [k for held in self.pending for grp in job.deps
                  for k in held.members.get(grp, ()) if k != key]
        return [*found, *joined] if joined else found

    def _parents(self, job: Job, itself: Collection[str]) -> set[str]:
        parents: set[str] = set()
        for grp in job.deps:
            parents.update(self.members.get(grp, ()))
            for held in self.pending:
                parents.update(held.members.get(grp, ()))
        for key in job.cmd_deps:
            if key in self.queued or any(key in held.jobs for held in self.pending):
                parents.add(key)
        parents.difference_update(itself)
        return parents
