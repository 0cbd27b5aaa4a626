"""The route table (wr.manager.routes) and how it becomes routes and a document
(wr.manager.routing), issue 14 items 3 and 8.

* Every route of the application comes from the table, in its order, and nothing else.
* Every route of the table is in the OpenAPI document, with the security its guard gives.
* A route declared without a guard is closed (tiny tables, their applications driven
  in process through ASGI: the real routing code, no server needed).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from wr.errors import WrError
from wr.manager.openapi import document
from wr.manager.rest import error_handler
from wr.manager.routes import ROUTES
from wr.manager.routing import OPEN, TOKEN, Endpoint, Kind, op, openapi_paths, starlette_routes


def _app(tmp_path: Path) -> Starlette:
    from wr.config import load_config
    from wr.manager.app import build_app
    from wr.manager.core import Manager
    from wr.schedulers.local import LocalScheduler
    from wr.store import Store

    config = load_config(environ={}, home=tmp_path, cwd=tmp_path, uid=1000)
    manager = Manager(config, store=Store(tmp_path / "db"), scheduler=LocalScheduler())
    return build_app(manager, "token", max_body=1000)


def _shape(route: Any) -> tuple[str, str, frozenset[str]]:
    if isinstance(route, Mount):
        return ("mount", route.path, frozenset())
    if isinstance(route, WebSocketRoute):
        return ("websocket", route.path, frozenset())
    assert isinstance(route, Route), f"{route!r} is neither a route, a websocket nor a mount"
    return ("http", route.path, frozenset(route.methods or ()))


def test_every_route_of_the_app_comes_from_the_table(tmp_path: Path) -> None:
    """The application's routes are the table's, one per path of each entry, in order, with
    the entry's methods (and HEAD where GET is, as Starlette adds): nothing beside it."""
    expected = []
    for entry in ROUTES:
        methods = set(entry.methods) | ({"HEAD"} if "GET" in entry.methods else set())
        for path in entry.paths:
            expected.append((str(entry.kind), path,
                             frozenset(methods) if entry.kind is Kind.HTTP else frozenset()))
    app = _app(tmp_path)
    assert [_shape(r) for r in app.routes] == expected
    assert app.user_middleware == []


def test_every_guarded_route_gets_the_guard_and_open_ones_do_not(tmp_path: Path) -> None:
    """A guarded route's endpoint is the guard around its handler; an open one's is the
    handler itself (a websocket's or mount's: likewise)."""
    routes = iter(_app(tmp_path).routes)
    for entry in ROUTES:
        for _ in entry.paths:
            route = next(routes)
            target = route.app if isinstance(route, Mount) else route.endpoint
            name = getattr(target, "__qualname__", type(target).__name__)
            assert name.startswith("guarded(") == (entry.guard is TOKEN), (entry.paths, name)


def _matches(path_pattern: str, documented: str, method: str) -> bool:
    sample = re.sub(r"\{[^}]+\}", "x", documented)
    route = Route(path_pattern, lambda r: None, methods=[method])
    for candidate in (sample, sample.rstrip("/")):
        match, _ = route.matches({"type": "http", "path": candidate, "method": method})
        if match is Match.FULL:
            return True
    return False


@pytest.mark.parametrize("entry", [e for e in ROUTES if e.kind is not Kind.WEBSOCKET],
                         ids=lambda e: e.paths[0])
def test_every_route_of_the_table_is_in_the_document(entry: Endpoint) -> None:
    """Each operation is served by its entry's route, and each method the entry serves is
    documented (the seed endpoints, which take every method and answer the unlisted ones
    with a 400, at least by GET or the method they are for)."""
    paths = document()["paths"]
    assert entry.ops, f"{entry.paths[0]} has no operation in the document"
    for op_ in entry.ops:
        assert paths[op_.path][op_.method]["operationId"] == op_.facts["operationId"]
        if entry.kind is Kind.MOUNT:
            assert op_.path.startswith(entry.paths[0] + "/")
        else:
            assert any(_matches(p, op_.path, op_.method.upper()) for p in entry.paths), (
                f"{op_.method} {op_.path} is not served by {entry.paths}")
    served = set(entry.methods) - {"HEAD", "OPTIONS"}
    documented = {o.method.upper() for o in entry.ops}
    if entry.methods == ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
        assert documented
    elif entry.kind is Kind.HTTP:
        assert documented == served, entry.paths


def test_the_document_says_what_each_guard_does() -> None:
    """Open routes say "no token" (``security: []``); guarded ones keep the document's
    default (the token) and list the 401; every path parameter is described."""
    doc = document()
    assert doc["security"] == [{"bearerToken": []}, {"tokenQuery": []}]
    params = doc["components"]["parameters"]
    for entry in ROUTES:
        for op_ in entry.ops:
            facts = doc["paths"][op_.path][op_.method]
            if entry.guard is OPEN:
                assert facts["security"] == [], op_.path
            else:
                assert "security" not in facts and "401" in facts["responses"], op_.path
            described = {p["name"] for p in (
                params[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                for p in facts.get("parameters", [])) if p["in"] == "path"}
            assert described == set(re.findall(r"\{(\w+)\}", op_.path)), op_.path


def test_websockets_are_named_in_the_description() -> None:
    """OpenAPI 3.1 cannot describe them; the document's description names each."""
    description = document()["info"]["description"]
    for entry in ROUTES:
        if entry.kind is Kind.WEBSOCKET:
            assert all(path in description for path in entry.paths), entry.paths


def test_an_operation_declared_twice_is_refused() -> None:
    twice = [Endpoint(("/a",), "h.a", ops=(op("GET /a", "a", "T", "A", responses={200: "X"}),)),
             Endpoint(("/b",), "h.b", ops=(op("GET /a", "b", "T", "B", responses={200: "X"}),))]
    with pytest.raises(ValueError, match="GET /a is declared twice"):
        openapi_paths(twice)


def test_a_handler_missing_from_the_handlers_is_named() -> None:
    table = [Endpoint(("/a",), "h.nope")]
    with pytest.raises(LookupError, match=r"route /a: no handler 'h.nope' \(handlers: h\)"):
        starlette_routes(table, {"h": object()}, "token")


# -- a new route is closed by default ---------------------------------------------------------

class _Handlers:
    async def hello(self, request: Request) -> Response:
        return PlainTextResponse("hello")

    async def refused(self, request: Request, exc: WrError) -> Response:
        return PlainTextResponse(f"own page: {exc.message}", status_code=401)

    async def talk(self, ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hi")
        await ws.close()


async def _files(scope: Any, receive: Any, send: Any) -> None:
    await PlainTextResponse("a file")(scope, receive, send)


def _tiny_app(*table: Endpoint) -> Starlette:
    routes = starlette_routes(table, {"h": _Handlers(), "files": _files}, "sekrit")
    return Starlette(routes=routes, exception_handlers={WrError: error_handler})


def _get(app: Starlette, path: str, **kwargs: Any) -> httpx.Response:
    """One request, answered by the application in process (httpx's ASGI transport)."""
    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            return await c.get(path, **kwargs)

    return asyncio.run(ask())


def _handshake(app: Any, path: str, query: bytes = b"", headers: Any = (),
               extensions: Any = None) -> list[dict[str, Any]]:
    """What the application sends to a websocket handshake (then a client that goes)."""
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "websocket.connect"},
                     {"type": "websocket.disconnect", "code": 1000}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": path, "root_path": "", "query_string": query,
             "headers": list(headers), "extensions": extensions or {}}
    asyncio.run(app(scope, receive, send))
    return sent


def test_a_route_declared_without_a_guard_needs_the_token() -> None:
    app = _tiny_app(Endpoint(("/new",), "h.hello"),
                    Endpoint(("/open",), "h.hello", guard=OPEN))
    r = _get(app, "/new")
    assert (r.status_code, r.text) == (401, "Authorization header required\n")
    assert _get(app, "/new", params={"token": "wrong"}).text == "Invalid token\n"
    assert _get(app, "/new", headers={"Authorization": "Token sekrit"}).text == (
        "Authorization requires Bearer scheme\n")
    # ?token= is looked at first (wr's order): a good header does not save a bad one.
    assert _get(app, "/new", params={"token": "wrong"},
                headers={"Authorization": "Bearer sekrit"}).status_code == 401
    assert _get(app, "/new", params={"token": "sekrit"}).text == "hello"
    assert _get(app, "/new", headers={"Authorization": "Bearer sekrit"}).text == "hello"
    assert _get(app, "/open").text == "hello"


def test_an_entry_may_answer_its_own_refusals() -> None:
    app = _tiny_app(Endpoint(("/page",), "h.hello", refused="h.refused"))
    r = _get(app, "/page", params={"token": "wrong"})
    assert (r.status_code, r.text) == (401, "own page: Invalid token")


def test_a_mount_declared_without_a_guard_needs_the_token() -> None:
    app = _tiny_app(Endpoint(("/files",), "files", kind=Kind.MOUNT))
    r = _get(app, "/files/a.txt")
    assert (r.status_code, r.text) == (401, "Authorization header required\n")
    assert _get(app, "/files/a.txt", params={"token": "sekrit"}).text == "a file"
    # A websocket to a mounted application is refused too, before reaching it.
    [close] = _handshake(app, "/files/x")
    assert close == {"type": "websocket.close", "code": 4401,
                     "reason": "Authorization header required"}


def test_a_websocket_declared_without_a_guard_is_refused_at_the_handshake() -> None:
    """With the ASGI denial extension (uvicorn has it), the handshake's answer is the 401
    an HTTP request gets; the handler never runs."""
    app = _tiny_app(Endpoint(("/ws",), "h.talk", kind=Kind.WEBSOCKET))
    sent = _handshake(app, "/ws", extensions={"websocket.http.response": {}})
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"Authorization header required\n"
    sent = _handshake(app, "/ws", query=b"token=sekrit",
                      extensions={"websocket.http.response": {}})
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send",
                                         "websocket.close"]
    assert sent[1]["text"] == "hi"


def test_a_server_without_denial_answers_gets_a_4401_close() -> None:
    """Where the server cannot answer a handshake with HTTP (no ``websocket.http.response``
    extension), the refusal is a close with 4401 and the words as its reason."""
    app = _tiny_app(Endpoint(("/ws",), "h.talk", kind=Kind.WEBSOCKET))
    sent = _handshake(app, "/ws", headers=[(b"authorization", b"Bearer nope")])
    assert sent == [{"type": "websocket.close", "code": 4401, "reason": "Invalid token"}]
