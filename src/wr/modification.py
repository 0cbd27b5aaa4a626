"""Modifying queued jobs (``wr mod``, ``POST /rest/v1/actions/modify``).

A modification is a set of job properties, named and written as in a POST of new jobs. The
job is turned back into such an object, the changes are laid over it, and the result goes
through exactly the validation a new job gets, so ``mod`` can never make a job that ``add``
would refuse. If cmd, cwd (with cwd_matters) or mounts change, the key changes too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wr.errors import BadRequest
from wr.jobs import Job, format_duration
from wr.submission import JobDefaults, job_from_object

#: Properties ``wr mod`` may change (wr's mod flags; not dep_grps, rep-group-less, rerun).
MODIFIABLE = frozenset({
    "cmd", "cwd", "cwd_matters", "change_home", "rep_grp", "req_grp", "memory", "time",
    "cpus", "disk", "override", "priority", "retries", "no_retry_over_walltime", "deps",
    "cmd_deps", "limit_grps", "env", "on_failure", "on_success", "on_exit", "mounts",
    "modules", "monitor_docker", "with_docker", "with_singularity", "container_mounts", "group",
    "cloud_os", "cloud_username", "cloud_flavor", "cloud_script", "cloud_config_files",
    "cloud_ram", "cloud_shared", "queue", "queues_avoid", "misc", "reserve_timeout",
})
_CLOUD = frozenset({"cloud_os", "cloud_username", "cloud_flavor", "cloud_script",
                    "cloud_config_files", "cloud_ram", "cloud_shared", "queue",
                    "queues_avoid", "misc", "reserve_timeout"})


def job_to_object(job: Job) -> dict[str, Any]:
    """The POST job object that would create this job (cloud settings aside)."""
    obj: dict[str, Any] = {
        "cmd": job.cmd, "cwd": job.cwd, "cwd_matters": job.cwd_matters,
        "change_home": job.change_home, "rep_grp": job.rep_grp, "req_grp": job.req_grp,
        "memory": f"{job.user_ram}M", "time": format_duration(job.user_time),
        "cpus": job.cores, "override": job.override, "priority": job.priority,
        "retries": job.retries, "limit_grps": list(job.limit_grps),
        "dep_grps": list(job.dep_grps), "deps": list(job.deps), "env": list(job.env),
        "modules": list(job.modules), "mounts": list(job.mounts),
        "monitor_docker": job.monitor_docker, "with_docker": job.with_docker,
        "with_singularity": job.with_singularity, "container_mounts": job.container_mounts,
        "group": job.group,
        "bsub_mode": job.bsub_mode,
    }
    if job.user_disk or job.disk_set:
        obj["disk"] = job.user_disk
    if job.no_retry_over_walltime:
        obj["no_retry_over_walltime"] = format_duration(job.no_retry_over_walltime)
    if job.cmd_deps:
        obj["cmd_deps"] = [{"Essence": {"JobKey": k}} for k in job.cmd_deps]
    for when in ("on_failure", "on_success", "on_exit"):
        items = [{b["do"]: b["arg"]} for b in job.behaviours if b["when"] == when]
        if items:
            obj[when] = items
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
        if name in ("on_failure", "on_success", "on_exit") and value in ("", [], None):
            obj[name] = [{"nothing": True}]
        elif value is None or value == "":
            obj.pop(name, None)
        else:
            obj[name] = value
    new = job_from_object(obj, JobDefaults(), now=now)
    if not (set(changes) & _CLOUD):
        new.other = dict(job.other)
    for field in ("state", "attempts", "exited", "exitcode", "fail_reason", "pid", "host",
                  "host_id", "host_ip", "started", "ended", "peak_ram", "peak_disk",
                  "cpu_time", "actual_cwd", "delay", "added", "seq", "bsub_id"):
        setattr(new, field, getattr(job, field))
    used = (job.retries + 1) - job.until_buried
    new.until_buried = max(new.retries + 1 - used, 1 if job.until_buried > 0 else 0)
    return new
