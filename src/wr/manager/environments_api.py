"""``PUT /rest/v1/environments/``: keep an environment for jobs to run with (issue 15).

The body is the environment: a JSON object of names to values, or an array of
``NAME=VALUE`` strings (wr's form). It is stored once by content (`wr.environments`), and
the answer is ``{"Key": "<32 hex digits>"}``, which jobs then name: ``env_key=<key>`` in the
URL query of ``POST /rest/v1/jobs/`` or ``/rest/v1/add/`` (every job of the request), or
``env_key`` in a job object. Sending the same environment again costs nothing and answers
the same key. The environment itself is never answered back, by this or any endpoint.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from wr.environments import EnvError
from wr.errors import BadRequest
from wr.manager.core import Manager
from wr.manager.rest import RestAPI, json_response


class EnvironmentsAPI:
    """The environments endpoint of one manager."""

    def __init__(self, manager: Manager, token: str, rest: RestAPI) -> None:
        self.manager = manager
        self.token = token
        self.rest = rest

    async def put(self, request: Request) -> Response:
        body = await self.rest._body(request)
        if not body or body.isspace():
            raise BadRequest("the request body is empty; expected the environment: a JSON "
                             "object of names to values, or an array of NAME=VALUE strings")
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from None
        try:
            key = await self.manager.environments.put(value)
        except EnvError as e:
            raise BadRequest(str(e)) from None
        return json_response({"Key": key})
