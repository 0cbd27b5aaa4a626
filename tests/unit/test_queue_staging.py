"""`Queue.stage`: new jobs worked out while they are stored, then queued in bulk by `add`.

The property: a queue given what `stage` worked out ends exactly as one that queued the
same jobs one by one — the same states, requirements, groups, counters, events, and the
same order of reservation — whatever the mix of jobs (dependencies, repeats, jobs already
queued), and whatever was learned between the two steps.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from wr.jobs import Job, State
from wr.learning import Recommendation
from wr.queue import Changed, Queue

NOTHING = Recommendation(ram_mb=0, disk_gb=0, time_s=0.0)


class Learned:
    """A recommend() whose answers a test changes between stage and add."""

    def __init__(self) -> None:
        self.values: dict[str, Recommendation] = {}

    def __call__(self, req_grp: str) -> Recommendation:
        return self.values.get(req_grp, NOTHING)


def group_of(job: Job) -> str:
    return f"{job.ram}:{job.time:g}:{job.cores:g}:{','.join(job.limit_grps)}"


def make_queue(learned: Learned) -> Queue:
    return Queue(ttr=60, rng=random.Random(1), group_of=group_of, recommend=learned)


job_specs = st.lists(st.fixed_dictionaries({
    "n": st.integers(0, 12),  # small, so keys repeat
    "priority": st.integers(0, 3),
    "ram": st.sampled_from([100, 1000]),
    "req_grp": st.sampled_from(["a", "b"]),
    "dep_grps": st.sampled_from([[], ["g1"]]),
    "deps": st.sampled_from([[], [], ["g1"]]),
    "limit_grps": st.sampled_from([[], ["l"]]),
}), max_size=25)


def build(specs: list[dict]) -> list[Job]:
    return [Job(key=f"k{s['n']}", cmd=f"echo {s['n']}", req_grp=s["req_grp"],
                ram=s["ram"], user_ram=s["ram"], priority=s["priority"],
                dep_grps=s["dep_grps"], deps=s["deps"], limit_grps=s["limit_grps"])
            for s in specs]


def picture(q: Queue) -> tuple:
    """Everything observable about a queue, reserving all it will give out."""
    events = [(e.job.key, e.old, e.new) for e in q.drain() if type(e) is Changed]
    jobs = {k: (j.state, j.ram, j.sched_group, j.seq, j.added) for k, j in q.jobs.items()}
    counts = (Counter({k: v for k, v in q.counts.items() if v}),
              Counter({k: v for k, v in q.ready_by_group.items() if v}))
    order = []
    for group in sorted({j.sched_group for j in q.jobs.values()}):
        while (job := q.reserve(group, "r", 10.0)) is not None:
            order.append(job.key)
    return jobs, counts, sorted(events, key=str), order


@settings(max_examples=300, deadline=None)
@given(before=job_specs, specs=job_specs, learn_meanwhile=st.booleans(), twice=st.booleans())
def test_staged_adds_end_as_one_by_one_adds(before: list[dict], specs: list[dict],
                                            learn_meanwhile: bool, twice: bool) -> None:
    pictures = []
    for use_stage in (False, True):
        learned = Learned()
        q = make_queue(learned)
        q.add(build(before), 1.0)
        jobs = build(specs)
        for job in jobs:
            q.prepare(job)
        staged = q.stage(jobs) if use_stage else None
        if learn_meanwhile:
            learned.values["a"] = Recommendation(ram_mb=3000, disk_gb=0, time_s=0.0)
        stored: dict[str, Job] = {}  # what the store took: each key once, none queued
        for job in jobs:
            if job.key not in q.jobs:
                stored.setdefault(job.key, job)
        q.add(list(stored.values()) * (2 if twice else 1), 2.0, prepared=True, staged=staged)
        pictures.append(picture(q))
    assert pictures[0] == pictures[1]


def test_jobs_of_a_big_add_are_made_ready_in_bulk_in_order_of_priority() -> None:
    q = make_queue(Learned())
    jobs = [Job(key=f"k{i}", cmd=f"echo {i}", priority=i % 3) for i in range(1000)]
    for job in jobs:
        q.prepare(job)
    staged = q.stage(jobs)
    assert q.jobs == {} and not q.drain()  # nothing shows before add
    q.add(jobs, 5.0, prepared=True, staged=staged)
    assert q.counts[State.READY] == 1000 and len(q.drain()) == 1000
    first = [q.reserve(jobs[0].sched_group, "r", 6.0).key for _ in range(3)]
    assert first == ["k2", "k5", "k8"]  # priority 2 first, then by age
