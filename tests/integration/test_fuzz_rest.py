"""The fuzz of tests/unit/test_fuzz_submission.py, posted to a real manager over HTTPS.

Properties (issue 6): no request gets a 5xx; a POST answered 4xx leaves the queue exactly as
it was; a POST answered 201 has every job it returned in the queue. GETs with fuzzed
selections and parameters get no 5xx either. Issue 13: a limit, a dependency graph or a cwd
is refused exactly when the rules say (the unit fuzz's oracles), what is taken can be read
back and removed. The manager is paused, so nothing generated is ever run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FAST_TIMINGS, ManagerHandle, _descendants_of_home
from tests.unit.test_fuzz_submission import (
    CWDS,
    DependencyModel,
    bodies,
    dependency_batches,
    limit_entries,
    limit_entry_ok,
    queries,
    weird_text,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production", **FAST_TIMINGS)
    m = ManagerHandle(home=home, env=env)
    m.start()
    try:
        with m.http() as c:
            assert c.post("/rest/v1/manager/pause").status_code == 200
            yield c
    finally:
        m.stop()
        leftovers = _descendants_of_home(home)
        for pid in leftovers:
            psutil.Process(pid).kill()
        assert "unexpected error" not in m.log(), m.log()
        assert not leftovers, leftovers


def queued(api: httpx.Client) -> set[str]:
    r = api.get("/rest/v1/jobs/")
    assert r.status_code == 200, r.text
    return {j["Key"] for j in r.json()}


SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(body=bodies, query=queries)
def test_a_fuzzed_post_never_gets_a_5xx_nor_half_stores(api: httpx.Client, body: bytes,
                                                        query: dict[str, str]) -> None:
    before = queued(api)
    r = api.post("/rest/v1/jobs/", content=body, params=query)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.text.endswith("\n") and r.text.strip()
        assert queued(api) == before
        return
    assert r.status_code == 201, r.text
    returned = {j["Key"] for j in r.json()}
    assert returned <= queued(api)
    gone = api.delete("/rest/v1/jobs/", params={"state": "deletable"})
    assert gone.status_code == 200
    assert queued(api) == set()


selection = st.one_of(weird_text, st.sampled_from(["", "q", "manually_added", "a,b", "%ff"]),
                      st.text(st.sampled_from("0123456789abcdef"), min_size=32, max_size=32))
get_params = st.dictionaries(
    st.sampled_from(["state", "limit", "std", "env", "search", "token"]),
    weird_text | st.sampled_from(["running", "deletable", "complete", "1", "-1", "true",
                                  "99999999999999999999"]),
    max_size=4)


@SETTINGS
@given(ids=selection, params=get_params, path=st.sampled_from(
    ["/rest/v1/jobs/", "/rest/v1/counts/", "/rest/v1/summary/", "/rest/v1/details/"]))
def test_a_fuzzed_query_never_gets_a_5xx(api: httpx.Client, ids: str, params: dict[str, str],
                                         path: str) -> None:
    if "token" in params:
        params = {**params, "token": ""}  # an empty ?token= falls back to the header
    r = api.get(path + quote(ids, safe=","), params=params)
    assert r.status_code < 500, r.text


# -- issue 13: limits, cycles and cwd, over HTTPS -------------------------------------------

FEW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def remove_all(api: httpx.Client) -> int:
    r = api.post("/rest/v1/actions/remove", json={"all": True})
    assert r.status_code == 200, r.text
    assert queued(api) == set()
    return int(r.json()["Affected"])


@FEW
@given(entries=st.lists(limit_entries(), min_size=1, max_size=3))
def test_a_fuzzed_limit_is_a_400_or_stored(api: httpx.Client, entries: list[str]) -> None:
    """400 iff some entry breaks the rule; otherwise each name:N is in GET /limits/."""
    r = api.post("/rest/v1/jobs/", json=[{"cmd": "true", "limit_grps": entries}])
    assert r.status_code == (201 if all(limit_entry_ok(e) for e in entries) else 400), r.text
    limits = api.get("/rest/v1/limits/")
    assert limits.status_code == 200, limits.text
    if r.status_code == 201:
        want: dict[str, int] = {}
        for entry in entries:
            name, sep, n = entry.rpartition(":")
            if sep:
                want[name] = int(n)
        for name, n in want.items():
            assert limits.json().get(name, -1) == n, (name, n)
        assert remove_all(api) == 1
    assert queued(api) == set()


@FEW
@given(batches=dependency_batches())
def test_a_fuzzed_dependency_graph_is_refused_iff_it_closes_a_cycle(
        api: httpx.Client, batches: list[list[dict[str, Any]]]) -> None:
    model = DependencyModel()
    for batch in batches:
        before = queued(api)
        r = api.post("/rest/v1/jobs/", json=batch)
        if model.closes_cycle(batch):
            assert r.status_code == 400, r.text
            assert "would wait for each other in a cycle" in r.text
            assert queued(api) == before
        else:
            assert r.status_code == 201, r.text
            model.accept(batch)
    assert remove_all(api) == len(model.jobs)


@FEW
@given(cwd=CWDS)
def test_a_fuzzed_cwd_is_taken_iff_absolute(api: httpx.Client, cwd: str) -> None:
    r = api.post("/rest/v1/jobs/", json=[{"cmd": "pwd", "cwd": cwd}])
    absolute = cwd == "" or (cwd.startswith("/") and "\x00" not in cwd)
    assert r.status_code == (201 if absolute else 400), r.text
    if absolute:
        assert remove_all(api) == 1
