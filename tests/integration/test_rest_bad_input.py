"""Bad input to the REST API: a clear 4xx, a text message ending in a newline, nothing stored.

DESIGN.md principle 6, "Errors are answers": every case below is checked for its status, its
message (the contract's wording where spec/rest-and-queue.md §2.2 gives one) and for leaving
the queue exactly as it was. One manager serves the module; the body-size limit needs a
second one, started with ``WR_MAXBODYSIZE=1000``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ManagerHandle, running_manager
from wr.submission import PART

pytestmark = pytest.mark.integration

PROBLEM = "there was a problem interpreting your job: "
TEXT_TYPE = "text/plain; charset=utf-8"
BYTEFMT = ("byte quantity must be a positive integer with a unit of measurement like M, MB, "
           "MiB, G, GiB, or GB")


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """One manager for the module, in its own HOME, with the fast test timings."""
    with running_manager(tmp_path_factory.mktemp("home")) as handle:
        yield handle


@pytest.fixture(scope="module")
def api(mgr: ManagerHandle) -> Iterator[httpx.Client]:
    with mgr.http() as c:
        yield c


@pytest.fixture(scope="module")
def existing(api: httpx.Client) -> list[dict[str, Any]]:
    """A job that was in the queue before any bad request: it must survive them all."""
    body = [{"cmd": "echo existing", "limit_grps": ["badinput-hold:0"]}]
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(body), params={"rep_grp": "keep"})
    assert r.status_code == 201, r.text
    return r.json()


def snapshot(api: httpx.Client) -> list[dict[str, Any]]:
    r = api.get("/rest/v1/jobs/")
    assert r.status_code == 200, r.text
    return [{k: j[k] for k in ("Key", "RepGroup", "Cmd", "State")} for j in r.json()]


def rejected(api: httpx.Client, r: httpx.Response, before: list[dict[str, Any]],
             status: int = 400) -> str:
    """Check an error answer and that the queue did not change; return the message."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == TEXT_TYPE
    assert r.text.endswith("\n") and not r.text.endswith("\n\n")
    assert r.text.strip(), "an error needs a message"
    assert snapshot(api) == before
    bad = api.get("/rest/v1/jobs/bad")
    assert (bad.status_code, bad.json()) == (200, [])
    return r.text


def _ids(cases: dict[str, Any]) -> list[str]:
    return [name.replace(" ", "-") for name in cases]


def post(api: httpx.Client, body: bytes, **params: str) -> httpx.Response:
    return api.post("/rest/v1/jobs/", content=body, params={"rep_grp": "bad", **params})


# -- the body as a whole --------------------------------------------------------------------

NUL = b'[{"cmd":"echo a\x00b"}]'
DEEP = b"[" * 100_000 + b"]" * 100_000

BAD_BODIES = {
    "empty": b"",
    "whitespace": b"  \n",
    "invalid JSON": b'[{"cmd": "echo x",]',
    "not JSON": b"cmd=echo",
    "truncated": b'[{"cmd":"echo x"}',
    "single object": b'{"cmd":"echo x"}',
    "string": b'"echo x"',
    "number": b"42",
    "array of strings": b'["echo x"]',
    "array of arrays": b'[["echo x"]]',
    "trailing data": b'[{"cmd":"echo x"}] [{"cmd":"echo y"}]',
    "raw NUL byte": NUL,
    "NUL before JSON": b'\x00[{"cmd":"echo x"}]',
    "invalid UTF-8": b'[{"cmd":"echo \xff\xfe"}]',
    "lone surrogate": b'[{"cmd":"echo \\ud800"}]',
    "UTF-16": '[{"cmd":"echo x"}]'.encode("utf-16"),
    "deeply nested arrays": DEEP,
    "deeply nested objects": b'[{"cmd":"x","a":' + b'{"a":' * 50_000 + b"1"
                             + b"}" * 50_000 + b"}]",
    "huge exponent": b'[{"cmd":"echo x","priority":1e400}]',
    "NaN": b'[{"cmd":"echo x","cpus":NaN}]',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=_ids(BAD_BODIES))
def test_bad_body(api: httpx.Client, existing: list[dict[str, Any]], body: bytes) -> None:
    before = snapshot(api)
    rejected(api, post(api, body), before)


def test_single_object_says_an_array_is_wanted(api: httpx.Client,
                                               existing: list[dict[str, Any]]) -> None:
    before = snapshot(api)
    text = rejected(api, post(api, b'{"cmd":"echo x"}'), before)
    assert "array" in text


# -- one bad job ----------------------------------------------------------------------------

def job(**fields: Any) -> bytes:
    return orjson.dumps([{"cmd": "echo bad job", **fields}])


BAD_JOBS: dict[str, tuple[bytes, str | None]] = {
    # (body, the exact message, or None where only the prefix is the contract's)
    "no cmd": (b'[{"memory":"1G"}]', PROBLEM + "cmd was not specified\n"),
    "empty cmd": (b'[{"cmd":""}]', PROBLEM + "cmd was not specified\n"),
    "null cmd": (b'[{"cmd":null}]', PROBLEM + "cmd was not specified\n"),
    "empty object": (b"[{}]", PROBLEM + "cmd was not specified\n"),
    "null element": (b"[null]", PROBLEM + "cmd was not specified\n"),
    "bad memory": (job(memory="5X"),
                   PROBLEM + f"memory value (5X) was not specified correctly: {BYTEFMT}\n"),
    "memory without unit": (job(memory="1000"),
                            PROBLEM + f"memory value (1000) was not specified correctly: "
                                      f"{BYTEFMT}\n"),
    "bad time": (job(time="5"), PROBLEM + 'time value (5) was not specified correctly: '
                                          'time: missing unit in duration "5"\n'),
    "time in days": (job(time="1d"), PROBLEM + 'time value (1d) was not specified correctly: '
                                               'time: unknown unit "d" in duration "1d"\n'),
    "garbage time": (job(time="abc"), PROBLEM + 'time value (abc) was not specified '
                                                'correctly: time: invalid duration "abc"\n'),
    "priority 300": (job(priority=300),
                     PROBLEM + "priority value (300) is not in the range 0..255\n"),
    "priority -1": (job(priority=-1),
                    PROBLEM + "priority value (-1) is not in the range 0..255\n"),
    "retries -1": (job(retries=-1),
                   PROBLEM + "retries value (-1) is not in the range 0..255\n"),
    "retries 256": (job(retries=256),
                    PROBLEM + "retries value (256) is not in the range 0..255\n"),
    "override 3": (job(override=3), PROBLEM + "override value (3) is not in the range 0..2\n"),
    "cpus as text": (job(cpus="abc"), None),
    "cpus negative": (job(cpus=-1), None),
    "cpus huge": (b'[{"cmd":"echo bad job","cpus":1e300}]', None),
    "priority as text": (job(priority="5"), None),
    "priority fraction": (job(priority=1.5), None),
    "priority 1e30": (b'[{"cmd":"echo bad job","priority":1e30}]', None),
    "priority 10**30": (b'[{"cmd":"echo bad job","priority":' + str(10**30).encode() + b"}]",
                        None),
    "retries -10**30": (b'[{"cmd":"echo bad job","retries":-' + str(10**30).encode() + b"}]",
                       None),
    "disk 10**30": (b'[{"cmd":"echo bad job","disk":' + str(10**30).encode() + b"}]", None),
    "disk negative": (job(disk=-1), None),
    "cmd not a string": (b'[{"cmd":["echo","x"]}]', None),
    "cmd with escaped NUL": (b'[{"cmd":"echo a\\u0000b"}]', None),
    "rep_grp with NUL": (job(rep_grp="a\x00b"), None),
    "cwd a number": (job(cwd=5), None),
    "deps a string": (job(deps="a,b"), None),
    "env not NAME=VALUE": (job(env=["novalue"]), None),
    "cwd_matters a string": (job(cwd_matters="yes"), None),
    "behaviour not an object": (job(on_failure=["rm -rf /"]), None),
    "behaviour run not a string": (job(on_success=[{"run": 5}]), None),
    "mount without targets": (job(mounts=[{"Mount": "/tmp/m"}]), None),
    "cloud_script missing": (job(cloud_script="/nonexistent/wr/script"), None),
}


@pytest.mark.parametrize(("body", "message"), BAD_JOBS.values(), ids=_ids(BAD_JOBS))
def test_bad_job(api: httpx.Client, existing: list[dict[str, Any]], body: bytes,
                 message: str | None) -> None:
    before = snapshot(api)
    text = rejected(api, post(api, body), before)
    assert text.startswith(PROBLEM)
    if message is not None:
        assert text == message


def test_batch_is_all_or_nothing(api: httpx.Client, existing: list[dict[str, Any]]) -> None:
    """Two good jobs and one bad one: 400, and neither good job is stored."""
    body = orjson.dumps([
        {"cmd": "echo good 1"},
        {"cmd": "echo good 2", "priority": 5},
        {"cmd": "echo bad 3", "priority": 300},
    ])
    before = snapshot(api)
    text = rejected(api, post(api, body), before)
    assert text == PROBLEM + "priority value (300) is not in the range 0..255\n"
    keys = {j["Key"] for j in before}
    good = api.post("/rest/v1/jobs/", content=orjson.dumps([{"cmd": "echo good 1"}]),
                    params={"rep_grp": "probe", "limit_grps": "badinput-hold:0"})
    # Had the first good job been stored, this POST would return it as a duplicate with
    # rep group "bad".
    assert good.status_code == 201, good.text
    probe = good.json()[0]
    assert probe["RepGroup"] == "probe" and probe["Key"] not in keys
    r = api.delete("/rest/v1/jobs/probe", params={"state": "deletable"})
    assert [j["Key"] for j in r.json()] == [probe["Key"]]


@pytest.mark.parametrize("path", ["/rest/v1/jobs/", "/rest/v1/add/"])
def test_bad_job_late_in_a_big_batch(api: httpx.Client, existing: list[dict[str, Any]],
                                     path: str) -> None:
    """The manager stores the first parts of a big POST while it reads the rest; a bad job
    in the third part still refuses the lot, and the next POST is stored whole."""
    good = [{"cmd": f"echo many {i}"} for i in range(2 * PART + 5)]
    before = snapshot(api)
    r = api.post(path, content=orjson.dumps([*good, {"cmd": ""}]), params={"rep_grp": "bad"})
    assert rejected(api, r, before) == PROBLEM + "cmd was not specified\n"
    r = api.post("/rest/v1/add/", content=orjson.dumps(good),
                 params={"rep_grp": "late", "limit_grps": "badinput-hold:0"})
    assert (r.status_code, r.json()) == (201, {"Added": len(good), "Existed": 0})
    gone = api.delete("/rest/v1/jobs/late", params={"state": "deletable"})
    assert len(gone.json()) == len(good)


# -- bad query parameters -------------------------------------------------------------------

GOOD_BODY = orjson.dumps([{"cmd": "echo from query"}])

BAD_QUERIES: dict[str, tuple[dict[str, str], str | None]] = {
    "query memory": ({"memory": "5X"}, BYTEFMT + "\n"),
    "query time": ({"time": "abc"}, 'time: invalid duration "abc"\n'),
    "query time without unit": ({"time": "5"}, 'time: missing unit in duration "5"\n'),
    "query priority out of range": ({"priority": "300"},
                                    PROBLEM + "priority value (300) is not in the range "
                                              "0..255\n"),
    "query override out of range": ({"override": "3"},
                                    PROBLEM + "override value (3) is not in the range 0..2\n"),
    "query retries not a number": ({"retries": "abc"}, None),
    "query cpus not a number": ({"cpus": "abc"}, None),
    "query on_failure not JSON": ({"on_failure": "[{run:"}, None),
    "query mounts not JSON": ({"mounts": "nope"}, None),
    "query priority huge": ({"priority": str(10**30)}, None),
}


@pytest.mark.parametrize(("params", "message"), BAD_QUERIES.values(), ids=_ids(BAD_QUERIES))
def test_bad_query_default(api: httpx.Client, existing: list[dict[str, Any]],
                           params: dict[str, str], message: str | None) -> None:
    before = snapshot(api)
    text = rejected(api, post(api, GOOD_BODY, **params), before)
    if message is not None:
        assert text == message


# -- bad GET and DELETE parameters ----------------------------------------------------------

@pytest.mark.parametrize("params", [
    {"state": "bogus"}, {"state": "READY"}, {"state": "deleted"},
    {"limit": "abc"}, {"limit": "1.5"}, {"limit": " 1"}, {"limit": "1e3"},
])
@pytest.mark.parametrize("ids", ["", "keep"])
def test_bad_get_parameter(api: httpx.Client, existing: list[dict[str, Any]],
                           params: dict[str, str], ids: str) -> None:
    before = snapshot(api)
    r = api.get(f"/rest/v1/jobs/{ids}", params=params)
    text = rejected(api, r, before)
    assert next(iter(params.values())) in text


@pytest.mark.parametrize("params", [{"limit": "abc"}, {"state": "deletable", "limit": "x"}])
def test_bad_delete_parameter(api: httpx.Client, existing: list[dict[str, Any]],
                              params: dict[str, str]) -> None:
    """A DELETE with a bad parameter removes nothing (the held job survives)."""
    before = snapshot(api)
    r = api.delete("/rest/v1/jobs/keep", params={"state": "deletable", **params})
    rejected(api, r, before)
    assert [j["Key"] for j in api.get("/rest/v1/jobs/keep").json()] == \
        [existing[0]["Key"]]


def test_good_post_after_all_that(api: httpx.Client, existing: list[dict[str, Any]]) -> None:
    """The manager still works and still holds the job it had before the bad requests."""
    r = api.post("/rest/v1/jobs/", content=orjson.dumps([{"cmd": "echo fine",
                                                          "limit_grps": ["badinput-hold:0"]}]),
                 params={"rep_grp": "fine"})
    assert r.status_code == 201, r.text
    keys = {j["Key"] for j in snapshot(api)}
    assert {existing[0]["Key"], r.json()[0]["Key"]} <= keys
    api.delete("/rest/v1/jobs/fine", params={"state": "deletable"})


# -- the body-size limit --------------------------------------------------------------------

def test_body_over_the_limit(make_manager: Any) -> None:
    """WR_MAXBODYSIZE=1000: a bigger POST or PUT is a 413, with or without Content-Length."""
    small = make_manager(WR_MAXBODYSIZE="1000")
    small.start()
    big = orjson.dumps([{"cmd": f"echo {i}"} for i in range(100)])
    assert len(big) > 1000
    fits = orjson.dumps([{"cmd": "echo fits", "limit_grps": ["hold:0"]}])
    with small.http() as c:
        def chunks() -> Iterator[bytes]:
            for i in range(0, len(big), 100):
                yield big[i:i + 100]

        for r in (c.post("/rest/v1/jobs/", content=big),
                  c.post("/rest/v1/jobs/", content=chunks()),
                  c.post("/rest/v1/jobs/", content=b"[" + b" " * 5000 + b"]")):
            assert r.status_code == 413, r.text
            assert r.headers["content-type"] == TEXT_TYPE
            assert r.text.endswith("\n")
            assert (c.get("/rest/v1/jobs/").json()) == []

        r = c.put("/rest/v1/upload/", params={"path": "~/big"}, content=b"x" * 1001)
        assert r.status_code == 413, r.text
        assert not (small.home / "big").exists()

        r = c.post("/rest/v1/jobs/", content=fits)
        assert r.status_code == 201, r.text
        assert [j["Cmd"] for j in c.get("/rest/v1/jobs/").json()] == ["echo fits"]
        c.delete("/rest/v1/jobs/", params={"state": "deletable"})
