"""Status figures the manager computes itself, so the command line stays fast at scale.

wr's users keep rep groups of 100,000+ completed jobs. ``wr status -o summary`` prints one
line per rep group; fetching 100,000 status objects to print it would take longer than the
jobs did. These endpoints answer with figures instead:

* ``GET /rest/v1/counts/[ids]`` -> ``{"complete": n, "running": n, "ready": n,
  "dependent": n, "lost": n, "delayed": n, "buried": n}``;
* ``GET /rest/v1/summary/[ids]`` -> ``{"RepGroups": [group, ...], "All": group | null}``,
  each group with its counts, the mean and standard deviation of the peak memory, peak
  disk, wall time and CPU time of its completed jobs, its first start and last end, and
  its buried jobs' keys by exit code and fail reason (``wr status -o summary``, spec cli
  §1.3);
* ``GET /rest/v1/details/[ids]`` -> the status objects of ``GET /rest/v1/jobs/`` plus what
  ``wr status``'s details output shows and a status object lacks: ``ReqGroup``,
  ``Priority``, ``Retries``, ``ActualCwd`` and ``ReadyAt`` (when a delayed job becomes
  ready);
* ``POST /rest/v1/add/`` takes what ``POST /rest/v1/jobs/`` takes, and answers
  ``{"Added": n, "Existed": m}`` (plus ``"Keys"`` of the input jobs now queued with
  ``keys=true``) instead of one status object per job: ``wr add`` of 100,000 commands
  needs two numbers, not 66 MB of JSON.

Ids, ``search`` and ``state`` select jobs as they do for ``GET /rest/v1/jobs/``: none means
every incomplete job; an id is a job key or a rep group (its queued jobs and its history).
The history part is SQL aggregates over the store's ``complete`` table
(`wr.store.Store.complete_figures`); only queued jobs are looked at one by one.

Deliberate difference from wr: reserved jobs (picked up by a runner, not yet started) count
as running in a summary, as they do in counts; wr leaves them out of every column.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from wr.jobs import Job, State
from wr.manager.answers import Chosen, json_array_answer
from wr.manager.core import Manager
from wr.manager.names import ids_in_path
from wr.manager.rest import json_response
from wr.manager.selection import select_jobs
from wr.pacing import Pacer
from wr.status import parse_state_filter, walltime

COLUMNS = ("complete", "running", "ready", "dependent", "lost", "delayed", "buried")
"""The states a summary counts, in the order ``wr status`` prints them."""
ALL_GROUPS = "all above"
"""The name of the summary line over every rep group, as wr prints it."""
FIGURES = (("Memory", "ram"), ("Disk", "disk"), ("Walltime", "wall"), ("CPUtime", "cpu"))
"""Usage figures of a summary: (name in the answer, name in Store.complete_figures)."""

_COLUMN_OF = {"reserved": "running", **{c: c for c in COLUMNS}}


@dataclass(slots=True)
class Moments:
    """Count, mean and sum of squared deviations of some values; mergeable exactly
    (Chan et al.'s pairwise update), so groups and the history combine without the values."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def merge(self, n: int, mean: float, m2: float) -> None:
        if n <= 0:
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    @property
    def sd(self) -> float:
        """The sample standard deviation (n - 1), as wr's running variance gives."""
        return math.sqrt(max(self.m2, 0.0) / (self.n - 1)) if self.n > 1 else 0.0


@dataclass(slots=True)
class GroupFigures:
    """Everything a summary line says about one rep group (or about all of them)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))
    usage: dict[str, Moments] = field(
        default_factory=lambda: {name: Moments() for name, _ in FIGURES})
    first: float | None = None
    last: float | None = None
    buried: dict[tuple[int, str], list[str]] = field(default_factory=dict)

    def add_job(self, job: Job, now: float) -> None:
        column = _COLUMN_OF.get(str(job.state))
        if column is None:
            return
        self.counts[column] += 1
        if job.state == State.BURIED:
            self.buried.setdefault((job.exitcode, job.fail_reason), []).append(job.key)
        elif job.state == State.COMPLETE:
            values = {"ram": job.peak_ram, "disk": job.peak_disk,
                      "wall": walltime(job, now), "cpu": job.cpu_time}
            for name, short in FIGURES:
                self.usage[name].merge(1, float(values[short]), 0.0)
            self._span(job.started, job.ended)

    def add_history(self, figures: dict[str, Any]) -> None:
        """Fold in `Store.complete_figures` of a rep group's history."""
        n = figures["n"]
        self.counts["complete"] += n
        if n and "ram_mean" in figures:
            for name, short in FIGURES:
                self.usage[name].merge(n, figures[f"{short}_mean"], figures[f"{short}_m2"])
            self._span(figures["first"], figures["last"])

    def merge(self, other: GroupFigures) -> None:
        for column, n in other.counts.items():
            self.counts[column] += n
        for name, m in other.usage.items():
            self.usage[name].merge(m.n, m.mean, m.m2)
        self._span(other.first, other.last)
        for reason, keys in other.buried.items():
            self.buried.setdefault(reason, []).extend(keys)

    def _span(self, first: float | None, last: float | None) -> None:
        if first is not None and (self.first is None or first < self.first):
            self.first = first
        if last is not None and (self.last is None or last > self.last):
            self.last = last

    def total(self) -> int:
        return sum(self.counts.values())

    def to_json(self, rep_grp: str) -> dict[str, Any]:
        complete = self.counts["complete"]
        out: dict[str, Any] = {"RepGroup": rep_grp, "Counts": dict(self.counts)}
        for name, _ in FIGURES:
            m = self.usage[name]
            out[name] = {"Mean": m.mean, "SD": m.sd} if complete and m.n else None
        out["FirstStarted"] = self.first if complete else None
        out["LastEnded"] = self.last if complete else None
        out["Buried"] = [{"Exitcode": code, "FailReason": reason, "Keys": keys}
                         for (code, reason), keys in self.buried.items()]
        return out


class SummaryAPI:
    """Handlers for the endpoints above, bound to one manager, its token and its RestAPI
    (whose job selection and status objects the details endpoint reuses)."""

    def __init__(self, manager: Manager, token: str, rest: Any) -> None:
        self.manager = manager
        self.token = token
        self.rest = rest

    async def counts(self, request: Request) -> Response:
        total = GroupFigures()
        params = request.query_params
        if ids_in_path(request) is None and not params.get("state"):
            # Every incomplete job: the queue keeps these counts, no need to visit a million
            # jobs (wr status -o counts at scale, issue 7).
            for state, n in self.manager.queue.counts.items():
                column = _COLUMN_OF.get(str(state))
                if column is not None and n > 0:
                    total.counts[column] += n
            return json_response(total.counts)
        for figures in (await self._figures(request, usage=False)).values():
            total.merge(figures)
        return json_response(total.counts)

    async def summary(self, request: Request) -> Response:
        groups = await self._figures(request, usage=True)
        names = sorted(name for name, g in groups.items() if g.total())
        everything = None
        if len(names) > 1:
            everything = GroupFigures()
            for name in names:
                everything.merge(groups[name])
        return json_response({
            "RepGroups": [groups[name].to_json(name) for name in names],
            "All": everything.to_json(ALL_GROUPS) if everything is not None else None,
        })

    async def details(self, request: Request) -> Response:
        # The same selection, grouping (limit) and std/env as GET /rest/v1/jobs/, and
        # streamed as it is when many (issue 13).
        rest = self.rest
        pacer = Pacer()
        chosen = await rest._select(request, pacer)
        std, env_base = await rest._extras(request, chosen, pacer)

        waiting_for = self.manager.waiting_for

        def encode(chunk: Sequence[Chosen]) -> list[bytes]:
            now = time.time()
            objects = rest._objects(chunk, std, env_base)
            for obj, (job, _, _) in zip(objects, chunk, strict=True):
                ready_at = None
                if job.state == State.DELAYED and job.ended is not None:
                    ready_at = job.ended + job.delay  # spec cli §1.3: EndTime + DelayTime
                obj.update(ReqGroup=job.req_grp, Priority=job.priority, Retries=job.retries,
                           ActualCwd=job.actual_cwd, ReadyAt=ready_at,
                           WaitingFor=waiting_for(job, now))
            return [orjson.dumps(obj) for obj in objects]

        return json_array_answer(chosen, encode)

    async def add(self, request: Request) -> Response:
        pacer = Pacer()
        done = await self.rest.add_posted(request, pacer)
        now_queued: set[str] = set()
        async for chunk in pacer.steps(done.queued):
            now_queued.update([job.key for job in chunk])
        # New = queued now but not before; a repeat within the body, an already queued job
        # and (without rerun) an already completed one are all "existed", as in wr.
        before = done.before
        counted: set[str] = set()
        added = 0
        async for chunk in pacer.steps(done.jobs):
            for job in chunk:
                key = job.key
                if key not in counted:
                    counted.add(key)
                    if key in now_queued and key not in before:
                        added += 1
        answer: dict[str, Any] = {"Added": added, "Existed": len(done.jobs) - added}
        if request.query_params.get("keys") == "true":
            keys: dict[str, None] = {}
            async for chunk in pacer.steps(done.queued):
                keys.update(dict.fromkeys([job.key for job in chunk]))
            answer["Keys"] = list(keys)
        return json_response(answer, status=201)

    async def _figures(self, request: Request, *, usage: bool) -> dict[str, GroupFigures]:
        """Figures per reported rep group of the jobs a request selects."""
        params = request.query_params
        state = parse_state_filter(params.get("state", "")) or ""
        search = params.get("search") == "true"
        ids = ids_in_path(request)  # decoded once, split before decoding (issue 13)
        queue = self.manager.queue
        store = self.manager.store
        now = time.time()
        groups: dict[str, GroupFigures] = {}

        def group(name: str) -> GroupFigures:
            found = groups.get(name)
            if found is None:
                found = groups[name] = GroupFigures()
            return found

        for picked in await select_jobs(queue, store, ids, search=search, state=state):
            if picked.name is None:  # every job, or jobs named by key
                for job in picked.jobs:
                    group(job.rep_grp).add_job(job, now)
                continue
            figures = group(picked.name)
            for job in picked.jobs:
                figures.add_job(job, now)
            if picked.history:
                figures.add_history(await store.complete_figures(
                    picked.name, exclude=list(picked.queued), usage=usage))
        return groups
