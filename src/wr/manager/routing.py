"""How the route table (`wr.manager.routes`) becomes the application's routes and the
paths of its OpenAPI document.

Rules (issue 14, items 3 and 8):

* **Guarded by default.** An entry's guard is the token unless the entry says
  ``guard=OPEN``; the guard is applied here, when the entry becomes a Starlette route, so a
  handler never checks the token itself and a route added without a thought for it is
  closed, not open.
* **One declaration.** The same entry names the handler and says what the route promises
  (its OpenAPI operations): the document cannot describe a route that is not served, and
  says "no token needed" exactly where the guard is open (``security: []``), with the 401
  answer everywhere else.

The token's checks are wr's, in wr's order (`wr.manager.rest.check_token`): ``?token=``
first, then ``Authorization: Bearer``. A refused HTTP request gets the text 401 of every
other error (or the entry's ``refused`` answer: the web page's own 401 page). A refused
websocket gets the same 401 as its handshake's answer (the ASGI websocket denial
response), which a client can read; a websocket closed before it is accepted reaches the
client as a bare 403 (uvicorn), the code it was closed with lost. Where a server cannot
send such an answer, the websocket is closed with 4401.
"""

from __future__ import annotations

import enum
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from wr.errors import Unauthorized
from wr.manager.rest import check_token, text_error

ANY = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
"""Every method: the seed endpoints take them all and answer unlisted ones with a 400."""
TOKEN_SECURITY = [{"bearerToken": []}, {"tokenQuery": []}]
"""The document's default security: the token, as a header or as ``?token=``."""


class Guard(enum.StrEnum):
    TOKEN = "token"
    """The manager's token is required (the default)."""
    OPEN = "open"
    """Anyone may ask: the version, the API's documents, the page's static files."""


TOKEN = Guard.TOKEN
OPEN = Guard.OPEN


class Kind(enum.StrEnum):
    HTTP = "http"
    WEBSOCKET = "websocket"
    MOUNT = "mount"
    """An ASGI application serving every path below the entry's (static files)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One documented operation: ``method`` on ``path`` (as the document names it, which
    may be narrower than the route that serves it: ``/rest/v1/actions/kill`` of
    ``/rest/v1/actions/{action}``), and its OpenAPI facts less its security and 401."""

    method: str
    path: str
    facts: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One entry of the table: the paths a handler serves, how, and what it promises.

    ``handler`` and ``refused`` name attributes of the handler objects the application is
    built with (``"rest.jobs"`` is ``handlers["rest"].jobs``), so the table can be read,
    and the document generated, without a manager."""

    paths: tuple[str, ...]
    handler: str
    methods: tuple[str, ...] = ("GET",)
    guard: Guard = TOKEN
    kind: Kind = Kind.HTTP
    refused: str | None = None
    """A handler ``(request, error)`` answering a refused request instead of the text 401."""
    ops: tuple[Operation, ...] = ()


# -- the table as Starlette routes --------------------------------------------------------------

def starlette_routes(table: Iterable[Endpoint], handlers: Mapping[str, Any],
                     token: str) -> list[BaseRoute]:
    """The application's routes, each entry's guard applied, in the table's order."""
    routes: list[BaseRoute] = []
    for entry in table:
        target = resolve(handlers, entry.handler, entry)
        refused = resolve(handlers, entry.refused, entry) if entry.refused else None
        for path in entry.paths:
            if entry.kind is Kind.MOUNT:
                app = target if entry.guard is OPEN else _GuardedApp(target, token)
                routes.append(Mount(path, app=app))
            elif entry.kind is Kind.WEBSOCKET:
                endpoint = target if entry.guard is OPEN else _guard_websocket(target, token)
                routes.append(WebSocketRoute(path, endpoint))
            else:
                endpoint = (target if entry.guard is OPEN
                            else _guard_http(target, token, refused))
                routes.append(Route(path, endpoint, methods=list(entry.methods)))
    return routes


def resolve(handlers: Mapping[str, Any], name: str, entry: Endpoint) -> Any:
    """The object ``name`` ("rest.jobs") names among ``handlers``."""
    first, *rest = name.split(".")
    try:
        found = handlers[first]
        for part in rest:
            found = getattr(found, part)
    except (KeyError, AttributeError):
        raise LookupError(f"route {entry.paths[0]}: no handler {name!r} (handlers: "
                          f"{', '.join(sorted(handlers))})") from None
    return found


Handler = Callable[[Request], Awaitable[Response]]


def _guard_http(handler: Handler,
                token: str,
                refused: Callable[[Request, Unauthorized], Awaitable[Response]] | None,
                ) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            check_token(request, token)
        except Unauthorized as exc:
            if refused is None:
                raise  # the one error handler answers it (rest.error_handler)
            return await refused(request, exc)
        return await handler(request)

    guarded.__qualname__ = f"guarded({getattr(handler, '__qualname__', handler)})"
    return guarded


def _guard_websocket(handler: Callable[[WebSocket], Awaitable[None]], token: str
                     ) -> Callable[[WebSocket], Awaitable[None]]:
    async def guarded(ws: WebSocket) -> None:
        try:
            check_token(ws, token)
        except Unauthorized as exc:
            await refuse_websocket(ws, exc)
            return
        await handler(ws)

    guarded.__qualname__ = f"guarded({getattr(handler, '__qualname__', handler)})"
    return guarded


async def refuse_websocket(ws: WebSocket, exc: Unauthorized) -> None:
    """Answer the handshake with the 401 an HTTP request would get (see the module's
    docstring for why not a close code)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(text_error(exc.message, exc.status))
    else:
        await ws.close(code=4401, reason=exc.message)


class _GuardedApp:
    """A mounted application behind the token (HTTP) or refused (anything else)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            try:
                check_token(request, self.token)
            except Unauthorized as exc:
                await text_error(exc.message, exc.status)(scope, receive, send)
                return
        elif scope["type"] == "websocket":
            ws = WebSocket(scope, receive, send)
            try:
                check_token(ws, self.token)
            except Unauthorized as exc:
                await refuse_websocket(ws, exc)
                return
        await self.app(scope, receive, send)


# -- the table as OpenAPI paths -----------------------------------------------------------------

def openapi_paths(table: Iterable[Endpoint]) -> dict[str, dict[str, Any]]:
    """The document's ``paths``: every operation of the table, in the table's order, with
    its security from its entry's guard."""
    paths: dict[str, dict[str, Any]] = {}
    for entry in table:
        for op in entry.ops:
            item = paths.setdefault(op.path, {})
            if op.method in item:
                raise ValueError(f"{op.method.upper()} {op.path} is declared twice")
            facts = dict(op.facts)
            responses = dict(facts["responses"])
            if entry.guard is OPEN:
                facts["security"] = []
            else:
                responses.setdefault("401", _ref("responses", "Unauthorized"))
            facts["responses"] = dict(sorted(responses.items()))
            item[op.method] = facts
    return paths


# -- writing operations briefly (used by the table) -------------------------------------------
#
# A string where a schema, parameter, request body or response goes names a shared one of
# the document's components (``"JobStatus"`` is ``{"$ref": "#/components/schemas/
# JobStatus"}``); a dict is written out in full.

def op(spec: str, operation_id: str, tag: str, summary: str, description: str = "", *,
       params: Iterable[str | dict[str, Any]] = (), body: str | dict[str, Any] | None = None,
       responses: Mapping[int, str | dict[str, Any]]) -> Operation:
    """The operation ``spec`` ("GET /rest/v1/jobs/")."""
    method, path = spec.split(" ", 1)
    facts: dict[str, Any] = {"tags": [tag], "operationId": operation_id, "summary": summary}
    if description:
        facts["description"] = prose(description)
    if params:
        facts["parameters"] = [_ref("parameters", p) if isinstance(p, str) else p
                               for p in params]
    if body is not None:
        facts["requestBody"] = _ref("requestBodies", body) if isinstance(body, str) else body
    facts["responses"] = {str(code): _ref("responses", r) if isinstance(r, str) else r
                          for code, r in responses.items()}
    return Operation(method.lower(), path, facts)


def schema(value: str | dict[str, Any]) -> dict[str, Any]:
    return _ref("schemas", value) if isinstance(value, str) else value


def array_of(items: str | dict[str, Any], **facts: Any) -> dict[str, Any]:
    return {"type": "array", **facts, "items": schema(items)}


def _parameter(where: str, name: str, value: str | dict[str, Any], description: str,
               required: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where}
    if required:
        out["required"] = True
    if description:
        out["description"] = prose(description)
    out["schema"] = schema(value)
    return out


def query(name: str, value: str | dict[str, Any], description: str = "", *,
          required: bool = False) -> dict[str, Any]:
    return _parameter("query", name, value, description, required)


def path_param(name: str, value: str | dict[str, Any], description: str = "") -> dict[str, Any]:
    return _parameter("path", name, value, description, True)


def header(name: str, value: str | dict[str, Any], description: str = "") -> dict[str, Any]:
    return _parameter("header", name, value, description, False)


def answer(description: str, media: str = "application/json",
           value: str | dict[str, Any] | None = None, *, example: Any = None,
           **more: Any) -> dict[str, Any]:
    """A response: ``value`` is its body's schema (a string, by default, for text media)."""
    if value is None:
        value = {"type": "string"}
    body: dict[str, Any] = {"schema": schema(value)}
    if example is not None:
        body["example"] = example
    return {"description": prose(description), **more,
            "content": {media: body}}


def json_answer(description: str, value: str | dict[str, Any], *, example: Any = None
                ) -> dict[str, Any]:
    return answer(description, "application/json", value, example=example)


def text_answer(description: str) -> dict[str, Any]:
    return answer(description, "text/plain")


def html_answer(description: str) -> dict[str, Any]:
    return answer(description, "text/html")


def json_body(value: str | dict[str, Any], *, example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema(value)}
    if example is not None:
        content["example"] = example
    return {"required": True, "content": {"application/json": content}}


def prose(text: str) -> str:
    """A text written as in a docstring, as the document's Markdown: each paragraph, and
    each ``- `` list item, on one line (the lines it was wrapped into for the source, joined
    with spaces); a block with a ```` ``` ```` fence kept as written."""
    blocks = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        if "```" in block:
            blocks.append(block)
            continue
        items: list[str] = []
        for line in block.split("\n"):
            if line.startswith("- ") or not items:
                items.append(line.strip())
            else:
                items[-1] += " " + line.strip()
        blocks.append("\n".join(items))
    return "\n\n".join(blocks)


def _ref(kind: str, name: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(name, dict):
        return name
    return {"$ref": f"#/components/{kind}/{name}"}
