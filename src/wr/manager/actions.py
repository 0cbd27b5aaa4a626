"""Management endpoints: everything the CLI can do, a REST client can do.

* ``POST /rest/v1/actions/{kill|confirmdead|retry|remove|modify}`` with a JSON body that
  selects jobs — ``{"ids": [rep groups or keys], "search": bool, "all": bool, "keys": [...],
  "age": seconds, "buried_only": bool, "changes": {...}}`` — and answers
  ``{"Matched": m, "Eligible": n, "Affected": k, "Keys": [...], "Modified": {old: new}}``
  (``Matched``: selected jobs in the action's state; ``Eligible``: those also old enough).
  Each action is one step on the event loop and one store transaction, however many jobs
  it touches, so retrying 100,000 buried jobs takes seconds and never times out half-way.
* ``GET /rest/v1/limits/`` (all), ``GET|PUT /rest/v1/limits/{name}[?limit=N]`` (-1 removes).
* ``POST /rest/v1/manager/{pause|resume|drain}`` -> ``{"Mode", "Running", "ETC"}``;
  ``GET /rest/v1/manager/backup`` -> a consistent copy of the database.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from wr.errors import BadRequest, NotFound
from wr.jobs import (
    DELETABLE_STATES,
    LIMIT_RANGE,
    Job,
    State,
    check_limit,
    check_limit_name,
)
from wr.manager.core import Manager
from wr.manager.names import name_in_path
from wr.manager.rest import json_response
from wr.manager.selection import select_jobs
from wr.modification import check_changes

ACTIONS = ("kill", "confirmdead", "retry", "remove", "modify")
_LIMIT = re.compile(r"-?[0-9]+")
_MODIFIABLE_STATES = DELETABLE_STATES


class ManagementAPI:
    """Handlers for the management endpoints of one manager."""

    def __init__(self, manager: Manager, token: str, rest: Any) -> None:
        self.manager = manager
        self.token = token
        self.rest = rest

    async def action(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise NotFound(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        body = await self.rest._body(request)
        try:
            spec = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body must be a JSON object: {exc}") from None
        if not isinstance(spec, dict):
            raise BadRequest("the body must be a JSON object selecting jobs")
        jobs = await select(self.manager, spec)
        return json_response(await perform(self.manager, action, jobs, spec))

    async def limits(self, request: Request) -> Response:
        q = self.manager.queue
        return json_response(dict(sorted(q.limits.items())))

    async def limit(self, request: Request) -> Response:
        name = name_in_path(request)  # decoded exactly once (issue 13)
        try:  # the names and limits a job's name:N may give, no others (issue 13)
            check_limit_name(name)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        q = self.manager.queue
        if request.method == "GET":
            return json_response({"name": name, "limit": q.limits.get(name, -1)})
        value = "-1" if request.method == "DELETE" else request.query_params.get("limit", "")
        if not _LIMIT.fullmatch(value):
            raise BadRequest(f'limit must be {LIMIT_RANGE}, not "{value}"')
        try:
            limit = check_limit(int(value), value)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        stored = await self.manager.set_limit(name, None if limit == -1 else limit)
        return json_response({"name": name, "limit": stored})

    async def control(self, request: Request) -> Response:
        op = request.path_params["op"]
        m = self.manager
        if op in ("pause", "resume") and m.mode == "draining":
            # wr refuses both while draining (spec cli §1.1).
            raise BadRequest("server is being drained")
        if op == "pause":
            m.pause()
        elif op == "resume":
            m.resume()
        elif op == "drain":
            m.drain()
        else:
            raise NotFound(f"unknown manager operation {op!r}; use pause, resume, drain "
                           f"or backup")
        return json_response(m.run_stats())

    async def backup(self, request: Request) -> Response:
        fd, tmp = tempfile.mkstemp(prefix="wr_backup", dir=self.manager.config.manager_dir)
        os.close(fd)
        path = Path(tmp)
        await self.manager.store.backup_to(path)
        return FileResponse(path, media_type="application/octet-stream",
                            filename="wr_db_backup",
                            background=BackgroundTask(_unlink, path))


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def select(manager: Manager, spec: dict[str, Any]) -> list[Job]:
    """The queued jobs a selection names (in queue order, each once): ``ids`` (keys or rep
    groups, with ``search`` substrings of rep groups), ``keys``, or ``all``
    (`wr.manager.selection`)."""
    ids = spec.get("ids") or []
    keys = spec.get("keys") or []
    if not isinstance(ids, list) or not isinstance(keys, list):
        raise BadRequest("ids and keys must be arrays of strings")
    if not (spec.get("all") or ids or keys):
        raise BadRequest("select jobs with ids (rep groups or keys), keys, or all")
    q = manager.queue
    chosen: dict[str, Job] = {}
    if spec.get("all"):
        chosen.update(q.jobs)
    for key in keys:
        job = q.get(str(key))
        if job is not None:
            chosen[job.key] = job
    if ids:
        for picked in await select_jobs(q, manager.store, [str(i) for i in ids],
                                        search=bool(spec.get("search")), history=False):
            chosen.update((job.key, job) for job in picked.jobs)
    return list(chosen.values())


async def perform(manager: Manager, action: str, jobs: list[Job], spec: dict[str, Any]
                  ) -> dict[str, Any]:
    """Act on the selected jobs in the action's state. ``Matched`` counts those before the
    ``age`` filter, ``Eligible`` after it, so a client can tell "no such jobs" from "none
    old enough" (wr's two messages, spec cli §1.4)."""
    now = time.time()
    age = _age(spec.get("age"))
    if action == "kill":
        matched = [j for j in jobs if j.state in (State.RUNNING, State.RESERVED)]
        eligible = [j for j in matched
                    if not age or (j.started and now - j.started >= age)]
        done = await manager.kill([j.key for j in eligible])
    elif action == "confirmdead":
        matched = [j for j in jobs if j.state == State.LOST]
        eligible = [j for j in matched if not age or (j.ended and now - j.ended >= age)]
        done = await manager.kill([j.key for j in eligible])
    elif action == "retry":
        matched = eligible = [j for j in jobs if j.state == State.BURIED]
        done = await manager.kick([j.key for j in eligible])
    elif action == "remove":
        wanted = {State.BURIED} if spec.get("buried_only") else DELETABLE_STATES
        matched = eligible = [j for j in jobs if j.state in wanted]
        done = await manager.delete([j.key for j in eligible])
    else:
        changes = check_changes(spec.get("changes") or {})
        eligible = [j for j in jobs if j.state in _MODIFIABLE_STATES]
        if "cmd" in changes and len(eligible) > 1:
            raise BadRequest(f"{len(eligible)} jobs matched, but cmd (--cmdline) can only "
                             f"be changed for one job at a time")
        mapping = await manager.modify(eligible, changes)
        return {"Matched": len(eligible), "Eligible": len(eligible),
                "Affected": len(mapping), "Keys": list(mapping.values()),
                "Modified": mapping}
    return {"Matched": len(matched), "Eligible": len(eligible), "Affected": len(done),
            "Keys": [j.key for j in done], "Modified": {}}


def _age(value: Any) -> float:
    """The ``age`` of a kill in seconds (0: no age filter)."""
    if value in (None, ""):
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequest(f"age must be a number of seconds, 0 or more, not {value!r}")
    return float(value)


