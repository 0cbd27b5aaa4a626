"""Builds the ASGI application the manager serves on both of its ports.

Starlette alone, not FastAPI (issue 14, item 8): every route is a plain Starlette route
declared in the route table (`wr.manager.routes`), the OpenAPI document is generated from
that table, and nothing uses FastAPI's models or dependency injection, while importing it
(and pydantic with it) cost every manager start a few hundred milliseconds
(docs/architecture.md has the figures).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from wr.errors import WrError
from wr.manager import openapi
from wr.manager.actions import ManagementAPI
from wr.manager.core import Manager
from wr.manager.environments_api import EnvironmentsAPI
from wr.manager.lsf_api import LsfAPI
from wr.manager.metrics import Metrics
from wr.manager.rest import RestAPI, error_handler
from wr.manager.routes import ROUTES
from wr.manager.routing import starlette_routes
from wr.manager.runner_ws import RunnerEndpoint
from wr.manager.stream import EventStream
from wr.manager.summary import SummaryAPI
from wr.manager.web import WebPage, static_files


def handlers(manager: Manager, token: str, *, max_body: int) -> dict[str, Any]:
    """The objects whose methods the route table names (``"rest.jobs"``)."""
    rest = RestAPI(manager, token, max_body)
    return {
        "rest": rest,
        "actions": ManagementAPI(manager, token, rest),
        "summary": SummaryAPI(manager, token, rest),
        "lsf": LsfAPI(manager, token),
        "environments": EnvironmentsAPI(manager, token, rest),
        "stream": EventStream(manager, token),
        "metrics": Metrics(manager, token),
        "web": WebPage(manager, token),
        "static": static_files(),
        "openapi": openapi,
        "runners": RunnerEndpoint(manager, token),
    }


def build_app(manager: Manager, token: str, *, max_body: int) -> Starlette:
    routes = starlette_routes(ROUTES, handlers(manager, token, max_body=max_body), token)
    return Starlette(routes=routes, exception_handlers={
        WrError: error_handler,
        # A client gone mid-body is no server error: handled here, not re-raised to uvicorn.
        ClientDisconnect: error_handler,
        HTTPException: error_handler,
        Exception: error_handler,
    })
