"""Finding the dependency cycle a change would close (wr.cycles, issue 13)."""

from __future__ import annotations

import pytest

from wr.cycles import SHOWN_JOBS, cannot_close_cycle, describe, find_cycle, pending_of
from wr.jobs import Job


def edges(graph: dict[str, list[str]]):
    return lambda key: graph.get(key, [])


def is_cycle(cycle: list[str], graph: dict[str, list[str]]) -> bool:
    """Each key waits for the next, the last for the first, each key once."""
    return (len(set(cycle)) == len(cycle) > 1
            and all(cycle[(i + 1) % len(cycle)] in graph[k] for i, k in enumerate(cycle)))


@pytest.mark.parametrize(("graph", "changed", "found"), [
    ({"a": ["b"], "b": ["a"]}, {"a"}, True),
    ({"a": ["b"], "b": ["c"], "c": ["a"]}, {"b"}, True),
    ({"a": ["b"], "b": ["c"], "c": []}, {"a", "b", "c"}, False),
    ({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}, {"a"}, False),  # a diamond
    ({"a": ["a"]}, {"a"}, False),  # (a job never waits for itself: not an edge we make)
    # A cycle of old jobs only is not one this change closes, even if reached from it.
    ({"n": ["o1"], "o1": ["o2"], "o2": ["o1"]}, {"n"}, False),
    # ... but one through a changed job beyond it is.
    ({"n": ["o1"], "o1": ["o2"], "o2": ["o1", "m"], "m": ["o2"]}, {"n", "m"}, True),
])
def test_find_cycle(graph, changed, found):
    cycle = find_cycle(sorted(changed), edges(graph), changed)
    assert (cycle is not None) is found
    if cycle:
        assert is_cycle(cycle, graph)
        assert changed & set(cycle)


def test_the_cycle_named_is_the_shortest_through_the_changed_job():
    graph = {"n": ["x", "y"], "x": ["p"], "p": ["q"], "q": ["n"], "y": ["n"]}
    assert find_cycle(["n"], edges(graph), {"n"}) == ["n", "y"]


def test_a_chain_of_100000_needs_no_recursion():
    """Big adds with dependencies: a long chain, and the same chain closed into a ring."""
    n = 100_000
    chain = {f"j{i}": [f"j{i - 1}"] if i else [] for i in range(n)}
    assert find_cycle(list(chain), edges(chain), chain) is None
    chain["j0"] = [f"j{n - 1}"]
    cycle = find_cycle(list(chain), edges(chain), {"j500"})
    assert cycle is not None and len(cycle) == n and is_cycle(cycle, chain)


def test_describe_names_keys_and_short_commands_and_the_way_back():
    cmds = {"k1": "echo A", "k2": "x" * 100}
    text = describe(["k1", "k2"], cmds.__getitem__, "nothing was added")
    assert text == ("these jobs would wait for each other in a cycle, so none of them could "
                    "ever start (each waits for the next): k1 (echo A) -> k2 ("
                    + "x" * 37 + "...) -> k1; nothing was added")


def test_describe_a_long_cycle_says_how_many_more():
    keys = [f"k{i}" for i in range(SHOWN_JOBS + 1000)]
    text = describe(keys, lambda k: "true", "nothing was added")
    assert "k5 (true) -> ... 1,000 more ... -> k0; nothing was added" in text
    assert "k6 " not in text


def job(key: str, **kw) -> Job:
    return Job(key=key, cmd=f"echo {key}", **kw)


def test_no_search_for_chains_and_fan_ins_in_either_order():
    chain = [job(f"j{i}", dep_grps=[f"g{i}"], deps=[f"g{i - 1}"]) for i in range(5)]
    assert cannot_close_cycle(pending_of(chain, {}), {})
    assert cannot_close_cycle(pending_of(chain[::-1], {}), {})  # (sorted, not swept)
    fan_in = [job("a", dep_grps=["all"], deps=["up"]), job("b", dep_grps=["all"], deps=["up"]),
              job("end", deps=["all"], cmd_deps=["a"])]
    assert cannot_close_cycle(pending_of(fan_in[::-1], {}), {})
    ring = [job("x", dep_grps=["gx"], cmd_deps=["y"]), job("y", deps=["gx"])]
    assert not cannot_close_cycle(pending_of(ring, {}), {})
    # a queued job waiting for a group a new job joins could lead back: searched instead
    assert not cannot_close_cycle(pending_of(chain, {}), {"g2": {"queued"}})
