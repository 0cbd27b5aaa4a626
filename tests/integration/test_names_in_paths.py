"""Every route that takes a name addresses exactly that name's jobs (issue 13, item 1).

Names in URL paths were percent-decoded twice: ``DELETE /rest/v1/jobs/zz%2541`` (rep group
``zz%41``) deleted the jobs of ``zzA``, and a rep group holding ``,`` could not be named at
all. Here a real manager holds jobs in rep groups whose names are built to collide under
any second decoding or wrong split (``zz%41``/``zzA``, ``a,b``/``a``/``b``, ``x%2Cy``,
``a+b``/``a b``, ``a/b``, quotes, non-ASCII letters), and each route is asked for each name,
percent-encoded once as RFC 3986 says (``,`` as ``%2C``): the answer must be about that
name's jobs and no other's. The Python client and the ``wr`` command are checked the same
way, as are limit groups (whose names travel in the path too) and the web page's endpoints
(which take names in the query).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from tests.conftest import ManagerHandle, running_manager, wait_for

pytestmark = pytest.mark.integration

NAMES = ["zz%41", "zzA", "a+b", "a b", "a,b", "a", "b", "x%2Cy", "x", "a/b", "q\"uo'te",
         "naïve", "日本", "50%", "line\nbreak", "end\n"]
"""Rep group names that collide if a path is decoded twice or split after decoding."""
IDS = [f"n{i}" for i in range(len(NAMES))]

_serial = itertools.count()


def enc(name: str) -> str:
    """One name as a path segment, percent-encoded once (UTF-8), ``,`` and ``/`` included."""
    return quote(name, safe="")


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    with running_manager(tmp_path_factory.mktemp("home")) as handle:
        yield handle


@pytest.fixture(scope="module")
def api(mgr: ManagerHandle) -> Iterator[httpx.Client]:
    with mgr.http(timeout=60) as c:
        yield c


def populate(api: httpx.Client, prefix: str, *, complete: bool = False) -> dict[str, set[str]]:
    """Give the rep group ``prefix + name`` of the i-th name i+1 held (ready) jobs, plus
    one completed job when ``complete``; returns each group's job keys."""
    jobs = []
    for i, name in enumerate(NAMES):
        jobs += [{"cmd": f"echo {prefix} {i} {j}", "rep_grp": prefix + name,
                  "limit_grps": [f"{prefix}hold:0"], "cpus": 0} for j in range(i + 1)]
        if complete:
            jobs.append({"cmd": f"true {prefix} {i}", "rep_grp": prefix + name, "cpus": 0})
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(jobs))
    assert r.status_code == 201, r.text
    keys: dict[str, set[str]] = {prefix + n: set() for n in NAMES}
    for job in r.json():
        keys[job["RepGroup"]].add(job["Key"])
    if complete:
        # (ids hard-coded as plain keys, so this wait does not rely on what is under test)
        done = [job["Key"] for job in r.json() if job["Cmd"].startswith("true ")]

        def all_done() -> bool:
            r = api.get("/rest/v1/counts/" + ",".join(done))
            return bool(r.status_code == 200 and r.json()["complete"] == len(NAMES))

        wait_for(all_done, 60, 0.1, "the completing jobs to complete")
    return keys


@pytest.fixture(scope="module")
def groups(api: httpx.Client) -> dict[str, set[str]]:
    """One held job per position (and one completed job) per name, for read-only tests."""
    return populate(api, "", complete=True)


def expected_ready(name: str) -> int:
    return NAMES.index(name) + 1


# -- REST routes taking ids in the path ---------------------------------------------------

@pytest.mark.parametrize("name", NAMES, ids=IDS)
@pytest.mark.parametrize("route", ["jobs", "details"])
def test_get_answers_exactly_the_named_group(api: httpx.Client, groups: dict[str, set[str]],
                                             route: str, name: str) -> None:
    r = api.get(f"/rest/v1/{route}/{enc(name)}")
    assert r.status_code == 200, r.text
    got = r.json()
    assert {j["Key"] for j in got} == groups[name]
    assert {j["RepGroup"] for j in got} == {name}
    assert sorted(j["State"] for j in got) == ["complete"] + ["ready"] * expected_ready(name)


@pytest.mark.parametrize("name", NAMES, ids=IDS)
def test_counts_count_exactly_the_named_group(api: httpx.Client, groups: dict[str, set[str]],
                                              name: str) -> None:
    r = api.get(f"/rest/v1/counts/{enc(name)}")
    assert r.status_code == 200, r.text
    counts = {k: v for k, v in r.json().items() if v}
    assert counts == {"ready": expected_ready(name), "complete": 1}


@pytest.mark.parametrize("name", NAMES, ids=IDS)
def test_summary_is_of_exactly_the_named_group(api: httpx.Client, groups: dict[str, set[str]],
                                               name: str) -> None:
    r = api.get(f"/rest/v1/summary/{enc(name)}")
    assert r.status_code == 200, r.text
    summary = r.json()
    assert [g["RepGroup"] for g in summary["RepGroups"]] == [name]
    counts = summary["RepGroups"][0]["Counts"]
    assert (counts["ready"], counts["complete"]) == (expected_ready(name), 1)
    assert summary["All"] is None


def test_several_names_in_one_path_each_count_once(api: httpx.Client,
                                                   groups: dict[str, set[str]]) -> None:
    """``a,b`` (encoded ``a%2Cb``) next to ``a`` and ``b`` in one list: three groups."""
    names = ["a,b", "a", "b", "x%2Cy"]
    r = api.get("/rest/v1/jobs/" + ",".join(enc(n) for n in names))
    assert r.status_code == 200, r.text
    assert sorted(j["Key"] for j in r.json()) == sorted(k for n in names for k in groups[n])


def test_a_slash_may_also_be_sent_unencoded(api: httpx.Client,
                                            groups: dict[str, set[str]]) -> None:
    r = api.get("/rest/v1/jobs/a/b")
    assert r.status_code == 200, r.text
    assert {j["Key"] for j in r.json()} == groups["a/b"]


def test_a_plus_in_a_path_is_a_plus(api: httpx.Client, groups: dict[str, set[str]]) -> None:
    """In a path ``+`` is a literal plus (only a query string reads it as a space)."""
    r = api.get("/rest/v1/jobs/a+b")
    assert r.status_code == 200, r.text
    assert {j["Key"] for j in r.json()} == groups["a+b"]


@pytest.mark.parametrize("route", ["jobs", "counts", "summary", "details"])
def test_a_name_that_is_not_utf8_is_a_clear_client_error(api: httpx.Client,
                                                         route: str) -> None:
    r = api.get(f"/rest/v1/{route}/ok,%FF%FE")
    assert r.status_code == 400, r.text
    assert "'%FF%FE'" in r.text and "UTF-8" in r.text


@pytest.mark.parametrize("name", NAMES, ids=IDS)
def test_delete_removes_exactly_the_named_group(api: httpx.Client, name: str) -> None:
    """Steps: fill every name's group (with this test's prefix); DELETE one of them with
    state=deletable. Expected: its jobs, and only they, are answered and gone."""
    prefix = f"d{next(_serial)}-"
    keys = populate(api, prefix)
    r = api.delete(f"/rest/v1/jobs/{enc(prefix + name)}", params={"state": "deletable"})
    assert r.status_code == 200, r.text
    assert {j["Key"] for j in r.json()} == keys[prefix + name]
    for other, expected in keys.items():
        left = api.get(f"/rest/v1/jobs/{enc(other)}").json()
        assert {j["Key"] for j in left} == (set() if other == prefix + name else expected)


# -- limit groups -------------------------------------------------------------------------

LIMIT_NAMES = [n for n in NAMES if "," not in n]


@pytest.mark.parametrize("name", LIMIT_NAMES, ids=[IDS[NAMES.index(n)] for n in LIMIT_NAMES])
def test_limits_set_read_and_remove_exactly_the_named_group(api: httpx.Client,
                                                            name: str) -> None:
    full = f"L{next(_serial)}-{name}"
    before = api.get("/rest/v1/limits/").json()
    r = api.put(f"/rest/v1/limits/{enc(full)}", params={"limit": "3"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": full, "limit": 3}
    after = api.get("/rest/v1/limits/").json()
    assert after == {**before, full: 3}
    assert api.get(f"/rest/v1/limits/{enc(full)}").json() == {"name": full, "limit": 3}
    r = api.delete(f"/rest/v1/limits/{enc(full)}")
    assert r.status_code == 200, r.text
    assert api.get("/rest/v1/limits/").json() == before


@pytest.mark.parametrize("name", ["a,b", "x:1"])
def test_a_limit_name_with_a_separator_is_refused_not_split(api: httpx.Client,
                                                            name: str) -> None:
    before = api.get("/rest/v1/limits/").json()
    r = api.put(f"/rest/v1/limits/{enc(name)}", params={"limit": "3"})
    assert r.status_code == 400, r.text
    separator = "," if "," in name else ":"
    assert r.text == f"limit group name {name!r} must not contain '{separator}'\n"
    assert api.get("/rest/v1/limits/").json() == before


# -- the web page's endpoints (names in the query) ----------------------------------------

@pytest.mark.parametrize("name", NAMES, ids=IDS)
def test_web_endpoints_show_exactly_the_named_group(api: httpx.Client,
                                                    groups: dict[str, set[str]],
                                                    name: str) -> None:
    r = api.get("/web/api/group", params={"group": name, "per_class": "100"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["name"] == name
    shown = {j["Key"] for c in got["classes"] for j in c["jobs"]}
    assert shown == groups[name]
    r = api.get("/web/api/jobs", params={"group": name, "state": "ready"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == expected_ready(name)
    r = api.get("/web/api/search", params={"q": name})
    assert r.status_code == 200, r.text
    found = r.json()["groups"]
    assert name in found and all(name in n for n in found)


def test_web_action_removes_exactly_the_named_group(api: httpx.Client) -> None:
    prefix = f"w{next(_serial)}-"
    keys = populate(api, prefix)
    r = api.post("/web/api/action", content=orjson.dumps(
        {"action": "remove", "group": prefix + "a,b"}))
    assert r.status_code == 200, r.text
    assert set(r.json()["Keys"]) == keys[prefix + "a,b"]
    for other, expected in keys.items():
        left = api.get(f"/rest/v1/jobs/{enc(other)}").json()
        assert {j["Key"] for j in left} == (set() if other == prefix + "a,b" else expected)


# -- the Python client and the wr command ---------------------------------------------------

@pytest.mark.parametrize("name", NAMES, ids=IDS)
def test_the_client_addresses_exactly_the_named_group(mgr: ManagerHandle, api: httpx.Client,
                                                      groups: dict[str, set[str]],
                                                      name: str) -> None:
    with mgr.client() as c:
        assert {j["Key"] for j in c.status(name)} == groups[name]
        assert {j["Key"] for j in c.details([name])} == groups[name]
        assert c.counts(name)["ready"] == expected_ready(name)
        assert [g["RepGroup"] for g in c.summary(name)["RepGroups"]] == [name]
        if "," not in name:
            full = f"C{next(_serial)}-{name}"
            assert c.set_limit(full, 2) == 2
            assert c.limit(full) == 2 and c.limits()[full] == 2
            assert c.set_limit(full, -1) == -1
        prefix = f"c{next(_serial)}-"
        keys = populate(api, prefix)
        gone = c.cancel("deletable", prefix + name)
        assert {j["Key"] for j in gone} == keys[prefix + name]
        assert {j["Key"] for j in c.status([prefix + n for n in NAMES])} == set().union(
            *(k for n, k in keys.items() if n != prefix + name))


@pytest.mark.parametrize("name", NAMES, ids=IDS)
def test_wr_status_and_remove_address_exactly_the_named_group(
        mgr: ManagerHandle, api: httpx.Client, groups: dict[str, set[str]], name: str) -> None:
    """``wr status -i NAME`` shows, and ``wr remove -i NAME`` removes, that group alone."""
    shown = mgr.wr("status", "-i", name, "-o", "json", "--limit", "0", check=True)
    assert {j["Key"] for j in orjson.loads(shown.stdout)} == groups[name]
    counted = mgr.wr("status", "-i", name, "-o", "counts", check=True)
    lines = counted.stdout.splitlines()
    assert "complete: 1" in lines and f"ready: {expected_ready(name)}" in lines, lines
    prefix = f"r{next(_serial)}-"
    keys = populate(api, prefix)
    removed = mgr.wr("remove", "-i", prefix + name, check=True)
    assert f"Removed {len(keys[prefix + name])} " in removed.stderr + removed.stdout
    left: dict[str, Any] = {n: {j["Key"] for j in api.get(f"/rest/v1/jobs/{enc(n)}").json()}
                            for n in keys}
    assert left == {n: (set() if n == prefix + name else k) for n, k in keys.items()}


def test_a_line_break_after_the_endpoint_is_refused_not_read_as_every_job(
        api: httpx.Client, groups: dict[str, set[str]]) -> None:
    """``/rest/v1/jobs%0A`` matched the route ``/rest/v1/jobs`` (a regex ``$`` matches before
    a final line break), which names no ids: every job. It is an error now."""
    before = {j["Key"] for j in api.get("/rest/v1/jobs/").json()}
    r = api.delete("/rest/v1/jobs%0A", params={"state": "deletable"})
    assert r.status_code == 400, r.text
    assert "line break" in r.text
    assert {j["Key"] for j in api.get("/rest/v1/jobs/").json()} == before
