"""The live web status page: its routes, its files and the JSON it reads.

* ``/`` (also ``/status`` and ``/status.html``, wr's paths) serves the page when the URL
  carries the token (``?token=``); without it, a 401 page that says how to get one.
* ``/web/static/...``: the page's HTML, CSS and JavaScript modules (package data; no token,
  as wr serves its static files; nothing is fetched from elsewhere).
* ``/web/live``: the live feed (`wr.manager.web_live`).
* ``/web/api/...``: JSON for the page, with the token as for REST (``Authorization: Bearer``
  or ``?token=``):

  - ``GET info``: the manager's summary and the state names of the counts.
  - ``GET search?q=&limit=``: rep groups whose name contains ``q``, including those whose
    jobs are all complete (history), each with its counts.
  - ``GET group?group=&per_class=``: a rep group's counts and its jobs grouped by state, exit
    code and fail reason (as ``limit`` groups them), with the first ``per_class`` jobs of
    each, stdout/stderr included.
  - ``GET jobs?group=&state=&exitcode=&reason=&offset=&limit=``: a page of one such class.
  - ``GET usage?group=``: peak memory and wall time of completed jobs against what they asked
    for (a spread of at most 2,000 of them).
  - ``GET throughput?group=&window=&bucket=``: jobs completed per bucket of time.
  - ``POST action`` ``{"action": "retry"|"kill"|"remove"|"confirmdead", "keys": [...]}`` or
    ``{"action", "group", "state", "exitcode", "reason"}`` (a class of a group): does what
    ``POST /rest/v1/actions/<action>`` does and answers the same.
  - ``POST dismiss`` ``{"msg": text}`` (no ``msg``: all): forget scheduler warnings shown on
    the page.

A job's rep group here is the one it is queued or completed under, for queued and completed
jobs alike, so the page's counts and lists agree.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from wr.errors import BadRequest, WrError
from wr.jobs import Job, State
from wr.manager.actions import perform
from wr.manager.core import Manager
from wr.manager.rest import json_response
from wr.manager.selection import rep_groups_matching, select_jobs
from wr.manager.web_live import _COMPLETE, _SLOT, STATES, LiveFeed, manager_summary
from wr.status import job_status

STATIC = Path(__file__).parent / "static"
"""Where the page's files are (package data)."""
USAGE_SAMPLE = 2000
"""Completed jobs whose usage is read for a rep group's charts, at most."""
PAGE_MAX = 500
"""Jobs in one page of a class, at most."""
THROUGHPUT_CACHE = 5.0
"""Seconds a throughput answer is reused (several pages open cost one query)."""
WEB_ACTIONS = ("retry", "kill", "remove", "confirmdead")

_CLASS_ORDER = {"buried": 0, "lost": 1, "running": 2, "delayed": 3, "ready": 4,
                "dependent": 5, "complete": 6}
"""Classes of a drill-down come problems first."""

_NO_TOKEN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wr: token needed</title><link rel="stylesheet" href="/web/static/wr.css"></head>
<body class="help"><main>
<h1>wr manager</h1>
<p role="alert"><strong>{problem}</strong></p>
<p>This page shows what the manager is doing, live. To open it, use the address that
<code>wr manager start</code> printed, which ends in <code>?token=</code> and the
manager's token:</p>
<pre>https://&lt;host&gt;:&lt;web port&gt;/?token=&lt;token&gt;</pre>
<p>The token is in the file <code>~/.wr_&lt;deployment&gt;/client.token</code> of the user
who started the manager (for example <code>~/.wr_production/client.token</code>). Anyone
with it can control the manager, so keep it to yourself.</p>
</main></body></html>
"""


def static_files() -> ASGIApp:
    """The page's files, served below ``/web/static`` (routes.py)."""
    return _NoCache(StaticFiles(directory=STATIC))


class WebPage:
    """Handlers of the page and its JSON, bound to one manager and its token."""

    def __init__(self, manager: Manager, token: str) -> None:
        self.manager = manager
        self.token = token
        self.feed = LiveFeed(manager, token)
        self._throughput: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}

    # -- the page ---------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers=_PAGE_HEADERS)

    async def refused(self, request: Request, exc: WrError) -> Response:
        """The page's answer without the token (the route table's guard refused it): a
        page that says how to open it, not a line of text."""
        problem = ("This address has no token." if not request.query_params.get("token")
                   else "The token in this address is not this manager's (a manager "
                        "started afresh after a drain has a new one).")
        return HTMLResponse(_NO_TOKEN.format(problem=problem), status_code=401,
                            headers=_PAGE_HEADERS)

    # -- JSON -------------------------------------------------------------------------------

    async def info(self, request: Request) -> Response:
        return json_response({"manager": manager_summary(self.manager), "states": STATES})

    async def search(self, request: Request) -> Response:
        q = request.query_params.get("q", "")
        limit = _int(request, "limit", 200, 1, 5000)
        names = await rep_groups_matching(self.manager.queue, self.manager.store, q)
        shown = names[:limit]
        rows = await self._rows(shown)
        return json_response({"total": len(names), "groups": {n: rows[n] for n in shown}})

    async def group(self, request: Request) -> Response:
        name = _required(request, "group", "name")
        per = _int(request, "per_class", 5, 0, PAGE_MAX)
        live = await self._queued(name)
        classes: dict[tuple[str, int, str], list[Job]] = {}
        for job in live:
            classes.setdefault(_class_of(job), []).append(job)
        done = (await self.manager.store.complete_counts([name])).get(name, 0)
        out = []
        for (state, exitcode, reason), jobs in classes.items():
            out.append({"state": state, "exitcode": exitcode, "reason": reason,
                        "count": len(jobs), "jobs": jobs[:per]})
        if done:
            page = await self.manager.store.complete_page(name, limit=per)
            out.append({"state": "complete", "exitcode": 0, "reason": "", "count": done,
                        "jobs": page})
        out.sort(key=lambda c: (_CLASS_ORDER[c["state"]], -c["count"], c["exitcode"],
                                c["reason"]))
        statuses = await self._statuses([j for c in out for j in c["jobs"]])
        for c in out:
            c["jobs"] = [statuses[j.key] for j in c["jobs"]]
        row = _row_of(self._live_counts(live), done)
        return json_response({"name": name, "states": STATES, "row": row, "classes": out})

    async def jobs(self, request: Request) -> Response:
        name = _required(request, "group")
        state = _required(request, "state")
        if state not in STATES:
            raise BadRequest(f'unknown state "{state}"; use one of {"|".join(STATES)}')
        offset = _int(request, "offset", 0, 0, 1 << 40)
        limit = _int(request, "limit", 20, 1, PAGE_MAX)
        if state == "complete":
            total = (await self.manager.store.complete_counts([name])).get(name, 0)
            jobs = await self.manager.store.complete_page(name, limit=limit, offset=offset)
        else:
            chosen = _select_class(await self._queued(name), state,
                                   _optional_int(request, "exitcode"),
                                   request.query_params.get("reason"))
            total = len(chosen)
            jobs = chosen[offset:offset + limit]
        statuses = await self._statuses(jobs)
        return json_response({"total": total, "offset": offset,
                              "jobs": [statuses[j.key] for j in jobs]})

    async def usage(self, request: Request) -> Response:
        name = _required(request, "group")
        sample = await self.manager.store.usage_sample(name, size=USAGE_SAMPLE)
        sample["columns"] = ["PeakRAM", "ExpectedRAM", "Walltime", "ExpectedTime", "CPUtime"]
        return json_response(sample)

    async def throughput(self, request: Request) -> Response:
        name = request.query_params.get("group") or None
        window = _int(request, "window", 3600, 60, 90 * 86400)
        bucket = _int(request, "bucket", max(window // 60, 1), 1, window)
        now = time.time()
        since = math.floor((now - window) / bucket) * bucket
        key = (name, window, bucket)
        cached = self._throughput.get(key)
        if cached is not None and now - cached[0] < THROUGHPUT_CACHE:
            return json_response(cached[1])
        points = await self.manager.store.throughput(since, bucket, name)
        answer = {"since": since, "bucket": bucket, "now": now,
                  "points": [[t, n] for t, n in points]}
        if len(self._throughput) > 64:
            self._throughput.clear()
        self._throughput[key] = (now, answer)
        return json_response(answer)

    async def action(self, request: Request) -> Response:
        spec = await _json_object(request)
        action = spec.get("action")
        if action not in WEB_ACTIONS:
            raise BadRequest(f"action {action!r} is not one of {', '.join(WEB_ACTIONS)}")
        q = self.manager.queue
        if spec.get("keys") is not None:
            keys = spec["keys"]
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise BadRequest("keys must be an array of job keys")
            jobs = [j for k in keys if (j := q.get(k)) is not None]
        else:
            name = spec.get("group")
            if not isinstance(name, str) or not name:
                raise BadRequest("give keys, or a group (with state, exitcode and reason "
                                 "to pick one class of its jobs)")
            state = spec.get("state")
            if state is not None and state not in STATES:
                raise BadRequest(f'unknown state "{state}"; use one of {"|".join(STATES)}')
            exitcode = spec.get("exitcode")
            if exitcode is not None and (isinstance(exitcode, bool)
                                         or not isinstance(exitcode, int)):
                raise BadRequest(f"exitcode must be an integer, not {exitcode!r}")
            reason = spec.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise BadRequest(f"reason must be a string, not {reason!r}")
            jobs = _select_class(await self._queued(name), state, exitcode, reason)
        return json_response(await perform(self.manager, action, jobs, {}))

    async def dismiss(self, request: Request) -> Response:
        spec = await _json_object(request)
        msg = spec.get("msg")
        if msg is not None and not isinstance(msg, str):
            raise BadRequest(f"msg must be a string, not {msg!r}")
        self.manager.dismiss_warnings(msg)
        self.feed.overview.poke()
        return json_response({"Warnings": len(self.manager.page_warnings)})

    # -- helpers ----------------------------------------------------------------------------

    async def _queued(self, name: str) -> list[Job]:
        """The queued jobs of rep group ``name`` (`wr.manager.selection`)."""
        [picked] = await select_jobs(self.manager.queue, self.manager.store, [name],
                                     history=False, keys=False)
        return picked.jobs

    def _live_counts(self, jobs: list[Job]) -> list[int]:
        counts = [0] * (len(STATES) - 1)
        for job in jobs:
            slot = _SLOT.get(job.state)
            if slot is not None:
                counts[slot] += 1
        return counts

    async def _rows(self, names: list[str]) -> dict[str, list[Any]]:
        done = await self.manager.store.complete_counts(names) if names else {}
        q = self.manager.queue
        return {n: _row_of(self._live_counts(q.in_rep_grp(n)), done.get(n, 0))
                for n in names}

    async def _statuses(self, jobs: list[Job]) -> dict[str, dict[str, Any]]:
        """Status objects with the stdout/stderr stored for failed runs."""
        keys = [j.key for j in jobs if j.state != State.COMPLETE]
        std = await self.manager.store.std(keys) if keys else {}
        now = time.time()
        out = {j.key: job_status(j, now=now, std=std.get(j.key)) for j in jobs}
        for j in jobs:  # what keeps a ready job from starting (issue 15)
            if waiting := self.manager.waiting_for(j, now):
                out[j.key]["WaitingFor"] = waiting
        return out


class _NoCache:
    """Static files that browsers revalidate, so an upgraded manager serves its new page."""

    def __init__(self, app: StaticFiles) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"cache-control", b"no-cache"))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; connect-src 'self'; img-src 'self' "
                                "data:; style-src 'self'; script-src 'self'; "
                                "frame-ancestors 'none'"),
}
"""The page loads nothing from elsewhere and runs no inline script; the token in its
address is not sent on as a referrer."""


def _class_of(job: Job) -> tuple[str, int, str]:
    state = STATES[_SLOT[job.state]] if job.state in _SLOT else str(job.state)
    return state, job.exitcode, job.fail_reason


def _select_class(jobs: list[Job], state: str | None, exitcode: int | None,
                  reason: str | None) -> list[Job]:
    out = []
    for job in jobs:
        s, e, r = _class_of(job)
        if ((state is None or s == state) and (exitcode is None or e == exitcode)
                and (reason is None or r == reason)):
            out.append(job)
    return out


def _row_of(live: list[int], complete: int) -> list[Any]:
    row: list[Any] = list(live)
    row.insert(_COMPLETE, complete)
    row.append(0)
    return row


def _required(request: Request, name: str, alias: str | None = None) -> str:
    value = request.query_params.get(name) or (
        request.query_params.get(alias) if alias else None)
    if not value:
        raise BadRequest(f"the {name} parameter is required")
    return value


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be from {low} to {high}, not {value}")
    return value


def _optional_int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {text!r}") from None


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > 10 * 1024 * 1024:
        raise BadRequest("the body is too large")
    try:
        spec = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body must be a JSON object: {exc}") from None
    if not isinstance(spec, dict):
        raise BadRequest("the body must be a JSON object")
    return spec
