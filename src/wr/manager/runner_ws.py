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
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from wr.errors import StorageUnavailable
from wr.jobs import Job, State
from wr.manager.core import Manager
from wr.manager.runners import Ending, RunnerLink
from wr.queue import QueueError

log = logging.getLogger("wr.manager")

MAX_MANY = 64
"""Most jobs one runner request may reserve at once."""


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


class RunnerEndpoint:
    """Serves runner websockets for one manager."""

    def __init__(self, manager: Manager, token: str) -> None:
        self.manager = manager
        self.token = token

    async def __call__(self, ws: WebSocket) -> None:
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
        link = RunnerLink(runner_id, group, send)
        manager.connect_runner(link)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                raw = await ws.receive_bytes()
                link.heard = time.monotonic()
                msg = orjson.loads(raw)
                # Keep-alives are answered inline, ahead of everything else (issue 6: a slow
                # runner under load must not be marked lost).
                if msg.get("op") == "touch":
                    await self._touch(msg, runner_id, send)
                    continue
                task = asyncio.ensure_future(self._handle(msg, runner_id, group, send))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            manager.disconnect_runner(runner_id, link)

    async def _touch(self, msg: dict[str, Any], runner_id: str, send: Any) -> None:
        """Answer a keep-alive; tell a runner that no longer holds the job to kill it."""
        try:
            kill = await self.manager.touch(msg["key"], runner_id,
                                            int(msg.get("peak_ram") or 0))
        except QueueError as exc:
            log.warning("runner %s touched job %s, which it no longer holds (%s): told to "
                        "kill it", runner_id, msg.get("key"), exc)
            await send({"id": msg.get("id"), "error": str(exc)})
            await send({"op": "kill", "key": msg["key"]})
        except (KeyError, TypeError, ValueError) as exc:
            await send({"id": msg.get("id"), "error": f"bad request: {exc!r}"})
        else:
            await send({"id": msg.get("id"), "kill": kill})

    async def _handle(self, msg: dict[str, Any], runner_id: str, group: str, send: Any) -> None:
        manager = self.manager
        reply: dict[str, Any] = {"id": msg.get("id")}
        shell = manager.config.runner_exec_shell
        held = manager.held_by(runner_id)
        op = msg.get("op")
        try:
            if op == "reserve":
                jobs = await manager.reserve(group, runner_id, float(msg.get("timeout", 0)),
                                             self._many(msg, group))
                _give(reply, jobs, shell)
            elif op == "started":
                at = msg.get("at")
                await manager.started(msg["key"], runner_id, pid=int(msg["pid"]),
                                      host=str(msg["host"]), host_ip=str(msg.get("ip", "")),
                                      at=None if at is None else float(at))
            elif op == "end":
                reports = [Ending.from_wire(end) for end in msg.get("ends", [msg])]
                wait = msg.get("reserve")
                jobs, refused = await manager.ended(
                    runner_id, reports, group=group,
                    reserve=None if wait is None else float(wait), many=self._many(msg, group))
                _give(reply, jobs, shell)
                if refused:
                    reply["refused"] = refused
                    await manager.store.durable()
                if msg.get("recovered"):
                    _log_recovery(runner_id, str(msg["recovered"]), reports, refused)
            elif op == "bye":
                released = await manager.runner_bye(runner_id)
                if released:
                    log.info("runner %s gave back %d jobs it never started: %s", runner_id,
                             len(released), ", ".join(j.key for j in released[:10]))
            elif op == "env":
                reply["env"] = await manager.environments.get(str(msg["key"]))
            elif op == "release":
                await manager.release(str(msg["key"]), runner_id)
            else:
                reply["error"] = f"unknown op {op!r}"
        except QueueError as exc:
            reply["error"] = str(exc)
            if op in ("end", "started"):
                reply = await self._refusal(msg, runner_id, reply)
        except StorageUnavailable as exc:
            # What this request reserved but could not store goes back first.
            await manager.take_back(runner_id, manager.held_by(runner_id) - held)
            reply["error"] = exc.message
            reply["retry"] = True
        except (KeyError, TypeError, ValueError) as exc:
            reply["error"] = f"bad request: {exc!r}"
        except Exception as exc:  # tell the runner; it retries its report later
            log.exception("runner request failed")
            reply["error"] = f"internal error: {exc}"
        try:
            await send(reply)
        except Exception:
            log.debug("could not answer runner %s", runner_id)


    def _many(self, msg: dict[str, Any], group: str) -> int:
        """How many jobs to reserve for a runner that asks for ``many``: at most its fair
        share of the group's ready jobs, so its group's other runners are not left idle."""
        many = min(int(msg.get("many") or 1), MAX_MANY)
        if many <= 1:
            return 1
        manager = self.manager
        runners = sum(1 for link in manager.runner_links.values() if link.group == group)
        ready = manager.queue.ready_by_group[group]
        return max(1, min(many, -(-ready // max(runners, 1))))

    async def _refusal(self, msg: dict[str, Any], runner_id: str,
                       reply: dict[str, Any]) -> dict[str, Any]:
        """Answer a report the queue refused, once what it conflicts with is stored."""
        manager = self.manager
        try:
            await manager.store.durable()
        except StorageUnavailable as exc:
            return {"id": msg.get("id"), "error": exc.message, "retry": True}
        if msg.get("op") == "started":
            job = manager.queue.get(str(msg.get("key")))
            if (job is not None and job.state == State.RUNNING
                    and job.reserved_by == runner_id and str(job.pid) == str(msg.get("pid"))):
                return {"id": msg.get("id")}  # a repeat of the start it already took
            log.warning("runner %s started job %s, which it no longer held (%s)", runner_id,
                        msg.get("key"), reply.get("error"))
        return reply


def _log_recovery(runner_id: str, how: str, reports: list[Ending],
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
    """Retrieve a write's outcome nobody awaits (a failed one is kept and retried)."""
    if not fut.cancelled():
        fut.exception()


def _now() -> float:
    return time.time()
