"""The OpenAPI document (wr.manager.openapi) tells the truth about the manager.

* Every route the application serves is described, and everything described is served.
* schemathesis, given the LIVE document of a real manager, sends generated requests (valid
  and invalid) to every operation: no answer may be a 5xx, and every answer must be one the
  document lists, with the content type and body schema it gives.
* The reference page is offline (no address outside the page) and docs/api-reference.html
  is the page the current document renders.

The fuzzed manager is paused first, so the jobs schemathesis adds never run, and its
``drain`` (which would stop it) and ``resume`` (which would run them) are checked by hand
at the end instead of fuzzed. Uploads go to a directory of the test's own, whatever path a
case names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from starlette.routing import Match, Mount, Route, WebSocketRoute

from tests.conftest import FAST_TIMINGS, ManagerHandle, _descendants_of_home, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = int(os.environ.get("WR_FUZZ_EXAMPLES", "12"))
"""Generated cases per operation and phase (raise it for a deeper, slower run)."""
NOT_FUZZED = ("drainManager", "resumeManager")
"""Operations checked by hand: drain would stop the manager, resume would run fuzzed jobs."""
EXCLUDED_CHECKS = {
    # The document says what a request may hold, not every rule the manager applies (a
    # cloud_script must name an existing file; a dependency must not make a cycle), so a
    # request the schema allows may rightly be refused with a 400.
    "positive_data_acceptance",
    # wr's contract reads booleans as "true or anything else" and takes unknown query
    # parameters and job properties silently; such requests are not errors here.
    "negative_data_rejection",
    # The seed endpoints answer unlisted methods with 400 "Only GET is supported" (wr's
    # wording), not 405.
    "unsupported_method",
}


# -- a manager to fuzz ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """A manager with some history (a complete and a buried job), then paused."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production", **FAST_TIMINGS)
    handle = ManagerHandle(home=home, env=env)
    handle.start()
    with _api(handle) as api:
        jobs = [{"cmd": "true # fz ok"}, {"cmd": "exit 2 # fz bad"},
                {"cmd": "true # fz held", "limit_grps": ["fzhold:0"]}]
        r = api.post("/rest/v1/jobs/?rep_grp=fz&memory=20M&time=1m", content=orjson.dumps(jobs))
        assert r.status_code == 201, r.text
        wait_for(lambda: sorted(j["State"] for j in api.get("/rest/v1/jobs/fz").json())
                 == ["buried", "complete", "ready"], what="the jobs to settle")
        assert api.post("/rest/v1/manager/pause").json()["Mode"] == "paused"
    yield handle
    handle.stop()
    leftovers = _descendants_of_home(home)
    for pid in leftovers:
        psutil.Process(pid).kill()
    assert not leftovers, f"processes left behind: {leftovers}\n{handle.log()}"


def _auth(mgr: ManagerHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {mgr.token}"}


def _api(mgr: ManagerHandle) -> httpx.Client:
    return mgr.http(timeout=30)


def load_schema(mgr: ManagerHandle) -> Any:
    """The manager's own document, as served, set up to test that manager."""
    config = SchemathesisConfig.from_dict({
        "base-url": mgr.url,
        "tls-verify": mgr.ca,
        "headers": {"Authorization": f"Bearer {mgr.token}"},
        "request-timeout": 10,
        "max-stream-events": 5,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True,
                       "database": "none"},
        "checks": {name: {"enabled": False} for name in EXCLUDED_CHECKS},
        # unsupported_method is not checked (above): send no unlisted methods.
        "phases": {"coverage": {"unexpected-methods": []}},
        "operations": [
            # The stream answers each case with a read cut short by its timeout: few cases.
            {"include-operation-id": "streamEvents", "generation": {"max-examples": 3},
             "phases": {"coverage": {"enabled": False}}},
            # The same parameters and body as addJobs, which gets the thorough (and slow,
            # ~1,000 cases) coverage phase: fuzzing is enough here.
            {"include-operation-id": "addJobsCounted",
             "phases": {"coverage": {"enabled": False}}},
        ],
    })
    return schemathesis.openapi.from_url(f"{mgr.url}/rest/openapi.json", config=config,
                                         verify=mgr.ca, timeout=10)


@pytest.fixture(scope="module")
def api_schema(mgr: ManagerHandle) -> Any:
    return load_schema(mgr)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's ``from_fixture`` labels each operation's subtest by rewriting
    ``node._nodeid``, which pytest 9 nodes no longer have; give them one to rewrite."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.exclude(operation_id=list(NOT_FUZZED)).parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: Any, mgr: ManagerHandle) -> None:
    if case.operation.path == "/rest/v1/upload/" and isinstance(case.query, dict) \
            and "path" in case.query:
        case.query["path"] = str(mgr.home / "fuzz-upload")
    # An idle event stream sends nothing; a short read is enough to check what it sends.
    timeout = 0.5 if case.operation.path == "/rest/v1/events/" else 20
    case.call_and_validate(headers=_auth(mgr), timeout=timeout)


def test_pause_resume_and_drain_match_the_document(manager: ManagerHandle) -> None:
    """On a manager of its own (a drain stops it), with a job running: pause, resume,
    drain, then resume again, which a draining manager refuses; each answer validated
    against the document."""
    with _api(manager) as api:
        r = api.post("/rest/v1/jobs/?rep_grp=dr&memory=20M&time=1m",
                     content=b'[{"cmd": "sleep 2 # dr"}]')
        assert r.status_code == 201, r.text
        wait_for(lambda: api.get("/rest/v1/jobs/dr").json()[0]["State"] == "running",
                 what="the job to run")
    doc = load_schema(manager)
    answers = []
    for op in ("pause", "resume", "drain", "resume"):
        case = doc[f"/rest/v1/manager/{op}"]["POST"].Case()
        response = case.call_and_validate(headers=_auth(manager))
        answers.append((response.status_code, response.text))
    assert [a[0] for a in answers] == [200, 200, 200, 400]
    stats = [orjson.loads(t) for _, t in answers[:3]]
    assert [s["Mode"] for s in stats] == ["paused", "started", "draining"]
    assert all(s["Running"] == 1 and 0 < s["ETC"] <= 60 for s in stats)
    assert answers[3][1] == "server is being drained\n"
    wait_for(lambda: not _descendants_of_home(manager.home),
             what="the drained manager and its runner to stop")


# -- the document against the application's routes ------------------------------------------

def _document() -> dict[str, Any]:
    from wr.manager.openapi import document

    return document()


def _app_routes(tmp_path: Path) -> list[Any]:
    from wr.config import load_config
    from wr.manager.app import build_app
    from wr.manager.core import Manager
    from wr.schedulers.local import LocalScheduler
    from wr.store import Store

    config = load_config(environ={}, home=tmp_path, cwd=tmp_path, uid=1000)
    manager = Manager(config, store=Store(tmp_path / "db"), scheduler=LocalScheduler())
    return list(build_app(manager, "token", max_body=1000).router.routes)


def _sample(path: str) -> str:
    """A concrete request path for a documented one (each {parameter} filled in)."""
    return re.sub(r"\{[^}]+\}", "x", path)


def _matches(route: Any, path: str, method: str) -> bool:
    scope = {"type": "http", "path": path, "method": method, "root_path": ""}
    match, _ = route.matches(scope)
    return match == Match.FULL


def test_every_route_is_described(tmp_path: Path) -> None:
    """Each HTTP route is reached by some documented path (its aliases aside: a route
    whose path is a documented one less its trailing slash, and the seed's catch-all
    `{rest:path}` routes); websockets, which OpenAPI cannot describe, are named in the
    document's description."""
    doc = _document()
    samples = [_sample(p) for p in doc["paths"]]
    description = doc["info"]["description"]
    for route in _app_routes(tmp_path):
        if isinstance(route, WebSocketRoute):
            assert route.path in description, f"websocket {route.path} is not mentioned"
            continue
        if isinstance(route, Mount):
            assert any(s.startswith(route.path + "/") for s in samples), route.path
            continue
        assert isinstance(route, Route)
        if "{rest:path}" in route.path:
            continue
        method = "GET" if "GET" in route.methods else sorted(route.methods)[0]
        assert any(_matches(route, s, method) or _matches(route, s.rstrip("/"), method)
                   for s in samples), f"{route.path} is not described"
        if set(route.methods) >= {"GET", "POST", "PUT", "DELETE", "PATCH"}:
            continue  # a seed endpoint: every method reaches it (unlisted ones: a 400)
        for method in route.methods - {"HEAD"}:
            assert any(
                (_matches(route, s, method) or _matches(route, s.rstrip("/"), method))
                and method.lower() in doc["paths"][p]
                for p, s in zip(doc["paths"], samples, strict=True)
            ), f"{method} {route.path} is served but not described"


def test_everything_described_is_served(tmp_path: Path) -> None:
    routes = _app_routes(tmp_path)
    for path, item in _document()["paths"].items():
        sample = _sample(path)
        for method in ("get", "put", "post", "delete", "patch"):
            if method in item:
                assert any(_matches(r, sample, method.upper()) for r in routes
                           if isinstance(r, Route | Mount)), f"{method} {path} is not served"


def test_status_objects_have_exactly_the_documented_properties(mgr: ManagerHandle) -> None:
    """The schema names every property of a status object, in the order they come."""
    props = list(_document()["components"]["schemas"]["JobStatus"]["properties"])
    with _api(mgr) as api:
        jobs = api.get("/rest/v1/jobs/fz").json()
    assert jobs
    for job in jobs:
        assert list(job) == props


# -- the reference page ---------------------------------------------------------------------

def test_the_reference_page_is_served_offline_and_complete(mgr: ManagerHandle) -> None:
    with httpx.Client(verify=mgr.ssl_context(), trust_env=False) as anon:
        r = anon.get(f"{mgr.url}/rest/docs")
        spec = anon.get(f"{mgr.url}/rest/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.1")
    page = r.text
    # Nothing is loaded from elsewhere: no script at all, no external src/href.
    assert "<script" not in page
    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", page)
    assert "default-src 'none'" in r.headers["content-security-policy"]
    for path, item in spec.json()["paths"].items():
        for method in item:
            if method in ("get", "put", "post", "delete"):
                assert f"op-{item[method]['operationId']}" in page, (method, path)


def test_the_committed_reference_page_is_current() -> None:
    """docs/api-reference.html is `python -m wr.manager.openapi > docs/api-reference.html`."""
    from wr.manager.openapi import reference_page

    committed = (REPO / "docs" / "api-reference.html").read_text(encoding="utf-8")
    assert committed == reference_page(), (
        "docs/api-reference.html is stale: run "
        "`.venv/bin/python -m wr.manager.openapi > docs/api-reference.html`")
