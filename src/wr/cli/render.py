"""The text of ``wr status``, exactly as wr prints it (spec cli §1.3). Pure: status objects
(from ``GET /rest/v1/details/`` or ``/jobs/``) and figures (``/summary/``, ``/counts/``) in,
text out; the time zone is an argument, so tests render in UTC.

Times print in Go's ``06/1/2-15:04:05`` layout, durations as Go prints a Duration
(``1h0m0s``, ``5.002s``), core counts as Go's ``FormatFloat(x, 'f', -1, 64)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from wr.jobs import UNSET_TIME, format_duration

COUNT_LINES = (("complete", "complete"), ("running", "running"), ("ready", "ready"),
               ("dependent", "dependent"), ("lost", "lost contact"), ("delayed", "delayed"),
               ("buried", "buried"))
"""(state, label) of each line of ``-o counts``, in wr's order."""
COLUMNS = ("complete", "running", "ready", "dependent", "lost", "delayed", "buried")
"""The counts of a summary line, in wr's order."""
ALL_GROUPS = "all above"
"""The name of the summary line over every rep group."""
USAGE = (("Memory", "memory", "MB"), ("Disk", "disk", "MB"), ("Walltime", "walltime", ""),
         ("CPUtime", "cputime", ""))
"""(figure, label, unit) of a summary's usage part; unit "" means a duration."""

_COLUMN_OF = {"reserved": "running", **{c: c for c in COLUMNS}}


# -- Go's formats -----------------------------------------------------------------------------

def go_time(unix: float | None, tz: tzinfo | None = None) -> str:
    """A Unix time in Go's ``06/1/2-15:04:05`` layout (local time unless ``tz``); the unset
    time prints as Go's zero time."""
    if unix is None or unix <= UNSET_TIME:
        return "01/1/1-00:00:00"
    t = datetime.fromtimestamp(unix, tz)
    return f"{t:%y}/{t.month}/{t.day}-{t:%H:%M:%S}"


def go_duration(seconds: float) -> str:
    """Seconds as Go prints a Duration (``1m30.5s``)."""
    return format_duration(seconds)


def go_truncated(seconds: float) -> str:
    """A float number of seconds as Go's ``time.Duration(float_ns)``: cut to whole ns."""
    return format_duration(math.trunc(seconds * 1e9) / 1e9)


def go_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(x, 'f', -1, 64)``: shortest digits, never an exponent."""
    if float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


# -- counts and plain -------------------------------------------------------------------------

def count_states(jobs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts per state of status objects, each standing for itself and its ``Similar``
    ones; reserved and running both count as running."""
    counts = dict.fromkeys(COLUMNS, 0)
    for job in jobs:
        column = _COLUMN_OF.get(job["State"])
        if column is not None:
            counts[column] += 1 + int(job.get("Similar") or 0)
    return counts


def render_counts(counts: Mapping[str, int]) -> str:
    lines = [f"{label}: {int(counts.get(state, 0))}" for state, label in COUNT_LINES]
    return "\n".join(lines) + "\n\n"


def render_plain(jobs: Iterable[Mapping[str, Any]]) -> str:
    """``<key>\\t<state>`` per job (no trailing empty line, as wr)."""
    return "".join(f"{job['Key']}\t{job['State']}\n" for job in jobs)


# -- summary ----------------------------------------------------------------------------------

def summarize(jobs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``GET /rest/v1/summary/`` answers, worked out from status objects (for the
    selections the manager cannot summarise itself: -f, -l, -y and --host)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    everything: list[Mapping[str, Any]] = []
    for job in jobs:
        if job["State"] in _COLUMN_OF:
            groups.setdefault(job["RepGroup"], []).append(job)
            everything.append(job)
    names = sorted(groups)
    return {
        "RepGroups": [_figures(name, groups[name]) for name in names],
        "All": _figures(ALL_GROUPS, everything) if len(names) > 1 else None,
    }


def _figures(name: str, jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts = dict.fromkeys(COLUMNS, 0)
    buried: dict[tuple[int, str], list[str]] = {}
    done = []
    for job in jobs:
        counts[_COLUMN_OF[job["State"]]] += 1
        if job["State"] == "buried":
            buried.setdefault((job["Exitcode"], job["FailReason"]), []).append(job["Key"])
        elif job["State"] == "complete":
            done.append(job)
    out: dict[str, Any] = {"RepGroup": name, "Counts": counts}
    for figure, field in (("Memory", "PeakRAM"), ("Disk", "PeakDisk"),
                          ("Walltime", "Walltime"), ("CPUtime", "CPUtime")):
        out[figure] = _mean_sd([float(j[field]) for j in done]) if done else None
    out["FirstStarted"] = min((j["Started"] for j in done), default=None)
    out["LastEnded"] = max((j["Ended"] for j in done), default=None)
    out["Buried"] = [{"Exitcode": code, "FailReason": reason, "Keys": keys}
                     for (code, reason), keys in buried.items()]
    return out


def _mean_sd(values: Sequence[float]) -> dict[str, float]:
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return {"Mean": mean, "SD": 0.0}
    m2 = math.fsum((v - mean) ** 2 for v in values)
    return {"Mean": mean, "SD": math.sqrt(m2 / (len(values) - 1))}


def render_summary(summary: Mapping[str, Any], tz: tzinfo | None = None) -> str:
    """One line per rep group, then ``all above`` when there are several, then an empty
    line: ``<rg> : complete=N running=N ... buried=N[ <usage>][ <buried groups>]``."""
    groups = list(summary.get("RepGroups") or [])
    if summary.get("All"):
        groups.append(summary["All"])
    return "".join(_summary_line(g, tz) + "\n" for g in groups) + "\n"


def _summary_line(group: Mapping[str, Any], tz: tzinfo | None) -> str:
    counts = group["Counts"]
    line = f"{group['RepGroup']} :" + "".join(f" {c}={int(counts.get(c, 0))}" for c in COLUMNS)
    complete = int(counts.get("complete", 0))
    if complete > 0 and group.get("Memory"):
        for figure, label, unit in USAGE:
            mean, sd = group[figure]["Mean"], group[figure]["SD"]
            if unit:
                line += f" {label}={int(mean)}{unit}(+/-{int(sd)}{unit})"
            else:
                line += f" {label}={go_truncated(mean)}(+/-{go_truncated(sd)})"
        first, last = group.get("FirstStarted"), group.get("LastEnded")
        if complete > 1 and first is not None and last is not None:
            line += (f" started={go_time(first, tz)} ended={go_time(last, tz)}"
                     f" elapsed={go_duration(last - first)}")
    buried = sorted((f'exitcode.{b["Exitcode"]},"{b["FailReason"]}"', b["Keys"])
                    for b in group.get("Buried") or [])
    for label, keys in buried:
        line += f" {label}={','.join(keys)}"
    return line


# -- details ----------------------------------------------------------------------------------

def render_details(jobs: Iterable[Mapping[str, Any]], *, now: float,
                   tz: tzinfo | None = None, show_extra: bool = True,
                   show_env: bool = False) -> str:
    """wr's details output: a block per job, then an empty line. ``show_extra`` (off in -f
    mode) adds the output of failed jobs; ``show_env`` their environment."""
    return "".join(_details(job, now, tz, show_extra, show_env) for job in jobs) + "\n"


def _actual_cwd(job: Mapping[str, Any]) -> str:
    """The directory the job ran in: its unique one if it has run and cwd did not matter
    (the status object's ``Cwd`` is then that directory below ``CwdBase``), else cwd."""
    if job.get("Cwd"):
        return job.get("ActualCwd") or job["CwdBase"].rstrip("/") + job["Cwd"]
    return job["CwdBase"]


def _details(job: Mapping[str, Any], now: float, tz: tzinfo | None, show_extra: bool,
             show_env: bool) -> str:
    out = [f"\n# {job['Cmd']}\nCwd: {_actual_cwd(job)}\n"]
    _how_it_runs(job, out)
    groups = ""
    if job.get("DepGroups"):
        groups += f"Dependency groups: {', '.join(job['DepGroups'])}; "
    if job.get("Dependencies"):
        groups += f"Dependencies: {', '.join(job['Dependencies'])}; "
    if job.get("LimitGroups"):
        groups += f"Limit groups: {', '.join(job['LimitGroups'])}; "
    out.append(f"Id: {job['RepGroup']} ({job['Key']}); Requirements group: "
               f"{job.get('ReqGroup', '')}; {groups}Priority: {job.get('Priority', 0)}; "
               f"Attempts: {job['Attempts']}\n")
    out.append(f"Expected requirements: {{ memory: {job['ExpectedRAM']}MB; time: "
               f"{go_duration(job['ExpectedTime'])}; cpus: {go_float(job['Cores'])} disk: "
               f"{job['RequestedDisk']}GB }}\n")
    status = _status_line(job, now, tz)
    if status:
        out.append(status)
    if job.get("FailReason"):
        out.append(f"Previous problem: {job['FailReason']}\n")
    _stats(job, out, show_extra)
    if show_extra and show_env:
        out.append(f"Env: [{' '.join(job.get('Env') or [])}]\n")
    similar = int(job.get("Similar") or 0)
    if similar > 0:
        problem = " and problem" if job.get("FailReason") else ""
        code = ""
        if job.get("Exited") and job["Exitcode"] != 0:
            code = ", exit code" if problem else " and exit code"
        out.append(f"+ {similar} other commands with the same status{code}{problem}\n")
    return "".join(out)


def _how_it_runs(job: Mapping[str, Any], out: list[str]) -> None:
    """The lines on what the command runs with: modules, mounts, home, container,
    behaviours and other requests."""
    if job.get("Modules"):
        out.append(f"Modules: {', '.join(job['Modules'])}; ")
    if job.get("Mounts"):
        out.append(f"Mounts: {job['Mounts']}\n")
    if job.get("Cwd") and job.get("HomeChanged"):  # it ran in a directory of its own
        out.append("Changed home: true\n")
    if job.get("WithDocker"):
        out.append(f"Cmd running inside docker container running image: {job['WithDocker']}\n")
    elif job.get("WithSingularity"):
        out.append("Cmd running inside singularity container running image: "
                   f"{job['WithSingularity']}\n")
    if job.get("ContainerMounts"):
        out.append(f"Container has these mounts: {job['ContainerMounts']}\n")
    if job.get("MonitorDocker"):
        target = job["MonitorDocker"]
        if target == "?":
            target += " (first container started after cmd)"
        out.append(f"Docker container monitoring turned on for: {target}\n")
    if job.get("Behaviours"):
        out.append(f"Behaviours: {job['Behaviours']}\n")
    if job.get("OtherRequests"):
        out.append(f"Resource requirements: {', '.join(job['OtherRequests'])}\n")


def _status_line(job: Mapping[str, Any], now: float, tz: tzinfo | None) -> str:
    """wr's "Status:" line for the job's state ("" for a state wr has none for)."""
    state = job["State"]
    started, ended = job["Started"], job["Ended"]
    if state == "delayed":
        ready_at = job.get("ReadyAt")
        wait = go_duration(_go_round(ready_at - now)) if ready_at is not None else "?"
        return ("Status: delayed following a problem, prior to retrying; will become "
                f"ready in {wait} (attempted at {go_time(started, tz)})\n")
    if state == "ready" and job.get("WaitingFor"):
        return f"Status: ready, but waiting for {job['WaitingFor']}\n"
    if state == "ready":
        return "Status: ready to be picked up by a `wr runner`\n"
    if state == "dependent":
        return "Status: dependent on other jobs\n"
    if state == "buried":
        return ("Status: buried - you need to fix the problem and then `wr retry` "
                f"(attempted at {go_time(started, tz)})\n")
    if state in ("reserved", "running"):
        return f"Status: running (started {go_time(started, tz)})\n"
    if state == "lost":
        return (f"Status: lost contact (started {go_time(started, tz)}; lost "
                f"{go_time(ended, tz)})\n")
    if state == "complete":
        return (f"Status: complete (started {go_time(started, tz)}; ended "
                f"{go_time(ended, tz)})\n")
    return ""


def _stats(job: Mapping[str, Any], out: list[str], show_extra: bool) -> None:
    """The lines on how the last run went: its figures, its host, and (``show_extra``) the
    output of a failed one."""
    state = job["State"]
    host_id = f", ID: {job['HostID']}" if job.get("HostID") else ""
    host = f"Host: {job['Host']} (IP: {job['HostIP']}{host_id}); Pid: {job['Pid']}\n"
    if job.get("Exited"):
        prefix = "Stats" if state == "complete" else "Stats of previous attempt"
        out.append(f"{prefix}: {{ Exit code: {job['Exitcode']}; Peak memory: "
                   f"{job['PeakRAM']}MB; Peak disk: {job['PeakDisk']}MB; Wall time: "
                   f"{go_duration(job['Walltime'])}; CPU time: {go_duration(job['CPUtime'])}"
                   f" }}\n{host}")
        if show_extra and job["Exitcode"] != 0:
            for label, field in (("StdOut", "StdOut"), ("StdErr", "StdErr")):
                text = job.get(field) or ""
                out.append(f"{label}:\n{text}\n" if text else f"{label}: [none]\n")
        elif show_extra and job.get("FailReason") and job.get("StdErr"):
            # Failed before its command ran (a mount, issue 18): wr's "Details" line.
            out.append(f"Details: {job['StdErr']}\n")
    elif state in ("running", "lost"):
        out.append(f"Stats: {{ Wall time: {go_duration(job['Walltime'])} }}\n{host}")
    elif show_extra and job.get("StdErr"):
        out.append(f"Details: {job['StdErr']}\n")


def _go_round(seconds: float) -> float:
    """Go's ``Duration.Round(time.Second)``: to the nearest second, halves away from 0."""
    return math.copysign(math.floor(abs(seconds) + 0.5), seconds)
