"""Dependencies never go round in a circle, and any jobs can be removed together (issue 13).

Driven through `Queue`, which owns the jobs' states (wr.dependencies keeps who waits for
whom). Adds are checked with `check_add` before `add`, as the manager does.
"""

from __future__ import annotations

import random

import pytest

from wr.cycles import DependencyCycle
from wr.jobs import Job, State
from wr.queue import Queue

S = State


def new_job(key: str, **kw) -> Job:
    kw.setdefault("until_buried", kw.get("retries", 0) + 1)
    return Job(key=key, cmd=f"echo {key}", **kw)


def make_queue() -> Queue:
    return Queue(ttr=60, rng=random.Random(7))


def add(q: Queue, *jobs: Job) -> list[Job]:
    """Add as the manager does: check, then queue."""
    pending = q.check_add(jobs)
    q.forget_pending(pending)
    return q.add(jobs, 0)


def refused(q: Queue, *jobs: Job) -> DependencyCycle:
    before, pending = dict(q.jobs), list(q.deps.pending)
    with pytest.raises(DependencyCycle) as info:
        q.check_add(jobs)
    assert q.jobs == before and q.deps.pending == pending  # nothing changed
    assert info.value.status == 400
    return info.value


# -- adds that would close a cycle ------------------------------------------------------------

def test_two_new_jobs_waiting_for_each_others_groups_are_refused():
    """The reproduction of issue 13, item 4."""
    q = make_queue()
    exc = refused(q, new_job("A", dep_grps=["A"], deps=["B"]),
                  new_job("B", dep_grps=["B"], deps=["A"]))
    assert sorted(exc.keys) == ["A", "B"]
    assert exc.message.startswith("these jobs would wait for each other in a cycle, so none "
                                  "of them could ever start (each waits for the next): ")
    assert "A (echo A)" in exc.message and "B (echo B)" in exc.message
    assert exc.message.endswith("; nothing was added")


def test_two_jobs_of_one_group_that_waits_for_itself_are_a_cycle():
    """One job in a group it waits for does not wait for itself (docs/compatibility.md);
    two such jobs wait for each other."""
    q = make_queue()
    [a] = add(q, new_job("a", dep_grps=["g"], deps=["g"]))
    assert a.state == S.READY
    refused(q, new_job("b", dep_grps=["g"], deps=["g"]))


def test_a_new_job_closing_a_cycle_through_queued_jobs_is_refused():
    """Live dep groups: queued x waits for group g; a new job in g that waits for x's
    group closes x -> new -> x."""
    q = make_queue()
    add(q, new_job("x", dep_grps=["gx"], deps=["g"]))
    exc = refused(q, new_job("n", dep_grps=["g"], deps=["gx"]))
    assert sorted(exc.keys) == ["n", "x"]


def test_a_long_cycle_through_queued_jobs_is_refused():
    q = make_queue()
    add(q, *[new_job(f"c{i}", dep_grps=[f"g{i}"], deps=[f"g{i + 1}"]) for i in range(50)])
    exc = refused(q, new_job("last", dep_grps=["g50"], deps=["g0"]))
    assert len(exc.keys) == 51
    assert "... 45 more ..." in exc.message


def test_cmd_deps_close_cycles_too():
    q = make_queue()
    add(q, new_job("x", deps=["gn"], cmd_deps=["n"]))  # n is not queued: x waits for nothing
    assert q.get("x").state == S.READY
    exc = refused(q, new_job("n", dep_grps=["gn"], cmd_deps=["x"]))  # x would wait for gn
    assert sorted(exc.keys) == ["n", "x"]
    add(q, new_job("n", dep_grps=["other"], cmd_deps=["x"]))  # cmd_deps are not live
    refused(q, new_job("a", cmd_deps=["b"]), new_job("b", cmd_deps=["a"]))


def test_acyclic_adds_pass_and_leave_nothing_pending():
    q = make_queue()
    jobs = add(q, new_job("a", dep_grps=["g1"]), new_job("b", deps=["g1"], dep_grps=["g2"]),
               new_job("c", deps=["g1", "g2"], cmd_deps=["a"]))
    assert [j.state for j in jobs] == [S.READY, S.DEPENDENT, S.DEPENDENT]
    assert q.deps.pending == []
    assert q.check_add([new_job("d")]) is None  # waits for nothing: nothing to check


def test_a_cycle_of_old_jobs_does_not_refuse_an_unrelated_add():
    q = make_queue()
    q.restore([new_job("o1", dep_grps=["g1"], deps=["g2"], state=S.DEPENDENT, seq=1),
               new_job("o2", dep_grps=["g2"], deps=["g1"], state=S.DEPENDENT, seq=2)], 0)
    assert q.unresolved("o1") == {"o2"}
    [n] = add(q, new_job("n", deps=["g1"]))  # waits for the old cycle, but is not on it
    assert n.state == S.DEPENDENT


def test_an_add_being_stored_counts_in_the_next_check():
    """Two adds stored at the same time cannot each pass and together close a cycle."""
    q = make_queue()
    first = q.check_add([new_job("A", dep_grps=["A"], deps=["B"])])
    assert first is not None
    refused(q, new_job("B", dep_grps=["B"], deps=["A"]))
    q.forget_pending(first)  # (the first add failed to store, say)
    assert q.check_add([new_job("B", dep_grps=["B"], deps=["A"])]) is not None


# -- modifications that would close a cycle ---------------------------------------------------

def test_a_modification_closing_a_cycle_is_refused():
    q = make_queue()
    add(q, new_job("a", dep_grps=["ga"]), new_job("b", dep_grps=["gb"], deps=["ga"]))
    with pytest.raises(DependencyCycle) as info:
        q.check_replacements({"a": new_job("a", dep_grps=["ga"], deps=["gb"])})
    assert sorted(info.value.keys) == ["a", "b"]
    assert info.value.message.endswith("; nothing was modified")
    q.check_replacements({"a": new_job("a2", dep_grps=["ga"], deps=["elsewhere"])})
    q.check_replacements({"b": new_job("b", dep_grps=["gb"], deps=["ga", "gb"])})


def test_modifications_are_checked_together():
    q = make_queue()
    add(q, new_job("a", dep_grps=["ga"]), new_job("b", dep_grps=["gb"]))
    with pytest.raises(DependencyCycle):
        q.check_replacements({"a": new_job("a", dep_grps=["ga"], deps=["gb"]),
                              "b": new_job("b", dep_grps=["gb"], deps=["ga"])})


# -- removal --------------------------------------------------------------------------------

def restored_cycle(q: Queue, n: int = 2) -> list[str]:
    """Jobs that wait for each other in a ring, as a database from before the check may
    hold them."""
    keys = [f"o{i}" for i in range(n)]
    q.restore([new_job(k, rep_grp="ring", dep_grps=[f"g{i}"], deps=[f"g{(i + 1) % n}"],
                       state=S.DEPENDENT, seq=i + 1) for i, k in enumerate(keys)], 0)
    q.drain()
    assert all(q.get(k).state == S.DEPENDENT for k in keys)
    return keys


def test_a_restored_cycle_is_removed_whole_and_nothing_runs_on_the_way():
    q = make_queue()
    keys = restored_cycle(q, 3)
    assert q.delete(keys[:2], 1) == []  # the third still waits for the second
    removed = q.delete(keys, 1)
    assert sorted(j.key for j in removed) == keys
    moves = [(e.job.key, e.old, e.new) for e in q.drain()]
    assert sorted(moves) == [(k, S.DEPENDENT, S.DELETED) for k in keys]
    assert q.jobs == {} and q.deps.dependants == {} and q.deps.unresolved == {}


def test_removing_a_cycle_with_a_dependant_outside_it_needs_that_dependant_too():
    q = make_queue()
    keys = restored_cycle(q)
    add(q, new_job("child", deps=["g0"]))
    assert q.delete(keys, 1) == []
    assert sorted(j.key for j in q.delete([*keys, "child"], 1)) == ["child", *keys]


def test_a_parent_goes_after_its_dependants_and_a_running_dependant_keeps_it():
    q = make_queue()
    add(q, new_job("p", dep_grps=["g"]))
    add(q, *[new_job(f"c{i}", deps=["g"]) for i in range(3)])
    removed = [j.key for j in q.delete(["p", "c0", "c1", "c2"], 1)]
    assert removed[-1] == "p" and sorted(removed) == ["c0", "c1", "c2", "p"]
    add(q, new_job("p2", dep_grps=["h"]), new_job("r", deps=["h"]))
    q.delete(["p2"], 1)
    assert "p2" in q.jobs


def test_removing_a_chain_of_100000_given_top_down():
    """Every job is named, parents first: all go, each after the one waiting for it."""
    q = make_queue()
    n = 100_000
    add(q, *[new_job(f"j{i}", dep_grps=[f"g{i}"], deps=[f"g{i - 1}"] if i else [])
             for i in range(n)])
    removed = q.delete([f"j{i}" for i in range(n)], 1)
    assert [j.key for j in removed] == [f"j{i}" for i in reversed(range(n))]
    assert q.jobs == {}


# -- limits ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "limit"), [("a", 2**63), ("a", -2), ("a,b", 1), ("", 1),
                                             ("a:b", 1), ("a\x00", 1)])
def test_the_queue_holds_no_limit_the_store_could_not(name, limit):
    q = make_queue()
    with pytest.raises(ValueError):
        q.set_limit(name, limit)
    assert q.limits == {} and q.drain() == []
