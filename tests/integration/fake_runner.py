"""A runner played by a test: the runner protocol (wr.manager.runner_ws) over a raw
websocket, and a manager with no room for real runners, so that the test's own runner takes
the jobs it is given.

Shared by the tests of runners' reports (test_runner_reports.py) and of their batches
(test_runner_batches.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import websockets

from tests.conftest import ManagerHandle, wait_for


class FakeRunner:
    """Speaks the runner protocol over one websocket, under a fixed runner id."""

    def __init__(self, m: ManagerHandle, runner_id: str, group: str) -> None:
        self.m = m
        self.url = (f"wss://localhost:{m.port}/runner_ws?id={runner_id}"
                    f"&group={group}")
        self.ws: Any = None
        self.ids = 0

    async def __aenter__(self) -> FakeRunner:
        self.ws = await websockets.connect(
            self.url, ssl=self.m.ssl_context(), server_hostname="localhost",
            additional_headers={"Authorization": f"Bearer {self.m.token}"},
            max_size=None, ping_interval=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        self.ids += 1
        await self.ws.send(orjson.dumps({"op": op, "id": self.ids, **fields}))
        while True:
            reply = orjson.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if reply.get("id") == self.ids:
                return reply

    async def end(self, key: str, outcome: str = "archive", **report: Any) -> dict[str, Any]:
        return await self.ask("end", key=key, report={"outcome": outcome, "exitcode": 0,
                                                      "ended": time.time(), **report},
                              stdout="", stderr="", reserve=None)


def add_jobs(api: httpx.Client, body: list[dict[str, Any]], rep_grp: str) -> list[str]:
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(body), params={"rep_grp": rep_grp})
    assert r.status_code == 201, r.text
    return [j["Key"] for j in r.json()]


# The manager gets 100 MB to give out and a `sleep` that takes all of it, so no real runner
# is started for these jobs: the test's own runner reserves them by naming their scheduler
# group (ram:minutes:cores:disk~limit groups).
HELD = {"memory": "100M", "time": "1m", "cpus": 0, "limit_grps": ["replay"]}
GROUP = "100:30:0:0~replay"


def job_states(api: httpx.Client, key: str) -> list[dict[str, Any]]:
    return api.get(f"/rest/v1/jobs/{key}").json()


@contextlib.contextmanager
def hogged(make_manager: Any) -> Iterator[tuple[ManagerHandle, httpx.Client, str]]:
    """A manager whose 100 MB are all taken by a running `sleep` (see `HELD`): yields it,
    a client and the sleep's key, and kills the sleep (it ends buried) afterwards."""
    m = make_manager()
    m.start("--max_ram", "100")
    with m.http() as api:
        [hog] = add_jobs(api, [{"cmd": "sleep 60", "memory": "100M", "cpus": 0}], "hog")
        wait_for(lambda: job_states(api, hog)[0]["State"] == "running", what="the hog to run")
        yield m, api, hog
        api.delete(f"/rest/v1/jobs/{hog}", params={"state": "running"})
        wait_for(lambda: job_states(api, hog)[0]["State"] == "buried", what="the hog killed")
