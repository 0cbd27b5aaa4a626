"""Builds the ASGI application the manager serves on both of its ports."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import WebSocketRoute

from wr.errors import WrError
from wr.manager.actions import ManagementAPI
from wr.manager.core import Manager
from wr.manager.lsf_api import LsfAPI
from wr.manager.metrics import Metrics
from wr.manager.openapi import openapi_routes
from wr.manager.rest import RestAPI, error_handler
from wr.manager.runner_ws import RunnerEndpoint
from wr.manager.stream import EventStream
from wr.manager.summary import SummaryAPI
from wr.manager.web import web_routes


def build_app(manager: Manager, token: str, *, max_body: int) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    rest = RestAPI(manager, token, max_body)
    app.router.routes.extend(rest.routes())
    app.router.routes.extend(ManagementAPI(manager, token, rest).routes())
    app.router.routes.extend(SummaryAPI(manager, token, rest).routes())
    app.router.routes.extend(LsfAPI(manager, token).routes())
    app.router.routes.append(
        WebSocketRoute("/runner_ws", RunnerEndpoint(manager, token).__call__))
    app.router.routes.extend(web_routes(manager, token))
    app.router.routes.extend(EventStream(manager, token).routes())
    app.router.routes.extend(Metrics(manager, token).routes())
    app.router.routes.extend(openapi_routes())
    app.add_exception_handler(WrError, error_handler)
    # A client gone mid-body is no server error: handled here, not re-raised to uvicorn.
    app.add_exception_handler(ClientDisconnect, error_handler)
    app.add_exception_handler(HTTPException, error_handler)
    app.add_exception_handler(Exception, error_handler)
    return app
