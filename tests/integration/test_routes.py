"""The route table's guard, against a real manager (issue 14, item 3).

Every route the table guards, with every method it serves, on both of the manager's ports,
is refused without the token and with a wrong one, with wr's words for each, before its
handler runs; the routes it leaves open answer without it. The requests that are refused
are the ones that would change things (drain, uploads, removals), so a manager that still
answers at the end, with its one job and its limit untouched, shows that none got through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ManagerHandle, running_manager
from wr.manager.routes import ROUTES
from wr.manager.routing import OPEN, TOKEN, Endpoint, Kind

pytestmark = pytest.mark.integration

REFUSALS = [
    # (what the request carries, headers, query, the 401's words)
    ("no token", {}, {}, "Authorization header required"),
    ("a wrong bearer token", {"Authorization": "Bearer nope"}, {}, "Invalid token"),
    ("a wrong ?token=", {}, {"token": "nope"}, "Invalid token"),
    ("another scheme", {"Authorization": "Basic bm9wZQ=="}, {},
     "Authorization requires Bearer scheme"),
]


def sample(path: str) -> str:
    """A concrete path for a route's: each ``{parameter}`` filled with ``x``."""
    return re.sub(r"\{[^}]+\}", "x", path)


def guarded(kind: Kind) -> list[tuple[Endpoint, str, str]]:
    """(entry, path, method) of every guarded route of ``kind``: HEAD too where GET is."""
    out = []
    for entry in ROUTES:
        if entry.guard is not TOKEN or entry.kind is not kind:
            continue
        methods = set(entry.methods) | ({"HEAD"} if "GET" in entry.methods else set())
        for path in entry.paths:
            out.extend((entry, path, method) for method in sorted(methods))
    return out


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """A manager with one queued job (held by a limit of 0, so it stays) and the limit."""
    with running_manager(tmp_path_factory.mktemp("home")) as handle:
        with handle.http() as api:
            r = api.post("/rest/v1/jobs/?rep_grp=kept", content=orjson.dumps(
                [{"cmd": "true # kept", "limit_grps": ["held:0"]}]))
            assert r.status_code == 201, r.text
        yield handle


def _client(mgr: ManagerHandle, port: int) -> httpx.Client:
    return httpx.Client(base_url=f"https://localhost:{port}", verify=mgr.ssl_context(),
                        trust_env=False, timeout=60)


@pytest.mark.parametrize("port_name", ["port", "web_port"])
def test_every_guarded_route_and_method_refuses_without_the_token(
        mgr: ManagerHandle, port_name: str) -> None:
    """Steps: send each guarded (route, method) four requests that lack the token: none,
    a wrong bearer, a wrong ?token=, a Basic header.
    Expected: each a 401 with wr's words, as text (the page: its own HTML 401 page); and
    afterwards the manager still runs, its job and its limit as they were."""
    routes = guarded(Kind.HTTP)
    assert len(routes) > 100  # the table's (path, method) pairs; far more than a sample
    refused = 0
    with _client(mgr, getattr(mgr, port_name)) as c:
        for entry, path, method in routes:
            for what, headers, params, words in REFUSALS:
                r = c.request(method, sample(path), headers=headers, params=params)
                where = f"{method} {path} with {what}"
                assert r.status_code == 401, f"{where}: {r.status_code} {r.text[:200]}"
                if method == "HEAD":
                    assert r.content == b"", where
                elif entry.refused is None:
                    assert r.text == words + "\n", where
                    assert r.headers["content-type"].startswith("text/plain"), where
                else:  # the web page's own page, saying how to open it
                    assert r.headers["content-type"].startswith("text/html"), where
                    assert "client.token" in r.text, where
                refused += 1
    assert refused == 4 * len(routes)
    with mgr.http() as api:
        assert [j["State"] for j in api.get("/rest/v1/jobs/kept").json()] == ["ready"]
        assert api.get("/rest/v1/limits/held").json() == {"name": "held", "limit": 0}
        assert api.get("/rest/v1/info/").json()["Mode"] == "started"


@pytest.mark.parametrize("port_name", ["port", "web_port"])
def test_every_guarded_websocket_refuses_the_handshake(
        mgr: ManagerHandle, port_name: str) -> None:
    """The handshake of each guarded websocket is answered with the 401 (and words) an
    HTTP request gets: a client sees why, where a close before accepting reaches it as a
    bare 403."""
    routes = guarded(Kind.WEBSOCKET)
    assert {path for _, path, _ in routes} == {"/runner_ws", "/web/live"}
    port = getattr(mgr, port_name)
    for _, path, _ in routes:
        for what, headers, params, words in REFUSALS:
            query = "".join(f"?{k}={v}" for k, v in params.items())
            with pytest.raises(InvalidStatus) as failed:
                connect(f"wss://localhost:{port}{path}{query}", ssl=mgr.ssl_context(),
                        additional_headers=headers, open_timeout=30)
            response = failed.value.response
            assert response.status_code == 401, (path, what)
            assert response.body == (words + "\n").encode(), (path, what)


def test_guarded_routes_let_the_token_through(mgr: ManagerHandle) -> None:
    """The guard is no wall: with the token, as a header or as ``?token=``, every guarded
    GET route reaches its handler (the event stream's answer is only begun)."""
    with _client(mgr, mgr.web_port) as c:
        for _, path, method in guarded(Kind.HTTP):
            if method != "GET":
                continue
            for headers, params in (({"Authorization": f"Bearer {mgr.token}"}, {}),
                                    ({}, {"token": mgr.token})):
                with c.stream("GET", sample(path), headers=headers, params=params) as r:
                    assert r.status_code != 401, f"GET {path}: {r.read()[:200]!r}"


def test_open_routes_answer_without_the_token(mgr: ManagerHandle) -> None:
    """Open on purpose, and nothing else: the version, the OpenAPI document and its page,
    and the web page's files."""
    open_ops = [(entry, op) for entry in ROUTES if entry.guard is OPEN for op in entry.ops]
    assert {op.path for _, op in open_ops} == {
        "/rest/version/", "/rest/openapi.json", "/rest/docs", "/web/static/{file}"}
    with _client(mgr, mgr.web_port) as c:
        for _, op in open_ops:
            path = op.path.replace("{file}", "wr.css")
            r = c.request(op.method.upper(), path)
            assert r.status_code == 200, f"{op.method} {path}: {r.status_code} {r.text[:200]}"
    assert [e.paths for e in ROUTES if e.guard is OPEN and e.kind is not Kind.MOUNT
            and not e.ops] == []


def _ws_accepts(url: str, **kwargs: Any) -> bool:
    with connect(url, open_timeout=30, **kwargs) as ws:
        return ws.protocol.state.name == "OPEN"


def test_the_web_feed_takes_the_token_either_way(mgr: ManagerHandle) -> None:
    """The table's guard takes the token as ``?token=`` (what the page sends) or as a
    bearer header, on websockets as on HTTP."""
    url = f"wss://localhost:{mgr.web_port}/web/live"
    assert _ws_accepts(f"{url}?token={mgr.token}", ssl=mgr.ssl_context())
    assert _ws_accepts(url, ssl=mgr.ssl_context(),
                       additional_headers={"Authorization": f"Bearer {mgr.token}"})
