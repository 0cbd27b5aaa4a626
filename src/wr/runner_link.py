"""The runner's connection to the manager: a request/response channel over a websocket that
reconnects (the manager may be restarting), used by the runner (wr.runner) and by its keeper
(wr.keeper), which reports for a runner that died."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from typing import Any

import orjson

log = logging.getLogger("wr.runner")

RECONNECT_FOR = 24 * 3600.0
"""How long a runner holding a finished job's report keeps trying to reach a manager."""


RETRY_FOR = 30.0
"""Least time a runner keeps asking again when the manager cannot store a change yet."""


class ManagerGone(Exception):
    """The manager cannot be reached (and the runner has nothing worth waiting for)."""


class Link:
    """A request/response channel over a reconnecting websocket."""

    def __init__(self, url: str, token: str, ssl_ctx: Any, domain: str) -> None:
        self.url = url
        self.token = token
        self.ssl_ctx = ssl_ctx
        self.domain = domain
        self.ws: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.on_push: Any = lambda msg: None
        self.generation = 0
        """How many connections have been made: the manager gives back the reservations of
        a connection that closes, so jobs reserved on an earlier one are no longer ours."""

    async def connect(self, patience: float) -> None:
        import websockets

        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        delay = 0.2
        while True:
            try:
                self.ws = await websockets.connect(
                    self.url, ssl=self.ssl_ctx, server_hostname=self.domain,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    max_size=None, ping_interval=None, open_timeout=10, compression=None,
                )
                self.generation += 1
                break
            except (TimeoutError, OSError, websockets.WebSocketException) as exc:
                if loop.time() + delay > deadline:
                    raise ManagerGone(str(exc)) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._reader = asyncio.ensure_future(self._read(self.ws))

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                msg = orjson.loads(raw)
                mid = msg.get("id")
                if mid is None:
                    self.on_push(msg)
                    continue
                fut = self._pending.pop(mid, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except Exception:
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection to the manager closed"))
            self._pending.clear()

    async def request(self, msg: dict[str, Any], *, patience: float = 0.0) -> dict[str, Any]:
        """Send and await the answer; on a dropped connection, reconnect for up to
        ``patience`` seconds and send again. An answer marked ``retry`` (the manager could
        not store the change yet: a full disk) is asked again, with back-off, for up to
        ``patience`` seconds (at least ``RETRY_FOR``: a runner that gave up at once would
        only be replaced by another that does the same)."""
        delay = 0.2
        loop = asyncio.get_running_loop()
        retry_until = loop.time() + max(patience, RETRY_FOR)
        while True:
            mid = next(self._ids)
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[mid] = fut
            try:
                await self.ws.send(orjson.dumps({**msg, "id": mid}))
                reply = await fut
            except Exception as exc:
                self._pending.pop(mid, None)
                if patience <= 0:
                    raise ManagerGone(str(exc)) from exc
                await self._close()
                await self.connect(patience)
                continue
            if "error" in reply and reply.get("retry"):
                if loop.time() + delay > retry_until:
                    raise ManagerGone(reply["error"])
                if delay == 0.2:
                    log.warning("manager asked to retry later: %s", reply["error"])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if "error" in reply:
                raise RuntimeError(reply["error"])
            return reply

    async def _close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def close(self) -> None:
        await self._close()


def host_ip() -> str:
    """This host's first non-loopback IPv4 address (what wr reports as HostIP)."""
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family == socket.AF_INET and not a.address.startswith("127."):
                    return a.address
    except Exception:
        pass
    return "127.0.0.1"
