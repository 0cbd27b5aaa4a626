"""The runner protocol: one websocket per runner, JSON messages both ways.

Runner -> manager requests carry an ``id`` that the answer repeats:

* ``{"op": "reserve", "timeout": s}`` -> ``{"job": {...} | null}``
* ``{"op": "started", "key", "pid", "host", "ip"}`` -> ``{}`` (stored before answered)
* ``{"op": "touch", "key"}`` -> ``{"kill": bool}``
* ``{"op": "end", "key", "report": {...}, "stdout", "stderr", "reserve": s | null}`` ->
  ``{"job": next job | null}``: the end of one job and the reservation of the next travel
  together, so a busy runner costs one round trip per job.
* ``{"op": "release", "key"}`` -> ``{}``: give back a reserved job it will not start.

Manager -> runner pushes (no ``id``): ``{"op": "kill", "key"}`` (kill that job now) and
``{"op": "stop"}`` (the manager is stopping: put the job back and exit).

A closed connection tells the manager at once that the runner is gone; its reserved but
unstarted jobs go straight back to ready.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from wr.errors import Unauthorized
from wr.jobs import Job
from wr.manager.core import Manager, RunnerLink
from wr.queue import EndReport, QueueError
from wr.security import tokens_match

log = logging.getLogger("wr.manager")


def job_for_runner(job: Job, shell: str) -> dict[str, Any]:
    """What a runner needs to execute a job (wr.execute.ExecSpec's fields)."""
    return {
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
        "shell": shell,
    }


class RunnerEndpoint:
    """Serves runner websockets for one manager."""

    def __init__(self, manager: Manager, token: str) -> None:
        self.manager = manager
        self.token = token

    async def __call__(self, ws: WebSocket) -> None:
        header = ws.headers.get("authorization", "")
        candidate = header[7:] if header.startswith("Bearer ") else ws.query_params.get(
            "token", "")
        if not tokens_match(candidate, self.token):
            await ws.close(code=4401, reason=str(Unauthorized("Invalid token")))
            return
        runner_id = ws.query_params.get("id", "")
        group = ws.query_params.get("group", "")
        if not runner_id:
            await ws.close(code=4400, reason="id parameter is required")
            return
        await ws.accept()
        send_lock = asyncio.Lock()

        async def send(msg: dict[str, Any]) -> None:
            async with send_lock:
                await ws.send_bytes(orjson.dumps(msg))

        manager = self.manager
        manager.connect_runner(RunnerLink(runner_id, group, send))
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                raw = await ws.receive_bytes()
                msg = orjson.loads(raw)
                # Keep-alives are answered inline, ahead of everything else (issue 6: a slow
                # runner under load must not be marked lost).
                if msg.get("op") == "touch":
                    await send(self._touch(msg, runner_id))
                    continue
                task = asyncio.ensure_future(self._handle(msg, runner_id, group, send))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            manager.disconnect_runner(runner_id)

    def _touch(self, msg: dict[str, Any], runner_id: str) -> dict[str, Any]:
        try:
            kill = self.manager.touch(msg["key"], runner_id)
            return {"id": msg.get("id"), "kill": kill}
        except QueueError as exc:
            return {"id": msg.get("id"), "error": str(exc)}

    async def _handle(self, msg: dict[str, Any], runner_id: str, group: str, send: Any) -> None:
        manager = self.manager
        reply: dict[str, Any] = {"id": msg.get("id")}
        shell = manager.config.runner_exec_shell
        try:
            op = msg.get("op")
            if op == "reserve":
                job = await manager.reserve(group, runner_id, float(msg.get("timeout", 0)))
                reply["job"] = job_for_runner(job, shell) if job else None
            elif op == "started":
                await manager.started(msg["key"], runner_id, pid=int(msg["pid"]),
                                      host=str(msg["host"]), host_ip=str(msg.get("ip", "")))
            elif op == "end":
                r = msg["report"]
                report = EndReport(
                    outcome=r["outcome"], exitcode=int(r.get("exitcode", 0)),
                    fail_reason=str(r.get("fail_reason", "")),
                    peak_ram=int(r.get("peak_ram", 0)), peak_disk=int(r.get("peak_disk", 0)),
                    cpu_time=float(r.get("cpu_time", 0.0)), ended=float(r.get("ended", 0.0)),
                    actual_cwd=str(r.get("actual_cwd", "")), remove=bool(r.get("remove")),
                )
                wait = msg.get("reserve")
                job = await manager.ended(
                    msg["key"], runner_id, report, str(msg.get("stdout", "")),
                    str(msg.get("stderr", "")), group=group,
                    reserve=None if wait is None else float(wait))
                reply["job"] = job_for_runner(job, shell) if job else None
            elif op == "release":
                job = manager.queue.get(msg["key"])
                if job is not None and job.reserved_by == runner_id:
                    manager.queue.release_unstarted(msg["key"], runner_id, _now())
                    await manager._after()
            else:
                reply["error"] = f"unknown op {op!r}"
        except QueueError as exc:
            reply["error"] = str(exc)
        except (KeyError, TypeError, ValueError) as exc:
            reply["error"] = f"bad request: {exc!r}"
        except Exception as exc:  # tell the runner; it retries its report later
            log.exception("runner request failed")
            reply["error"] = f"internal error: {exc}"
        try:
            await send(reply)
        except Exception:
            log.debug("could not answer runner %s", runner_id)


def _now() -> float:
    import time

    return time.time()
