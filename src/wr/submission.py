"""Turning a ``POST /rest/v1/jobs/`` request (JSON body + URL query) into `Job` records.

The body is a JSON array of job objects; the URL query gives defaults for every job in it
(spec/rest-and-queue.md §2.2). Conversion is all-or-nothing: the first bad job raises
`BadRequest` and no job is returned, so nothing is half-added.

Merge rules (§2.2.3), per job:

* strings: the JSON value if non-empty, else the query's, else the built-in default (cwd
  ``/tmp``, rep_grp ``manually_added``, req_grp the basename of the command's first word);
* lists: the JSON list if non-empty, else the query's (comma-separated there; ``on_*`` and
  ``mounts`` are JSON in the query);
* numbers: the JSON value if not null, else the query's; booleans are OR-ed;
* memory: JSON if given (``500K`` -> 0 MB is kept), else the query's if at least 1 MB, else 1G;
  time: JSON if given, else the query's if non-zero, else 1h.

In a job object, ``null``, ``""`` and ``[]`` all mean "not provided" (wr's own clients send
every key with zero values), keys match case-insensitively (``"CMD"`` works) and unknown keys
are ignored. Types are strict: a wrong type is a 400 naming the field and the value.

Deliberate differences from wr (each a user could notice; listed in docs/compatibility.md):

* JSON ``cpus`` below zero is rejected (wr keeps it); so is a negative query ``cpus`` (wr
  clamps it to 0), and negative ``disk``, ``cloud_ram`` and ``reserve_timeout``.
* Invalid numbers in the query are a 400 (``priority value (abc) is not an integer``), not a
  silent 0.
* Integer fields reject fractions, booleans and values beyond int64; ``cpus`` above
  2147483647 is rejected; neither becomes a 500.
* A ``null`` element of the body array is read as ``{}`` (so: "cmd was not specified"); wr
  panics and answers an empty 200.
* Trailing data after the JSON array, a single object instead of an array, non-object
  elements, and NUL characters in strings are 400s with their own texts.
* Query ``on_*``/``mounts`` values are parsed as JSON as they arrive; they are percent-decoded
  a second time only when still escaped (starting ``%5B``), so a literal ``%`` or ``+`` in them
  needs no double escaping.
* Empty pieces of comma-separated query lists (``a,,b``) are dropped.
* ``env`` entries must look like ``NAME=VALUE``.
* Behaviour and mount objects are type-checked; a mount needs at least one target and every
  target a ``Path``. Several mounts are stored sorted by ``Mount`` (as wr displays them).
* A bad JSON ``no_retry_over_walltime`` says ``no_retry_over_walltime value (X) ...`` where wr
  says ``time value (X) ...``.
* ``cloud_script`` must name a regular file of at most 1 MiB of UTF-8 text.
* ``cloud_config_files`` is also accepted as a query default (wr's page promises it).
* ``cmd_deps`` essence dependencies are stored as job keys, so ``Dependencies`` shows the key
  where wr shows ``cmd [cwd]``.
* A relative ``cwd`` and a negative ``time`` or ``no_retry_over_walltime`` are refused; so
  is a ``limit_grps`` entry that is neither a name (no ``,``, ``:`` or NUL) nor ``name:N``
  with N from -1 to 2**63-1 (issue 13; wr's time-window groups included).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import orjson

from wr.container_options import parse_container_mounts
from wr.errors import BadRequest
from wr.job_body import JobObjects, parse_jobs_body
from wr.job_body import show_value as _show
from wr.job_fields import Rare, compact_rare, rare_part
from wr.jobs import (
    DEFAULT_CWD,
    DEFAULT_RAM_MB,
    DEFAULT_REP_GRP,
    DEFAULT_TIME_S,
    Job,
    State,
    behaviours_from_json,
    check_limit_group,
    compute_key,
    default_req_grp,
    key_affixes,
    key_of,
    parse_duration,
    parse_memory,
)
from wr.lsf import check_bsub_mode
from wr.pacing import STEP, Pacer

PROBLEM = "there was a problem interpreting your job: "
"""wr's prefix for every per-job conversion error."""
INT64_MAX = 2**63 - 1
"""The largest integer any numeric job field may hold (it is stored as SQLite INTEGER)."""
MAX_CPUS = 2**31 - 1
"""The largest ``cpus`` accepted; more is a typo, not a machine."""
MAX_CLOUD_SCRIPT_BYTES = 1 << 20
"""The largest ``cloud_script`` file read into a job."""

_RANGES = {"override": 2, "priority": 255, "retries": 255}
_QUERY_INT = re.compile(r"[+-]?[0-9]+")
_QUERY_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BEHAVIOUR_KEYS = ("on_failure", "on_success", "on_exit")
_BEHAVIOUR_TYPES = {
    "run": str, "copy_to_manager": list, "cleanup": bool, "cleanup_all": bool,
    "remove": bool, "nothing": bool,
}


class _Invalid(ValueError):
    """A conversion problem; turned into BadRequest with the right prefix at the boundary."""


@dataclass(slots=True)
class JobDefaults:
    """Defaults for every job of one POST, parsed from its URL query (§2.2.1).

    Zero values mean "not given": ``memory`` 0 and ``time`` 0 fall back to 1G and 1h.
    """

    rep_grp: str = DEFAULT_REP_GRP
    cwd: str = ""
    req_grp: str = ""
    limit_grps: list[str] = field(default_factory=list)
    dep_grps: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    cpus: float = 0.0
    disk: int = 0
    disk_set: bool = False
    override: int = 0
    priority: int = 0
    retries: int = 0
    cloud_ram: int = 0
    memory: int = 0
    time: float = 0.0
    no_retry_over_walltime: float = 0.0
    cwd_matters: bool = False
    change_home: bool = False
    cloud_shared: bool = False
    on_failure: list[dict[str, Any]] = field(default_factory=list)
    on_success: list[dict[str, Any]] = field(default_factory=list)
    on_exit: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    monitor_docker: str = ""
    with_docker: str = ""
    with_singularity: str = ""
    container_mounts: str = ""
    cloud_os: str = ""
    cloud_username: str = ""
    cloud_script: str = ""
    cloud_flavor: str = ""
    cloud_config_files: str = ""
    bsub_mode: str = ""


_QUERY_STRINGS = (
    "cwd", "req_grp", "monitor_docker", "with_docker", "with_singularity", "container_mounts",
    "cloud_os", "cloud_username", "cloud_script", "cloud_flavor", "cloud_config_files",
    "bsub_mode",
)


# -- the URL query ------------------------------------------------------------------------

def parse_query_defaults(query: Mapping[str, str]) -> tuple[JobDefaults, bool]:
    """Parse the URL query of a POST into job defaults and the ``rerun`` flag.

    Raises BadRequest with the parser's own text for a bad memory, time,
    no_retry_over_walltime, on_* or mounts value (``time: invalid duration "abc"``), and
    for numbers that are not numbers.
    """
    try:
        return _parse_query(query)
    except _Invalid as e:
        raise BadRequest(str(e)) from None


def _parse_query(query: Mapping[str, str]) -> tuple[JobDefaults, bool]:
    d = JobDefaults()
    get = query.get
    for name in _QUERY_STRINGS:
        value = get(name) or ""
        if value:
            setattr(d, name, _check_text(name, value))
    if d.cwd:
        _check_cwd(d.cwd)
    d.rep_grp = _check_text("rep_grp", get("rep_grp") or "") or DEFAULT_REP_GRP
    for name in ("limit_grps", "dep_grps", "deps"):
        setattr(d, name, [_check_text(name, p) for p in (get(name) or "").split(",") if p])
    _check_limit_groups(d.limit_grps)
    _checked(check_bsub_mode, d.bsub_mode)
    d.env = [_check_env(p) for p in (get("env") or "").split(",") if p]

    cpus = get("cpus") or ""
    if cpus:
        if not _QUERY_FLOAT.fullmatch(cpus):
            raise _Invalid(f"cpus value ({cpus}) is not a number")
        d.cpus = _check_cpus(float(cpus), cpus)
    if "disk" in query:
        d.disk_set = True
        d.disk = _query_int(query, "disk", non_negative=True)
    d.cloud_ram = _query_int(query, "cloud_ram", non_negative=True)
    for name in _RANGES:
        setattr(d, name, _query_int(query, name))

    memory = get("memory") or ""
    if memory:
        try:
            d.memory = parse_memory(memory)
        except ValueError as e:
            raise _Invalid(str(e)) from None
    for name in ("time", "no_retry_over_walltime"):
        value = get(name) or ""
        if value:
            try:
                seconds = parse_duration(value)
            except ValueError as e:
                raise _Invalid(str(e)) from None
            setattr(d, name, _not_negative(name, seconds, value))

    for name in ("cwd_matters", "change_home", "cloud_shared"):
        setattr(d, name, get(name) == "true")
    for name in _BEHAVIOUR_KEYS:
        value = get(name) or ""
        if value:
            setattr(d, name, _behaviours(name, _query_json(name, value)))
    mounts = get("mounts") or ""
    if mounts:
        d.mounts = _mounts(_query_json("mounts", mounts))
    return d, get("rerun") == "true"


def _query_int(query: Mapping[str, str], name: str, *, non_negative: bool = False) -> int:
    text = query.get(name) or ""
    if not text:
        return 0
    if not _QUERY_INT.fullmatch(text):
        raise _Invalid(f"{name} value ({text}) is not an integer")
    return _in_int64(name, int(text), text, non_negative)


def _in_int64(name: str, value: int, shown: str, non_negative: bool) -> int:
    """``value`` if it fits the store's INTEGER (and is not negative, if so asked)."""
    if abs(value) > INT64_MAX:
        raise _Invalid(f"{name} value ({shown}) is too large")
    if non_negative and value < 0:
        raise _Invalid(f"{name} must not be negative (got {shown})")
    return value


def _query_json(name: str, text: str) -> Any:
    # The framework has percent-decoded the value once; wr decodes it a second time. We only
    # do that when it is evidently still escaped, so a literal % or + in the JSON survives.
    if text[:3].upper() == "%5B":
        text = unquote_plus(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise _Invalid(f"{name}: invalid JSON: {e}") from None


# -- the body (parsed by wr.job_body) -------------------------------------------------

PART = 10_000
"""Jobs converted at a time by `job_parts_from_request`."""


def jobs_from_request(
    body: bytes, query: Mapping[str, str], *, now: float
) -> tuple[list[Job], bool]:
    """Turn a whole POST into jobs and the ``rerun`` flag; the first failure raises.

    The query is checked before the body, as wr does. A ``cloud_script`` file is read once per
    request however many jobs name it.
    """
    parts, rerun = job_parts_from_request(body, query, now=now)
    return [job for part in parts for job in part], rerun


def job_parts_from_request(
    body: bytes, query: Mapping[str, str], *, now: float, size: int = PART
) -> tuple[Iterator[list[Job]], bool]:
    """`jobs_from_request` a part of ``size`` jobs at a time, so the manager can store one
    part while it converts the next. The query and the JSON are checked now; each job when
    its part is taken, and a bad one raises from the iterator."""
    defaults, rerun = parse_query_defaults(query)
    objects = parse_jobs_body(body)
    return _parts(objects, defaults, now, size), rerun


def _parts(objects: list[dict[str, Any]], defaults: JobDefaults, now: float,
           size: int) -> Iterator[list[Job]]:
    seen = _Seen()
    for start in range(0, len(objects), size):
        yield [_job(obj, defaults, now, seen) for obj in objects[start:start + size]]


def paced_job_parts(
    body: bytes, query: Mapping[str, str], *, now: float, pacer: Pacer, size: int = PART
) -> tuple[AsyncIterator[list[Job]], bool]:
    """`job_parts_from_request` on the event loop, sharing it (issue 13): the body is
    parsed a piece at a time (`wr.job_body`), its jobs converted ``STEP`` at a time with
    ``pacer`` giving the loop back between, and each piece's dicts dropped once converted.
    The query is checked now, the body as the parts are taken; errors, and which of two
    comes first, are those of `job_parts_from_request`."""
    defaults, rerun = parse_query_defaults(query)
    return _paced_parts(JobObjects(body), defaults, now, pacer, size), rerun


async def _paced_parts(objects: JobObjects, defaults: JobDefaults, now: float, pacer: Pacer,
                       size: int) -> AsyncIterator[list[Job]]:
    seen = _Seen()
    part: list[Job] = []
    for piece in objects.pieces():
        for start in range(0, len(piece), STEP):
            try:
                part.extend([_job(obj, defaults, now, seen)
                             for obj in piece[start:start + STEP]])
            except BadRequest:
                # A JSON error, or an element that is no object, further on comes first.
                for _ in objects.drain():
                    await pacer.breathe()
                raise
            if len(part) >= size:
                yield part
                part = []
            await pacer.breathe()
        await pacer.breathe()
    if part:
        yield part


def check_job_objects(objects: Sequence[Mapping[str, Any]], defaults: JobDefaults,
                      indices: Iterable[int]) -> None:
    """Validate the job objects at ``indices`` as a POST with these defaults would, sharing
    the work a request shares; the first bad one raises `BadJobObject` naming its index."""
    seen = _Seen()
    for i in indices:
        try:
            _job(objects[i], defaults, 0.0, seen)
        except BadRequest as e:
            raise BadJobObject(i, e.message) from None


class BadJobObject(BadRequest):
    """A job object failed `check_job_objects`; ``index`` says which."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def job_from_object(obj: Mapping[str, Any], defaults: JobDefaults, *, now: float = 0.0) -> Job:
    """Merge one JSON job object with the query defaults and validate it (§2.2.2-2.2.3).

    Raises BadRequest ``there was a problem interpreting your job: <reason>``.
    """
    return _job(obj, defaults, now, _Seen())


class _Seen:
    """What one request has already worked out, because its jobs mostly look alike: parsed
    memory and time texts, cloud scripts read, the fields of jobs that set none of the rarely
    used keys, and one shared copy of each group name (a manager holds a million jobs)."""

    __slots__ = ("memory", "seconds", "scripts", "rare", "parts", "names", "req_grps", "shape")

    def __init__(self) -> None:
        self.memory: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.scripts: dict[str, str] = {}
        self.rare: _Rare | None = None
        self.parts: dict[tuple[Any, ...], Rare] = {}
        self.names: dict[str, str] = {}
        self.req_grps: dict[str, str] = {}
        self.shape: _Shape | None = None

    def name(self, text: str) -> str:
        return self.names.setdefault(text, text)

    def req_grp(self, cmd: str) -> str:
        """wr's default req_grp of a command, shared by every command with the same first
        word."""
        first = cmd.partition(" ")[0]
        found = self.req_grps.get(first)
        if found is None:
            found = self.req_grps[first] = self.name(default_req_grp(cmd))
        return found


# -- one job ------------------------------------------------------------------------------

def _job(obj: Mapping[str, Any], d: JobDefaults, now: float, seen: _Seen) -> Job:
    if not isinstance(obj, Mapping):
        raise BadRequest(PROBLEM + f"a job must be a JSON object, not {_show(obj)}")
    try:
        return _convert(obj, d, now, seen)
    except _Invalid as e:
        raise BadRequest(PROBLEM + str(e)) from None


_COMMON_KEYS = frozenset({
    "cmd", "cwd", "cwd_matters", "change_home", "rep_grp", "req_grp", "memory", "time",
    "no_retry_over_walltime", "cpus", "disk", "override", "priority", "retries", "deps",
    "dep_grps", "limit_grps",
})
"""The keys most jobs use; a job with keys beyond these takes the full (slower) reading of
`_rare_fields`, and one without shares a reading of the query defaults."""


def _convert(obj: Mapping[str, Any], d: JobDefaults, now: float, seen: _Seen) -> Job:
    o = obj if obj.keys() <= _COMMON_KEYS else _lowered(obj)
    cmd = _string(o, "cmd")
    if not cmd:
        raise _Invalid("cmd was not specified")
    shape = seen.shape
    if shape is None or o is not obj or not _alike(o, shape.given):
        shape = _shape(o, d, seen)
        if o is obj:
            seen.shape = shape
    req_grp = shape.req_grp or seen.req_grp(cmd)
    job = Job(
        key_of(cmd, shape.key_prefix, shape.key_suffix), cmd, shape.cwd, shape.cwd_matters,
        shape.rep_grp, req_grp, shape.ram, shape.seconds, shape.cores, shape.disk,
        shape.priority, shape.retries,
        shape.limit_grps, shape.dep_grps, shape.deps, shape.ram, shape.seconds, State.READY,
        shape.retries + 1, 0, "", now,
    )
    if shape.part is not None:  # (a shape used again holds a shared part, or none)
        job.adopt_rare(shape.part)
    return job


def _alike(o: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """Whether a job object gives what ``given`` (the last one, without its ``cmd``) gave:
    the same keys, with values of the same types and equal (JSON's 1, 1.0 and true differ).
    The list values of these keys were read as lists of strings, to which only lists of
    the same strings are equal."""
    if len(o) != len(given) + 1:
        return False
    for name, value in o.items():
        if name != "cmd":
            was = given.get(name, _Invalid)
            if type(value) is not type(was) or value != was:
                return False
    return True


@dataclass(slots=True)
class _Shape:
    """Everything a job object decides besides its command (its key, and a default
    req_grp, come from that). The jobs of one request mostly differ only in their command,
    so a job that gives what the one before it gave takes its shape instead of reading
    every field again: a third of the time a 100,000-job POST took to read."""

    given: dict[str, Any]
    cwd: str
    cwd_matters: bool
    rep_grp: str
    req_grp: str
    """Given or defaulted by the query; empty: the command's first word."""
    ram: int
    seconds: float
    cores: float
    disk: int
    priority: int
    retries: int
    limit_grps: tuple[str, ...]
    dep_grps: tuple[str, ...]
    deps: tuple[str, ...]
    key_prefix: str
    key_suffix: str
    part: Rare | None
    """The rarely used requests as the job keeps them: shared by every job of the shape
    when only the query gives them, else the job's own (its shape is not used again)."""


def _shape(o: Mapping[str, Any], d: JobDefaults, seen: _Seen) -> _Shape:
    # Each reader is called only for a key that is there: most jobs give two or three of
    # these keys, and a 100,000-job POST made 1.7 million calls that found nothing.
    given = o.keys()
    cwd = ("cwd" in given and _string(o, "cwd")) or d.cwd or DEFAULT_CWD
    if cwd[0] != "/":
        _check_cwd(cwd)
    cwd_matters = ("cwd_matters" in given and _bool(o, "cwd_matters")) or d.cwd_matters
    change_home = ("change_home" in given and _bool(o, "change_home")) or d.change_home
    rep_grp = seen.name(("rep_grp" in given and _string(o, "rep_grp")) or d.rep_grp)
    req_grp = seen.name(("req_grp" in given and _string(o, "req_grp")) or d.req_grp)

    memory_text = "memory" in given and _string(o, "memory")
    if not memory_text:
        ram = d.memory if d.memory >= 1 else DEFAULT_RAM_MB
    elif (ram := seen.memory.get(memory_text, -1)) < 0:
        try:
            ram = seen.memory[memory_text] = parse_memory(memory_text)
        except ValueError as e:
            raise _Invalid(
                f"memory value ({memory_text}) was not specified correctly: {e}"
            ) from None
    time_text = "time" in given and _string(o, "time")
    if not time_text:
        seconds = d.time if d.time != 0 else DEFAULT_TIME_S
    elif (seconds := seen.seconds.get(time_text, -1.0)) < 0:
        seconds = seen.seconds[time_text] = _duration("time", time_text)
    nrow_text = "no_retry_over_walltime" in given and _string(o, "no_retry_over_walltime")
    no_retry = (_duration("no_retry_over_walltime", nrow_text) if nrow_text
                else d.no_retry_over_walltime)

    cpus = _cpus(o) if "cpus" in given else None
    cores = d.cpus if cpus is None else cpus
    disk = _int(o, "disk", non_negative=True) if "disk" in given else None
    disk_set = disk is not None or d.disk_set
    if disk is None:
        disk = d.disk
    # (a query default out of range fails each job, with the per-job message, as in wr)
    override = (_ranged(o, "override", 2, d.override)
                if "override" in given or not 0 <= d.override <= 2 else d.override)
    priority = (_ranged(o, "priority", 255, d.priority)
                if "priority" in given or not 0 <= d.priority <= 255 else d.priority)
    retries = (_ranged(o, "retries", 255, d.retries)
               if "retries" in given or not 0 <= d.retries <= 255 else d.retries)

    common = not given - _COMMON_KEYS
    if common:  # none of the rare keys: the query defaults decide them, as for every such job
        if seen.rare is None:
            seen.rare = _rare_fields({}, d, seen)
        rare = seen.rare
    else:
        rare = _rare_fields(o, d, seen)
    deps = _strings(o, "deps") if "deps" in given else []
    if rare.cmd_dep_grps:
        deps = rare.cmd_dep_grps + deps
    elif not deps:
        deps = list(d.deps)

    part = rare_part(
        change_home, disk_set, rare.other, override, no_retry, rare.modules, rare.cmd_deps,
        rare.behaviours, rare.mounts, rare.monitor_docker, rare.with_docker,
        rare.with_singularity, rare.container_mounts, rare.env, rare.group, rare.bsub_mode,
        rare.reserve_timeout, disk, False, False, 0.0, 0,
    )
    if common and part is not None:
        # Jobs with none of the rare keys share one part per request (and per value of
        # the few common keys kept in it), not one part each.
        given_rare = (change_home, disk_set, override, no_retry, disk)
        found = seen.parts.get(given_rare)
        if found is None:
            found = seen.parts[given_rare] = compact_rare(part)
            found.shared = True  # by this request's jobs, if by no others
        part = found
    prefix, suffix = key_affixes(
        cwd=cwd, cwd_matters=cwd_matters, mounts=rare.mounts, with_docker=rare.with_docker,
        with_singularity=rare.with_singularity, container_mounts=rare.container_mounts)
    limit_grps = tuple(("limit_grps" in given
                        and _check_limit_groups(_strings(o, "limit_grps"))) or d.limit_grps)
    return _Shape(
        given={k: v for k, v in o.items() if k != "cmd"}, cwd=seen.name(cwd),
        cwd_matters=cwd_matters, rep_grp=rep_grp, req_grp=req_grp, ram=ram, seconds=seconds,
        cores=cores, disk=disk, priority=priority, retries=retries,
        limit_grps=limit_grps,
        dep_grps=tuple(("dep_grps" in given and _strings(o, "dep_grps")) or d.dep_grps),
        deps=tuple(deps), key_prefix=prefix, key_suffix=suffix, part=part,
    )


@dataclass(slots=True)
class _Rare:
    """The fields few jobs set (containers, clouds, behaviours, ...), read together."""

    mounts: list[dict[str, Any]]
    behaviours: list[dict[str, Any]]
    cmd_dep_grps: list[str]
    cmd_deps: list[str]
    env: list[str]
    modules: list[str]
    with_docker: str
    with_singularity: str
    container_mounts: str
    monitor_docker: str
    group: str
    bsub_mode: str
    reserve_timeout: int
    other: dict[str, str]


def _rare_fields(o: Mapping[str, Any], d: JobDefaults, seen: _Seen) -> _Rare:
    mounts_raw = o.get("mounts")
    mounts = _mounts(mounts_raw) if _given(mounts_raw) else list(d.mounts)
    behaviours: list[dict[str, Any]] = []
    for name in _BEHAVIOUR_KEYS:
        raw = o.get(name)
        behaviours.extend(_behaviours(name, raw) if _given(raw) else getattr(d, name))

    cmd_dep_grps: list[str] = []
    cmd_deps: list[str] = []
    raw_cmd_deps = o.get("cmd_deps")
    if _given(raw_cmd_deps):
        cmd_dep_grps, cmd_deps = _cmd_deps(raw_cmd_deps)
    env = [_check_env(e) for e in _strings(o, "env")] or list(d.env)
    reserve_timeout = _int(o, "reserve_timeout", non_negative=True)

    other: dict[str, str] = {}
    for key, value in (
        ("cloud_os", _string(o, "cloud_os") or d.cloud_os),
        ("cloud_user", _string(o, "cloud_username") or d.cloud_username),
        ("cloud_flavor", _string(o, "cloud_flavor") or d.cloud_flavor),
        ("cloud_config_files", _string(o, "cloud_config_files") or d.cloud_config_files),
        ("scheduler_queue", _string(o, "queue")),
        ("scheduler_queues_avoid", _string(o, "queues_avoid")),
        ("scheduler_misc", _string(o, "misc")),
    ):
        if value:
            other[key] = value
    script = _string(o, "cloud_script") or d.cloud_script
    if script:
        other["cloud_script"] = _read_script(script, seen.scripts)
    cloud_ram = _int(o, "cloud_ram", non_negative=True)
    if cloud_ram is not None:
        other["cloud_os_ram"] = str(cloud_ram)
    elif d.cloud_ram:
        other["cloud_os_ram"] = str(d.cloud_ram)
    if _bool(o, "cloud_shared") or d.cloud_shared:
        other["cloud_shared"] = "true"
    if reserve_timeout is not None:
        other["rtimeout"] = str(reserve_timeout)
    rare = _Rare(
        mounts=mounts, behaviours=behaviours, cmd_dep_grps=cmd_dep_grps, cmd_deps=cmd_deps,
        env=env, modules=_strings(o, "modules"),
        with_docker=_string(o, "with_docker") or d.with_docker,
        with_singularity=_string(o, "with_singularity") or d.with_singularity,
        container_mounts=_string(o, "container_mounts") or d.container_mounts,
        monitor_docker=_string(o, "monitor_docker") or d.monitor_docker,
        group=_string(o, "group"),
        bsub_mode=_checked(check_bsub_mode, o.get("bsub_mode")) or d.bsub_mode,
        reserve_timeout=reserve_timeout or 0, other=other,
    )
    if rare.container_mounts or (rare.with_docker and rare.with_singularity):
        _check_containers(rare)
    return rare


def _check_containers(rare: _Rare) -> None:
    """Refuse container options that could never run as asked (issue 15; wr let docker
    win silently when both images were given)."""
    if rare.with_docker and rare.with_singularity:
        raise _Invalid(f"with_docker ({rare.with_docker}) and with_singularity "
                       f"({rare.with_singularity}) are mutually exclusive: give one image")
    try:
        parse_container_mounts(rare.container_mounts)
    except ValueError as e:
        raise _Invalid(str(e)) from None


# -- typed field readers ------------------------------------------------------------------

def _given(value: Any) -> bool:
    """False for the three spellings of "not provided": null, "" and []."""
    if value is None:
        return False
    return not (isinstance(value, (str, list)) and not value)


def _checked(check: Any, value: Any) -> Any:
    """``check(value)``, its ValueError made a job problem (time windows and bsub_mode are
    checked in wr.windows and wr.lsf; issue 15)."""
    try:
        return check(value)
    except ValueError as e:
        raise _Invalid(str(e)) from None


def _check_text(name: str, value: str) -> str:
    if "\x00" in value:
        raise _Invalid(f"{name} must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Invalid(f"{name} is not valid Unicode text") from None
    return value


# _string and _strings run ~20 times per job of a 100k-job body, so they inline _given and
# only call _check_text for the rare string that could need it.

def _string(o: Mapping[str, Any], name: str) -> str:
    value = o.get(name)
    if value is None or value == "" or value == []:
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"{name} must be a string, not {_show(value)}")
    if "\x00" in value or not value.isascii():
        _check_text(name, value)
    return value


def _strings(o: Mapping[str, Any], name: str) -> list[str]:
    value = o.get(name)
    if value is None or value == "" or value == []:
        return []
    if not isinstance(value, list):
        raise _Invalid(f"{name} must be an array of strings, not {_show(value)}")
    for item in value:
        if not isinstance(item, str):
            raise _Invalid(f"{name} must be an array of strings, not {_show(value)}")
        if "\x00" in item or not item.isascii():
            _check_text(name, item)
    return list(value)


def _bool(o: Mapping[str, Any], name: str) -> bool:
    value = o.get(name)
    if not _given(value):
        return False
    if not isinstance(value, bool):
        raise _Invalid(f"{name} must be true or false, not {_show(value)}")
    return value


def _int(o: Mapping[str, Any], name: str, *, non_negative: bool = False) -> int | None:
    value = o.get(name)
    if not _given(value):
        return None
    return _as_int(name, value, non_negative=non_negative)


def _as_int(name: str, value: Any, *, non_negative: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{name} must be an integer, not {_show(value)}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise _Invalid(f"{name} must be an integer, not {_show(value)}")
        if abs(value) > INT64_MAX:
            raise _Invalid(f"{name} value ({_show(value)}) is too large")
        value = int(value)
    return _in_int64(name, value, _show(value), non_negative)


def _ranged(o: Mapping[str, Any], name: str, top: int, default: int) -> int:
    """override/priority/retries: the JSON value, else the query's, checked against 0..top."""
    raw = o.get(name)
    if not _given(raw):
        value, shown = default, str(default)
    elif (isinstance(raw, (int, float)) and not isinstance(raw, bool)
          and math.isfinite(raw) and raw == int(raw)):
        value, shown = int(raw), _show(raw)  # 2.0 is fine; 1e300 gets the range message
    else:
        raise _Invalid(f"{name} must be an integer, not {_show(raw)}")
    if not 0 <= value <= top:
        raise _Invalid(f"{name} value ({shown}) is not in the range 0..{top}")
    return value


def _cpus(o: Mapping[str, Any]) -> float | None:
    value = o.get("cpus")
    if not _given(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"cpus must be a number, not {_show(value)}")
    return _check_cpus(float(value), _show(value))


def _check_cpus(value: float, shown: str) -> float:
    if not math.isfinite(value) or value > MAX_CPUS:
        raise _Invalid(f"cpus value ({shown}) is too large (at most {MAX_CPUS})")
    if value < 0:
        raise _Invalid(f"cpus must not be negative (got {shown})")
    return value + 0.0  # -0.0 -> 0.0


def _duration(name: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise _Invalid(f"{name} value ({text}) was not specified correctly: {e}") from None
    return _not_negative(name, seconds, text)


def _not_negative(name: str, seconds: float, text: str) -> float:
    """A time or no_retry_over_walltime of ``seconds``, which must not be negative (issue
    13: ``time: "-1h"`` was stored as ExpectedTime -3600)."""
    if seconds < 0:
        raise _Invalid(f"{name} value ({text}) must not be negative")
    return seconds + 0.0  # -0s -> 0.0


def _check_cwd(cwd: str) -> str:
    """A cwd must be absolute: a relative one would be taken relative to wherever the
    runner happens to run (issue 13: ``../../etc`` ran a job in ``/etc/wr_cwd/...``)."""
    if not cwd.startswith("/"):
        raise _Invalid(f"cwd value ({cwd}) is not an absolute path: give one that starts "
                       f"with /")
    return cwd


def _check_limit_groups(groups: list[str]) -> list[str]:
    """Each ``limit_grps`` entry must be a name or ``name:N`` that can be stored (issue
    13); see `wr.jobs.check_limit_group`."""
    for group in groups:
        try:
            check_limit_group(group)
        except ValueError as e:
            raise _Invalid(str(e)) from None
    return groups


def _check_env(item: str) -> str:
    name, sep, _ = item.partition("=")
    if not sep or not name:
        raise _Invalid(f"env value ({item}) is not of the form NAME=VALUE")
    return _check_text("env", item)


# -- structured values --------------------------------------------------------------------

def _lowered(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in obj.items() if isinstance(k, str)}


def _behaviours(when: str, items: Any) -> list[dict[str, Any]]:
    """Type-check wr behaviour objects, then hand them to jobs.behaviours_from_json."""
    if not isinstance(items, list):
        raise _Invalid(f"{when} must be an array of behaviour objects, not {_show(items)}")
    for item in items:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise _Invalid(
                f'a behaviour in {when} must be an object like {{"cleanup":true}}, '
                f"not {_show(item)}"
            )
        for key, value in _lowered(item).items():
            wanted = _BEHAVIOUR_TYPES.get(key)
            if wanted is None or value is None:
                continue
            if wanted is list:
                ok = isinstance(value, list) and all(isinstance(p, str) for p in value)
            else:
                ok = isinstance(value, wanted)
            if not ok:
                kind = {str: "a string", bool: "true or false",
                        list: "an array of paths"}[wanted]
                raise _Invalid(f"behaviour {key} in {when} must be {kind}, not {_show(value)}")
            if isinstance(value, str):
                _check_text(f"behaviour {key} in {when}", value)
    return behaviours_from_json(when, items)


_MOUNT_FIELDS: tuple[tuple[str, type], ...] = (
    ("Mount", str), ("CacheBase", str), ("Retries", int), ("Verbose", bool),
)
_TARGET_FIELDS: tuple[tuple[str, type], ...] = (
    ("Profile", str), ("Path", str), ("CacheDir", str), ("Cache", bool), ("Write", bool),
)


def _mounts(items: Any) -> list[dict[str, Any]]:
    """Validate mount configs (as ``wr mount --mount_json`` takes) into canonical form.

    Keys come out in wr's spelling and order; zero values are left out except ``Targets``
    and ``Path``, which is also how status objects show them. Sorted by ``Mount``, as wr's key
    computation leaves them.
    """
    if not isinstance(items, list):
        raise _Invalid(f"mounts must be an array of mount configs, not {_show(items)}")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise _Invalid(f"a mount config must be an object, not {_show(item)}")
        given = _lowered(item)
        mount = _fields(given, _MOUNT_FIELDS, "mount config")
        targets = given.get("targets")
        if not isinstance(targets, list) or not targets:
            raise _Invalid(
                'a mount config needs "Targets", an array of at least one target like '
                f'{{"Path":"bucket/dir"}}, not {_show(targets)}'
            )
        mount["Targets"] = []
        for target in targets:
            if not isinstance(target, dict):
                raise _Invalid(f"a mount target must be an object, not {_show(target)}")
            t = _fields(_lowered(target), _TARGET_FIELDS, "mount target")
            if not t.get("Path"):
                raise _Invalid(f'a mount target needs a "Path": {_show(target)}')
            mount["Targets"].append(t)
        out.append(mount)
    out.sort(key=lambda m: m.get("Mount", ""))
    return out


def _fields(given: dict[str, Any], spec: tuple[tuple[str, type], ...], what: str
            ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in spec:
        value = given.get(name.lower())
        if not _given(value):
            continue
        if kind is int:
            value = _as_int(f"{what} {name}", value, non_negative=True)
        elif not isinstance(value, kind):
            wanted = "a string" if kind is str else "true or false"
            raise _Invalid(f"{what} {name} must be {wanted}, not {_show(value)}")
        elif kind is str:
            _check_text(f"{what} {name}", value)
        if value:
            out[name] = value
    return out


def _cmd_deps(items: Any) -> tuple[list[str], list[str]]:
    """Split wr's ``cmd_deps`` into (dep-group names, job keys of essence dependencies).

    An essence names a job by ``JobKey``, or by ``Cmd`` (+ ``Cwd``) (+ ``MountConfigs``),
    hashed the way wr hashes an essence (spec §4.2).
    """
    if not isinstance(items, list):
        raise _Invalid(f"cmd_deps must be an array of dependency objects, not {_show(items)}")
    groups: list[str] = []
    keys: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise _Invalid(f"a cmd_deps entry must be an object, not {_show(item)}")
        given = _lowered(item)
        essence = given.get("essence")
        if _given(essence) and essence != {}:
            if not isinstance(essence, dict):
                raise _Invalid(f"a cmd_deps Essence must be an object, not {_show(essence)}")
            e = _lowered(essence)
            job_key = _string(e, "jobkey")
            if job_key:
                keys.append(job_key)
                continue
            cmd = _string(e, "cmd")
            if not cmd:
                raise _Invalid(f"a cmd_deps Essence needs a JobKey or a Cmd: {_show(essence)}")
            cwd = _string(e, "cwd")
            mounts_raw = e.get("mountconfigs")
            mounts = _mounts(mounts_raw) if _given(mounts_raw) else []
            keys.append(compute_key(cmd, cwd=cwd, cwd_matters=bool(cwd), mounts=mounts))
            continue
        group = _string(given, "depgroup")
        if not group:
            raise _Invalid(
                f"a cmd_deps entry needs an Essence or a DepGroup: {_show(item)}"
            )
        groups.append(group)
    return groups, keys


# -- cloud scripts ------------------------------------------------------------------------

def _read_script(path: str, cache: dict[str, str]) -> str:
    """The content of a ``cloud_script`` file on this (the manager's) machine."""
    if path.startswith("~/"):
        path = os.path.expanduser("~") + path[1:]
    with contextlib.suppress(OSError, ValueError):  # getcwd() can fail if cwd was removed
        path = os.path.abspath(path)
    if path in cache:
        return cache[path]
    try:
        content = _read_small_text(path)
    except _Invalid as e:
        raise _Invalid(f"path [{path}] could not be read: {e}") from None
    cache[path] = content
    return content


def _read_small_text(path: str) -> str:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _Invalid("not a regular file")
        if info.st_size > MAX_CLOUD_SCRIPT_BYTES:
            raise _Invalid(f"larger than {MAX_CLOUD_SCRIPT_BYTES} bytes")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_CLOUD_SCRIPT_BYTES + 1)
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise _Invalid(f"open {path}: {reason}") from None
    except ValueError as e:  # unencodable path
        raise _Invalid(str(e)) from None
    if len(data) > MAX_CLOUD_SCRIPT_BYTES:
        raise _Invalid(f"larger than {MAX_CLOUD_SCRIPT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Invalid("not UTF-8 text") from None
