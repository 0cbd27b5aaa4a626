"""Modifying queued jobs (``wr mod``, ``POST /rest/v1/actions/modify``).

A modification is a set of job properties, named and written as in a POST of new jobs. The
job is turned back into such an object, the changes are laid over it, and the result goes
through exactly the validation a new job gets, so ``mod`` can never make a job that ``add``
would refuse. If cmd, cwd (with cwd_matters) or mounts change, the key changes too.

Which keys may change (`wr.job_table.Key.mod`) and how a job gives each back
(`wr.job_table.Key.back`) are the table's. A job's ``other`` requests (cloud, scheduler
queue, ...) are not given back (a ``cloud_script`` keeps a file's content, not its path):
the entries of the keys a modification names are replaced, and the others kept as they
were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wr.errors import BadRequest
from wr.job_kinds import json_form
from wr.job_table import FIELDS, KEY_FIELD, KEYS, Kind
from wr.jobs import Job
from wr.submission import JobDefaults, job_from_object

MODIFIABLE = frozenset(k.name for k in KEYS if k.mod)
"""Properties ``wr mod`` may change (wr's mod flags; not dep_grps, bsub_mode)."""
_BEHAVIOURS = frozenset(k.name for k in KEYS if k.kind is Kind.BEHAVIOURS)
_OTHER = {k.name: k.other for k in KEYS if k.other}
_CARRIED = (*(f.name for f in FIELDS if f.internal and f.name not in ("key", "sched_group")),
            "added")
"""What happened to a job so far, which its modified version keeps: the internal fields
but its key (which follows from its new values) and its scheduler group (the queue's,
from its new requirements), and when it was added."""


def job_to_object(job: Job) -> dict[str, Any]:
    """The POST job object that would create this job (``other`` requests aside)."""
    obj: dict[str, Any] = {}
    for key in KEYS:
        back = key.back
        if back is None:
            if key.other:
                continue
            back = KEY_FIELD[key.name].name
        value = getattr(job, back) if isinstance(back, str) else back(job)
        if value is not None:
            obj[key.name] = json_form(key.kind, value)
    return obj


def check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Lower-case the names and refuse any that cannot be modified."""
    if not isinstance(changes, Mapping) or not changes:
        raise BadRequest("changes must be a non-empty JSON object of job properties")
    out = {str(k).lower(): v for k, v in changes.items()}
    bad = sorted(set(out) - MODIFIABLE)
    if bad:
        raise BadRequest(f"cannot modify {', '.join(bad)}; modifiable properties are "
                         f"{', '.join(sorted(MODIFIABLE))}")
    return out


def modified(job: Job, changes: Mapping[str, Any], now: float) -> Job:
    """A new Job: ``job`` with ``changes`` applied, validated like a new job.

    What happened to the job so far (attempts, retries left, outputs) carries over.
    """
    obj = job_to_object(job)
    for name, value in changes.items():
        if name in _BEHAVIOURS and value in ("", [], None):
            obj[name] = [{"nothing": True}]
        elif value is None or value == "":
            obj.pop(name, None)
        else:
            obj[name] = value
    new = job_from_object(obj, JobDefaults(), now=now)
    changed = {_OTHER[name] for name in changes if name in _OTHER}
    kept = {entry: text for entry, text in job.other.items() if entry not in changed}
    if kept:
        new.other = {**kept, **new.other}
    for field in _CARRIED:
        setattr(new, field, getattr(job, field))
    used = (job.retries + 1) - job.until_buried
    new.until_buried = max(new.retries + 1 - used, 1 if job.until_buried > 0 else 0)
    return new
