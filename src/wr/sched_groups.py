"""Scheduler groups: which jobs can share a runner, and what such a runner needs.

wr runs jobs through runners that each take jobs of one *scheduler group*: jobs asking for
the same memory, time (rounded up to half hours), cores, disk, other requests and limit
groups (spec/cli-manager-web-scheduler.md §5.2). The queue files each ready job under its
group's name (`name_of`, which it is given at construction); the manager asks the scheduler
for runners per group, with the group's requirements (`requirements`).

This is a pure naming service, kept out of both the queue and the manager so that neither
reaches into the other (issue 14): the queue only asks it for names, the manager only reads
requirements back.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from wr.jobs import Job
from wr.schedulers.base import GroupRequirements

_MAX_NAMES = 10_000
"""Distinct requirement sets remembered before the cache starts afresh."""


class SchedGroups:
    """Names scheduler groups and remembers each one's requirements."""

    def __init__(self) -> None:
        self._names: dict[tuple[Any, ...], str] = {}
        self._reqs: dict[str, tuple[GroupRequirements, int]] = {}
        self._idle: dict[str, float] = {}
        """Groups whose jobs gave ``reserve_timeout``: how long their runners wait for
        another job before exiting (the group's name holds it, among its other requests)."""

    def name_of(self, job: Job) -> str:
        """wr's scheduler group of ``job``."""
        if job.other:
            return self._make(job)
        # Jobs come in their thousands with the same requirements: name each set once.
        given = (job.ram, job.time, job.cores, job.disk, tuple(job.limit_grps))
        name = self._names.get(given)
        if name is None:
            if len(self._names) >= _MAX_NAMES:
                self._names.clear()
            name = self._names[given] = self._make(job)
        return name

    def requirements(self, name: str) -> tuple[GroupRequirements, int]:
        """What a runner of group ``name`` needs, and the priority of the first job seen in
        it (KeyError for a group never named here)."""
        return self._reqs[name]

    def _make(self, job: Job) -> str:
        minutes = max(30, math.ceil(job.time / 1800) * 30)
        name = f"{job.ram}:{minutes}:{job.cores:g}:{job.disk}"
        if job.other:
            text = "".join(f":{k}={job.other[k]}" for k in sorted(job.other))
            name += ":" + hashlib.md5(text.encode()).hexdigest()
        if job.limit_grps:
            name += "~" + ",".join(job.limit_grps)
        if name not in self._reqs:
            req = GroupRequirements(job.ram, minutes * 60.0, job.cores, job.disk)
            self._reqs[name] = (req, job.priority)
            if job.other.get("rtimeout"):  # reserve_timeout (issue 15, part 6)
                self._idle[name] = float(job.other["rtimeout"])
        return name

    def idle_of(self, name: str) -> float | None:
        """The seconds a runner of group ``name`` waits for another job before it exits,
        if its jobs said (``reserve_timeout``, as wr's runners' ``--timeout``); None: the
        ``runneridletimeout`` setting's."""
        return self._idle.get(name)
