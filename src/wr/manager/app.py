"""Builds the ASGI application the manager serves on both of its ports."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import WebSocketRoute

from wr.errors import WrError
from wr.manager.actions import ManagementAPI
from wr.manager.core import Manager
from wr.manager.rest import RestAPI, check_token, error_handler, text_error
from wr.manager.runner_ws import RunnerEndpoint

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wr manager</title></head>
<body><h1>wr manager</h1><p>This manager is running. Its REST API is under
<code>/rest/v1/</code>.</p></body></html>
"""


def build_app(manager: Manager, token: str, *, max_body: int) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    rest = RestAPI(manager, token, max_body)
    app.router.routes.extend(rest.routes())
    app.router.routes.extend(ManagementAPI(manager, token, rest).routes())
    app.router.routes.append(
        WebSocketRoute("/runner_ws", RunnerEndpoint(manager, token).__call__))

    async def page(request: Request) -> Response:
        try:
            check_token(request, token)
        except WrError:
            return text_error("This page needs the token that 'wr manager start' printed: "
                              "open https://<host>:<port>/?token=<token> (the token is also "
                              "in ~/.wr_<deployment>/client.token)", 401)
        return HTMLResponse(_PAGE)

    app.add_route("/", page, methods=["GET"])
    app.add_exception_handler(WrError, error_handler)
    app.add_exception_handler(Exception, error_handler)
    return app
