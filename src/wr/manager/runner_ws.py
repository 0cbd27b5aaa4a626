"""The runner protocol: one websocket per runner, JSON messages both ways.

Runner -> manager requests carry an ``id`` that the answer repeats:

* ``{"op": "reserve", "timeout": s, "many"?: n}`` -> ``{"job": {...} | null, "more"?: [...]}``:
  with ``many`` (a runner whose jobs end within milliseconds), up to ``n`` jobs are reserved
  at once (fewer when that would leave other runners of the group without a fair share of
  the ready ones): the first in ``job``, the rest in ``more``.
* ``{"op": "started", "key", "pid", "host", "ip", "at"}`` -> ``{}`` (stored before answered;
  ``at`` is the start time by the runner's clock)
* ``{"op": "touch", "key", "peak_ram"?: MB}`` -> ``{"kill": bool}``: a keep-alive, with the
  most memory the job has used so far (kept on the job, so its memory is known if the runner
  is killed with it). A touch the queue refuses (the runner no longer holds the job: another
  attempt took it over while this runner was cut off) is answered with the error and
  followed by a ``kill`` of that job, so a superseded attempt does not run on (issue 16).
* ``{"op": "end", "key", "report": {...}, "stdout", "stderr", "reserve": s | null,
  "many"?: n, "start"?: {"pid", "host", "ip", "at"}}`` -> ``{"job": next job | null,
  "more"?: [...]}``: the end of one job and the reservation of the next travel together, so
  a busy runner costs one round trip per job. A job that ended within
  wr.runner.START_REPORT_DELAY of its start has no ``started`` of its own: its ``end``
  carries ``start``, and the manager takes the start, then the end, in one commit (the job
  still goes reserved -> running -> complete, with its start time).
* ``{"op": "end", "ends": [{"key", "report", "stdout", "stderr", "start"?}, ...], "reserve",
  "many"?}``: the ends of several jobs (a batch of short ones) in one message; the answer
  adds ``"refused": {key: why}`` for those the queue refused, once what they conflict with
  is stored. If it refuses them all, the answer is an error, as for one.
* ``{"op": "env", "key"}`` -> ``{"env": ["NAME=VALUE", ...] | null}``: a stored environment
  (wr.environments), asked for the first time the runner meets a job's ``env_key``; null
  when the manager does not hold it (the job is then buried, as wr does).
* ``{"op": "release", "key"}`` -> ``{}``: give back a reserved job it will not start.
* ``{"op": "bye"}`` -> ``{}``: the runner holds nothing it has not reported; jobs reserved for
  it go back to the queue at once. The keeper of a runner that died (wr.keeper) connects under
  the dead runner's id, sends its ends (with ``"recovered": why``, which the manager logs),
  then ``bye``.

An answer ``{"error": ..., "retry": true}`` means the manager could not store the change (a
full disk, issue 6): the runner asks again later. A job it would have been given is put back
first, so nothing is handed out that was not stored. A report the queue refuses (a repeated
or late ``end``, a job removed meanwhile) is refused only once the state it conflicts with is
stored, so a runner never drops a report the db does not yet reflect; a repeated ``started``
for the job already running under this runner and pid is accepted again.

Manager -> runner pushes (no ``id``): ``{"op": "kill", "key"}`` (kill that job now) and
``{"op": "stop"}`` (the manager is stopping: put the job back and exit).

A closed connection tells the manager at once that the runner is gone; its reserved but
unstarted jobs go straight back to ready.

How they are served (issue 16, part 5): a keep-alive is answered as soon as it is read, ahead
of everything else; every other request goes to the manager's desk, which serves them in
batches, a slice of the event loop at a time, and answers each once its changes are stored
(`wr.manager.runner_batches`). Runners connect through `wr.manager.runner_wire`, the
websocket written for this channel, where the manager's server installs it; `RunnerEndpoint`
also serves the same protocol as a plain ASGI websocket route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from wr.jobs import Job
from wr.manager.core import Manager
from wr.manager.rest import Unauthorized, check_token, text_error
from wr.manager.runner_batches import MAX_MANY, RunnerRequest
from wr.manager.runner_wire import Refusal, RunnerWire
from wr.manager.runners import Ending, RunnerLink
from wr.queue import QueueError

__all__ = ["MAX_MANY", "RunnerEndpoint", "job_for_runner"]

log = logging.getLogger("wr.manager")

PATH = "/runner_ws"
"""Where runners connect (the route table's entry, wr.manager.routes)."""


def job_for_runner(job: Job, shell: str) -> dict[str, Any]:
    """What a runner needs to execute a job (wr.execute.ExecSpec's fields)."""
    msg = {
        "key": job.key,
        "cmd": job.cmd,
        "cwd": job.cwd,
        "cwd_matters": job.cwd_matters,
        "change_home": job.change_home,
        "env_override": job.env,
        "expected_ram_mb": job.ram,
        "expected_time_s": job.time,
        "retries_left": max(job.until_buried - 1, 0),
        "no_retry_over_walltime_s": job.no_retry_over_walltime,
        "modules": job.modules,
        "behaviours": job.behaviours,
        "mounts": job.mounts,
        "shell": shell,
    }
    rare = job.rare
    if rare.with_docker or rare.with_singularity or rare.monitor_docker or rare.group:
        msg.update(with_docker=rare.with_docker, with_singularity=rare.with_singularity,
                   container_mounts=rare.container_mounts,
                   monitor_docker=rare.monitor_docker, group=rare.group)  # issue 15
    if rare.env_key:  # the runner asks for the environment once (op "env", issue 15)
        msg["env_key"] = rare.env_key
    if job.bsub_mode:  # the LSF emulation (wr.lsf, issue 15)
        from wr.lsf import runner_fields

        msg["bsub"] = runner_fields(job)
    return msg


class _Headers:
    """A handshake's query and headers, as `check_token` reads a Starlette request."""

    def __init__(self, query: Mapping[str, str], headers: Mapping[str, str]) -> None:
        self.query_params = query
        self.headers = headers


class _Session:
    """One runner's connection over the wire (wr.manager.runner_wire)."""

    __slots__ = ("endpoint", "link")

    def __init__(self, endpoint: RunnerEndpoint, link: RunnerLink) -> None:
        self.endpoint = endpoint
        self.link = link

    def message(self, data: bytes) -> None:
        self.endpoint.received(self.link, data)

    def closed(self) -> None:
        self.endpoint.closed(self.link)


class RunnerEndpoint:
    """Serves runner websockets for one manager: over `wr.manager.runner_wire` (`admit`,
    `open`) or as an ASGI websocket route (``__call__``)."""

    def __init__(self, manager: Manager, token: str) -> None:
        self.manager = manager
        self.token = token
        self._reads: set[asyncio.Future[None]] = set()
        """Environment answers in flight (kept referenced until done)."""

    # -- a connection ---------------------------------------------------------------------

    def admit(self, query: Mapping[str, str], headers: Mapping[str, str]) -> tuple[str, str]:
        """Check a handshake as the route table's guard would (wr.manager.routing): the
        token, then the runner's id. Returns (id, group); raises Refusal."""
        try:
            check_token(_Headers(query, headers), self.token)  # type: ignore[arg-type]
        except Unauthorized as exc:
            raise Refusal(exc.status, exc.message) from None
        runner_id = query.get("id", "")
        if not runner_id:
            raise Refusal(400, "id parameter is required")
        return runner_id, query.get("group", "")

    def open(self, ticket: tuple[str, str], wire: RunnerWire) -> _Session:
        """A runner's websocket is up over the wire: connect it."""
        runner_id, group = ticket

        def post(msg: dict[str, Any]) -> None:
            wire.send_message(orjson.dumps(msg))

        async def send(msg: dict[str, Any]) -> None:
            post(msg)

        return _Session(self, self._connect(runner_id, group, post, send))

    def _connect(self, runner_id: str, group: str, post: Callable[[dict[str, Any]], None],
                 send: Any) -> RunnerLink:
        link = RunnerLink(runner_id, group, send, post=post)
        self.manager.connect_runner(link)
        return link

    def closed(self, link: RunnerLink) -> None:
        """Its connection closed: requests it left waiting are dropped."""
        link.closed = True
        self.manager.disconnect_runner(link.id, link)

    # -- a message ------------------------------------------------------------------------

    def received(self, link: RunnerLink, raw: bytes) -> None:
        """One request from a runner: a keep-alive is answered now, anything else goes to
        the manager's desk (wr.manager.runner_batches), which answers it once stored."""
        now = time.time()
        link.heard = time.monotonic()
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            _post(link, {"id": None, "error": f"bad request: {exc}"})
            return
        if not isinstance(msg, dict):
            _post(link, {"id": None, "error": "bad request: a request is a JSON object"})
            return
        op = msg.get("op")
        if op == "touch":
            # Ahead of everything else (issue 6: a slow runner under load must not be
            # marked lost; issue 16: nor one whose manager has a backlog to serve).
            self._touch(msg, link)
            return
        if op == "env":  # a read, not a change: no need to queue it at the desk
            task = asyncio.ensure_future(self._env(msg, link))
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)
            return
        if op == "end":
            self.manager.heard(link.id, _keys(msg))
        self.manager.take_request(RunnerRequest(link, msg, self._respond, now))

    async def _env(self, msg: dict[str, Any], link: RunnerLink) -> None:
        """Answer a runner asking for a stored environment (issue 15)."""
        reply: dict[str, Any] = {"id": msg.get("id")}
        try:
            reply["env"] = await self.manager.environments.get(str(msg["key"]))
        except KeyError as exc:
            reply["error"] = f"bad request: {exc!r}"
        except Exception as exc:  # the runner buries the job with wr's words
            log.exception("runner request for an environment failed")
            reply["error"] = f"internal error: {exc}"
        if not link.closed:
            _post(link, reply)

    def _touch(self, msg: dict[str, Any], link: RunnerLink) -> None:
        """Answer a keep-alive; tell a runner that no longer holds the job to kill it."""
        mid = msg.get("id")
        try:
            kill, stored = self.manager.touch_now(msg["key"], link.id,
                                                  int(msg.get("peak_ram") or 0))
        except QueueError as exc:
            log.warning("runner %s touched job %s, which it no longer holds (%s): told to "
                        "kill it", link.id, msg.get("key"), exc)
            _post(link, {"id": mid, "error": str(exc)})
            _post(link, {"op": "kill", "key": msg["key"]})
        except (KeyError, TypeError, ValueError) as exc:
            _post(link, {"id": mid, "error": f"bad request: {exc!r}"})
        else:
            if stored is None:
                _post(link, {"id": mid, "kill": kill})
                return

            def answer(fut: asyncio.Future[Any]) -> None:  # a lost job running again: stored
                exc = None if fut.cancelled() else fut.exception()
                if fut.cancelled() or exc is not None:
                    _post(link, {"id": mid, "error": f"{getattr(exc, 'message', exc)}",
                                 "retry": True})
                elif not link.closed:
                    _post(link, {"id": mid, "kill": kill})

            stored.add_done_callback(answer)

    def _respond(self, req: RunnerRequest) -> None:
        """Answer a request the desk has served (its changes are stored)."""
        reply: dict[str, Any] = {"id": req.msg.get("id")}
        if req.error is not None:
            reply["error"] = req.error
            if req.retry:
                reply["retry"] = True
        elif req.op in ("reserve", "end"):
            _give(reply, req.jobs, self.manager.config.runner_exec_shell)
            if req.refused:
                reply["refused"] = req.refused
            if req.op == "end" and req.msg.get("recovered"):
                _log_recovery(req.link.id, str(req.msg["recovered"]), req.ends, req.refused)
        elif req.op == "bye" and req.released:
            log.info("runner %s gave back %d jobs it never started: %s", req.link.id,
                     len(req.released), ", ".join(j.key for j in req.released[:10]))
        _post(req.link, reply)

    # -- as an ASGI route -----------------------------------------------------------------

    async def __call__(self, ws: WebSocket) -> None:
        """The same channel over Starlette's websocket, for a server without the wire."""
        runner_id = ws.query_params.get("id", "")
        if not runner_id:
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(text_error("id parameter is required", 400))
            else:
                await ws.close(code=4400, reason="id parameter is required")
            return
        await ws.accept()
        outgoing: deque[bytes] = deque()
        waiting = asyncio.Event()

        def post(msg: dict[str, Any]) -> None:
            outgoing.append(orjson.dumps(msg))
            waiting.set()

        async def send(msg: dict[str, Any]) -> None:
            post(msg)

        async def write() -> None:
            while True:
                await waiting.wait()
                waiting.clear()
                while outgoing:
                    await ws.send_bytes(outgoing.popleft())

        link = self._connect(runner_id, ws.query_params.get("group", ""), post, send)
        writer = asyncio.ensure_future(write())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                self.received(link, data if data is not None
                              else str(message.get("text", "")).encode())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self.closed(link)


def _post(link: RunnerLink, msg: dict[str, Any]) -> None:
    """Send without waiting: at once where the link can, else through its async send."""
    if link.closed:
        return
    if link.post is not None:
        link.post(msg)
    else:
        task = asyncio.ensure_future(link.send(msg))
        task.add_done_callback(_quiet)


def _keys(msg: dict[str, Any]) -> list[str]:
    """The jobs an end message names (nothing if it is malformed: the desk says so)."""
    ends = msg.get("ends", [msg])
    if not isinstance(ends, list):
        return []
    return [key for end in ends if isinstance(end, dict)
            and isinstance(key := end.get("key"), str)]


def _log_recovery(runner_id: str, how: str, reports: Sequence[Ending],
                  refused: dict[str, str]) -> None:
    """The manager's log says why a job ran again: its runner died (wr.keeper)."""
    said = [f"{e.key} ({'refused: ' + refused[e.key] if e.key in refused else e.report.outcome}"
            f"{', ' + e.report.fail_reason if e.report.fail_reason else ''}"
            f"{': ' + e.stderr if e.report.outcome != 'archive' and e.stderr else ''})"
            for e in reports]
    log.warning("runner %s %s; its keeper reported for it: %s", runner_id, how,
                "; ".join(said))


def _give(reply: dict[str, Any], jobs: list[Job], shell: str) -> None:
    """Put reserved jobs into an answer: the first as ``job``, any others as ``more``."""
    reply["job"] = job_for_runner(jobs[0], shell) if jobs else None
    if len(jobs) > 1:
        reply["more"] = [job_for_runner(job, shell) for job in jobs[1:]]


def _quiet(fut: asyncio.Future[Any]) -> None:
    """Retrieve a send's outcome nobody awaits (the runner has gone)."""
    if not fut.cancelled():
        fut.exception()
