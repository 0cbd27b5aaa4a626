"""What an add may ask for, over a real manager (issue 13, items 2, 4 and 6).

* Limits: a ``name:N`` the store cannot hold, below -1, or a name no job may use is a 400
  naming the value, and nothing of the request is stored (the reproductions used to answer
  500, queue the job anyway and break ``GET /rest/v1/limits/``).
* Cycles: an add or a modification that would make jobs wait for each other in a circle is
  a 400 naming them; jobs that do (restored from an older database, or brought back by a
  completed job's resurrection) can be removed together by every way of removing.
* A relative cwd and negative times are 400s.

One paused manager serves most tests (nothing they add runs); the resurrection test needs
jobs to run and has a manager of its own.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ManagerHandle, running_manager, wait_for
from wr.jobs import Job, State, compute_key

pytestmark = pytest.mark.integration

PROBLEM = "there was a problem interpreting your job: "
INTEGER = "an integer from -1 (which removes the limit) to 9223372036854775807"
RANGE = f"a limit is {INTEGER}"
RING = 3
"""Jobs in each dependency cycle written into the database before the manager starts."""
WAYS = ("keys", "rep group", "all", "DELETE")
"""The ways of removing jobs: each gets a cycle of its own."""


def ring_jobs(way: str) -> list[Job]:
    """Jobs that wait for each other in a ring, as a database from before issue 13 could
    hold them: job i is in dep group i and waits for group i+1."""
    tag = way.replace(" ", "-")
    return [Job(key=compute_key(f"echo {tag} {i}"), cmd=f"echo {tag} {i}", cwd="/tmp",
                rep_grp=f"ring-{tag}", req_grp="echo", dep_grps=[f"{tag}-{i}"],
                deps=[f"{tag}-{(i + 1) % RING}"], state=State.DEPENDENT, until_buried=1,
                seq=100 * n + i + 1, added=time.time())
            for n, _ in enumerate([way]) for i in range(RING)]


def restart_with_rings(handle: ManagerHandle, ways: tuple[str, ...]) -> None:
    """Stop the manager, write a ring for each of ``ways`` into its database, start it
    again and pause it (nothing it holds may run)."""
    assert handle.stop().returncode == 0
    db = sqlite3.connect(handle.dir / "db")
    with db:
        db.executemany("INSERT INTO live(key, data) VALUES (?, ?)",
                       [(j.key, j.record_bytes()) for way in ways for j in ring_jobs(way)])
    db.close()
    handle.start()
    with handle.http() as c:
        assert c.post("/rest/v1/manager/pause").status_code == 200


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """A paused manager whose database held dependency cycles when it started (but for
    the way "all", which takes every job and has a manager of its own)."""
    with running_manager(tmp_path_factory.mktemp("home")) as handle:
        restart_with_rings(handle, tuple(w for w in WAYS if w != "all"))
        yield handle


@pytest.fixture(scope="module")
def api(mgr: ManagerHandle) -> Iterator[httpx.Client]:
    with mgr.http() as c:
        yield c


def queued(api: httpx.Client) -> dict[str, str]:
    r = api.get("/rest/v1/jobs/")
    assert r.status_code == 200, r.text
    return {j["Key"]: j["State"] for j in r.json()}


def refused(api: httpx.Client, r: httpx.Response, before: dict[str, str]) -> str:
    """A 400 with a message, the queue as it was, and the limits still readable."""
    assert r.status_code == 400, r.text
    assert r.text.endswith("\n") and r.text.strip()
    assert queued(api) == before
    limits = api.get("/rest/v1/limits/")
    assert limits.status_code == 200, limits.text
    return r.text.strip()


def post(api: httpx.Client, jobs: list[dict[str, Any]], **params: str) -> httpx.Response:
    return api.post("/rest/v1/jobs/", content=orjson.dumps(jobs), params=params)


# -- item 2: limits -------------------------------------------------------------------------

@pytest.mark.parametrize(("jobs", "params", "message"), [
    ([{"cmd": "true", "limit_grps": ["a:99999999999999999999"]}], {},
     f"{PROBLEM}limit group 'a:99999999999999999999': limit 99999999999999999999 is out of "
     f"range: {RANGE}"),
    ([{"cmd": "true"}], {"limit_grps": "big:9223372036854775808"},
     f"limit group 'big:9223372036854775808': limit 9223372036854775808 is out of range: "
     f"{RANGE}"),
    ([{"cmd": "true", "limit_grps": ["a:-7"]}], {},
     f"{PROBLEM}limit group 'a:-7': limit -7 is out of range: {RANGE}"),
    ([{"cmd": "true # ok", "limit_grps": ["a:2"]}, {"cmd": "true", "limit_grps": ["b,c"]}], {},
     f"{PROBLEM}limit group name 'b,c' must not contain ','"),
    ([{"cmd": "true", "limit_grps": ["time < 25:00:00"]}], {},
     f"{PROBLEM}limit group 'time < 25:00:00' is not a valid time window: '25:00:00' is not "
     f"a time of day (hh 00-23, mm and ss 00-59)"),
], ids=["json-too-big", "query-too-big", "below-minus-one", "comma", "time-window"])
def test_a_limit_no_store_can_hold_is_a_400_and_stores_nothing(
        api: httpx.Client, jobs: list[dict[str, Any]], params: dict[str, str],
        message: str) -> None:
    before = queued(api)
    assert refused(api, post(api, jobs, **params), before) == message
    assert api.get("/rest/v1/limits/").json() == {}
    for name in ("a", "big", "b"):
        assert api.get(f"/rest/v1/limits/{name}").json() == {"name": name, "limit": -1}


@pytest.mark.parametrize(("path", "limit", "message"), [
    ("a%00b", "1", "limit group name 'a\\x00b' must not contain NUL"),
    ("a,b", "1", "limit group name 'a,b' must not contain ','"),
    ("a:b", "1", "limit group name 'a:b' must not contain ':'"),
    ("ok", "-7", f"limit -7 is out of range: {RANGE}"),
    ("ok", "9223372036854775808", f"limit 9223372036854775808 is out of range: {RANGE}"),
    ("ok", "+3", f'limit must be {INTEGER}, not "+3"'),
    ("ok", "", f'limit must be {INTEGER}, not ""'),
])
def test_put_takes_the_names_and_limits_a_job_may_give(api: httpx.Client, path: str,
                                                       limit: str, message: str) -> None:
    r = api.put(f"/rest/v1/limits/{path}", params={"limit": limit})
    assert r.status_code == 400, r.text
    assert r.text.strip() == message
    assert api.get("/rest/v1/limits/").json() == {}


def test_the_largest_limit_is_stored_and_survives_a_restart(make_manager: Any) -> None:
    top = 2**63 - 1
    m: ManagerHandle = make_manager()
    m.start()
    with m.http() as api:
        r = post(api, [{"cmd": "true", "limit_grps": [f"biggest:{top}"]}])
        assert r.status_code == 201, r.text
        assert r.json()[0]["LimitGroups"] == ["biggest"]
        assert api.put("/rest/v1/limits/other", params={"limit": str(top)}).status_code == 200
        assert api.get("/rest/v1/limits/").json() == {"biggest": top, "other": top}
    m.stop()
    m.start()
    with m.http() as api:
        assert api.get("/rest/v1/limits/").json() == {"biggest": top, "other": top}


def test_wr_mod_sets_a_limit_given_as_name_colon_n(api: httpx.Client) -> None:
    """``wr mod -l g:2`` sets the limit and leaves the job in group g, as an add would."""
    key = post(api, [{"cmd": "true # mod limit"}], rep_grp="modlimit").json()[0]["Key"]
    r = api.post("/rest/v1/actions/modify",
                 json={"keys": [key], "changes": {"limit_grps": ["modlim:2"]}})
    assert r.status_code == 200 and r.json()["Affected"] == 1, r.text
    assert api.get("/rest/v1/jobs/modlimit").json()[0]["LimitGroups"] == ["modlim"]
    assert api.get("/rest/v1/limits/modlim").json()["limit"] == 2
    r = api.post("/rest/v1/actions/modify",
                 json={"keys": [key], "changes": {"limit_grps": ["modlim:-9"]}})
    assert r.status_code == 400 and "limit -9 is out of range" in r.text
    api.delete("/rest/v1/limits/modlim")
    api.delete("/rest/v1/jobs/modlimit", params={"state": "deletable"})


# -- item 4: cycles -------------------------------------------------------------------------

def test_an_add_that_would_close_a_cycle_is_a_400_naming_its_jobs(api: httpx.Client) -> None:
    """The reproduction: A waits for B's group and B for A's; now refused, nothing stored."""
    before = queued(api)
    r = post(api, [{"cmd": "echo A", "dep_grps": ["A"], "deps": ["B"]},
                   {"cmd": "echo B", "dep_grps": ["B"], "deps": ["A"]}])
    message = refused(api, r, before)
    a, b = compute_key("echo A"), compute_key("echo B")
    assert message.startswith("these jobs would wait for each other in a cycle, so none of "
                              "them could ever start (each waits for the next): ")
    assert f"{a} (echo A)" in message and f"{b} (echo B)" in message
    assert message.endswith("; nothing was added")


def test_a_cycle_through_queued_jobs_is_refused_and_a_chain_is_not(api: httpx.Client) -> None:
    """A chain of 200 queued jobs, the first waiting for an empty group: a job joining that
    group and waiting for the last would close a ring of 201."""
    r = post(api, [{"cmd": f"echo link {i}", "dep_grps": [f"link{i}"],
                    "deps": [f"link{i - 1}"]} for i in range(200)], rep_grp="chain")
    assert r.status_code == 201, r.text
    assert r.json()[0]["State"] == "ready"
    before = queued(api)
    r = post(api, [{"cmd": "echo closer", "dep_grps": ["link-1"], "deps": ["link199"]}])
    assert "(echo closer)" in refused(api, r, before)
    r = post(api, [{"cmd": "echo closer", "dep_grps": ["elsewhere"], "deps": ["link199"]}],
             rep_grp="chain")
    assert r.status_code == 201 and r.json()[0]["State"] == "dependent", r.text
    r = api.post("/rest/v1/actions/remove", json={"ids": ["chain"]})
    assert r.json()["Affected"] == 201, r.text


def test_a_modification_that_would_close_a_cycle_is_refused(api: httpx.Client) -> None:
    jobs = post(api, [{"cmd": "echo up", "dep_grps": ["modup"]},
                      {"cmd": "echo down", "dep_grps": ["moddown"], "deps": ["modup"]}],
                rep_grp="modcycle").json()
    before = queued(api)
    r = api.post("/rest/v1/actions/modify",
                 json={"keys": [jobs[0]["Key"]], "changes": {"deps": ["moddown"]}})
    message = refused(api, r, before)
    assert "(echo up)" in message and message.endswith("; nothing was modified")
    r = api.post("/rest/v1/actions/remove", json={"ids": ["modcycle"]})
    assert r.json()["Affected"] == 2, r.text


def remove(api: httpx.Client, way: str, keys: list[str], rep_grp: str) -> int:
    """Remove by one of `WAYS`; returns how many jobs the manager says it removed."""
    if way == "DELETE":
        r = api.delete(f"/rest/v1/jobs/{rep_grp}", params={"state": "deletable"})
        assert r.status_code == 200, r.text
        assert {j["State"] for j in r.json()} <= {"deleted"}
        return len(r.json())
    selection = {"keys": {"keys": keys}, "rep group": {"ids": [rep_grp]},
                 "all": {"all": True}}[way]
    r = api.post("/rest/v1/actions/remove", json=selection)
    assert r.status_code == 200, r.text
    return int(r.json()["Affected"])


@pytest.mark.parametrize("way", WAYS)
def test_a_cycle_restored_from_an_old_database_is_removable(mgr: ManagerHandle,
                                                            make_manager: Any,
                                                            way: str) -> None:
    """Steps: a ring of three jobs, each waiting for the next, was written into the
    database before the manager started. Removing two of it removes nothing (the third
    waits for one of them); removing the ring (by keys, rep group, all, or DELETE) removes
    all three, and says so."""
    if way == "all":
        mgr = make_manager()
        mgr.start()
        restart_with_rings(mgr, ("all",))
    ring = ring_jobs(way)
    keys = [j.key for j in ring]
    with mgr.http() as api:
        states = queued(api)
        assert [states.get(k) for k in keys] == ["dependent"] * RING
        r = api.post("/rest/v1/actions/remove", json={"keys": keys[:2]})
        assert r.json()["Affected"] == 0, r.text
        assert remove(api, way, keys, ring[0].rep_grp) == RING
        assert not set(keys) & set(queued(api))


# -- item 6: cwd and times ------------------------------------------------------------------

@pytest.mark.parametrize(("jobs", "params", "message"), [
    ([{"cmd": "pwd", "cwd": "../../etc"}], {},
     f"{PROBLEM}cwd value (../../etc) is not an absolute path: give one that starts with /"),
    ([{"cmd": "pwd"}], {"cwd": "rel"},
     "cwd value (rel) is not an absolute path: give one that starts with /"),
    ([{"cmd": "true", "time": "-1h"}], {}, f"{PROBLEM}time value (-1h) must not be negative"),
    ([{"cmd": "true"}], {"time": "-1h"}, "time value (-1h) must not be negative"),
    ([{"cmd": "true", "no_retry_over_walltime": "-1m"}], {},
     f"{PROBLEM}no_retry_over_walltime value (-1m) must not be negative"),
], ids=["json-cwd", "query-cwd", "json-time", "query-time", "json-no-retry"])
def test_a_relative_cwd_or_a_negative_time_is_a_400(api: httpx.Client,
                                                    jobs: list[dict[str, Any]],
                                                    params: dict[str, str],
                                                    message: str) -> None:
    before = queued(api)
    assert refused(api, post(api, jobs, **params), before) == message


# -- cycles that resurrection closes ------------------------------------------------------------

def test_a_cycle_closed_by_resurrection_is_said_and_removable(tmp_path) -> None:
    """Steps: job C (waits for group G, is in group H) completes. A new job N joins G and
    waits for H: no queued job is in H, so the check passes; but storing N brings C back to
    run after N (wr's live dependencies), and C is in H: they wait for each other.
    Expected: a warning names both; removing both removes both."""
    (tmp_path / "home").mkdir()
    with running_manager(tmp_path / "home") as m, m.http() as api:
        c = post(api, [{"cmd": "echo C", "deps": ["G"], "dep_grps": ["H"]}],
                 rep_grp="res").json()[0]["Key"]
        wait_for(lambda: api.get(f"/rest/v1/jobs/{c}").json()[0]["State"] == "complete",
                 what="C to complete")
        r = post(api, [{"cmd": "echo N", "dep_grps": ["G"], "deps": ["H"]}], rep_grp="res")
        assert r.status_code == 201, r.text
        n = r.json()[0]["Key"]
        assert queued(api) == {c: "dependent", n: "dependent"}
        warnings = [w["Msg"] for w in api.get("/rest/v1/warnings/").json()]
        assert any(f"{c} (echo C)" in w and f"{n} (echo N)" in w for w in warnings), warnings
        r = api.post("/rest/v1/actions/remove", json={"ids": ["res"]})
        assert r.json()["Affected"] == 2, r.text
        assert queued(api) == {}
