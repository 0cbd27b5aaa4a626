"""Turning a ``POST /rest/v1/jobs/`` request (JSON body + URL query) into `Job` records.

The body is a JSON array of job objects; the URL query gives defaults for every job in it
(spec/rest-and-queue.md §2.2). Conversion is all-or-nothing: the first bad job raises
`BadRequest` and no job is returned, so nothing is half-added.

Which keys a job object has, how each is read and merged, and which field it sets are the
table's (`wr.job_table`); the reading is split by concern (issue 14): the URL query
(`wr.job_query`), a job object's values (`wr.job_kinds`, `wr.job_values`,
`wr.job_structures`) and the shapes jobs share (`wr.job_shape`). This module takes a
request's jobs through them, a part at a time.

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

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

from wr.errors import BadRequest
from wr.job_body import JobObjects, parse_jobs_body
from wr.job_body import show_value as _show
from wr.job_query import JobDefaults, parse_query_defaults
from wr.job_shape import COMMON_KEYS, Request, Shape, alike, shape
from wr.job_values import Invalid, json_string, lowered
from wr.jobs import Job, default_req_grp, key_of
from wr.pacing import STEP, Pacer

__all__ = [
    "PART", "PROBLEM", "BadJobObject", "JobDefaults", "check_job_objects", "job_from_object",
    "job_parts_from_request", "jobs_from_request", "paced_job_parts", "parse_jobs_body",
    "parse_query_defaults",
]

PROBLEM = "there was a problem interpreting your job: "
"""wr's prefix for every per-job conversion error."""
PART = 10_000
"""Jobs converted at a time by `job_parts_from_request`."""


# -- a request ----------------------------------------------------------------------------

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
    return _parts(objects, Seen(defaults, now), size), rerun


def _parts(objects: list[dict[str, Any]], seen: Seen, size: int) -> Iterator[list[Job]]:
    for start in range(0, len(objects), size):
        yield [_job(obj, seen) for obj in objects[start:start + size]]


def paced_job_parts(
    body: bytes, query: Mapping[str, str], *, now: float, pacer: Pacer, size: int = PART
) -> tuple[AsyncIterator[list[Job]], bool]:
    """`job_parts_from_request` on the event loop, sharing it (issue 13): the body is
    parsed a piece at a time (`wr.job_body`), its jobs converted ``STEP`` at a time with
    ``pacer`` giving the loop back between, and each piece's dicts dropped once converted.
    The query is checked now, the body as the parts are taken; errors, and which of two
    comes first, are those of `job_parts_from_request`."""
    defaults, rerun = parse_query_defaults(query)
    return _paced_parts(JobObjects(body), Seen(defaults, now), pacer, size), rerun


async def _paced_parts(objects: JobObjects, seen: Seen, pacer: Pacer,
                       size: int) -> AsyncIterator[list[Job]]:
    part: list[Job] = []
    for piece in objects.pieces():
        for start in range(0, len(piece), STEP):
            try:
                part.extend([_job(obj, seen) for obj in piece[start:start + STEP]])
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


def check_job_objects(objects: Sequence[Mapping[str, Any]], defaults: Any,
                      indices: Iterable[int]) -> None:
    """Validate the job objects at ``indices`` as a POST with these defaults would, sharing
    the work a request shares; the first bad one raises `BadJobObject` naming its index."""
    seen = Seen(defaults, 0.0)
    for i in indices:
        try:
            _job(objects[i], seen)
        except BadRequest as e:
            raise BadJobObject(i, e.message) from None


class BadJobObject(BadRequest):
    """A job object failed `check_job_objects`; ``index`` says which."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def job_from_object(obj: Mapping[str, Any], defaults: Any, *, now: float = 0.0) -> Job:
    """Merge one JSON job object with the query defaults (a `JobDefaults`) and validate it
    (§2.2.2-2.2.3).

    Raises BadRequest ``there was a problem interpreting your job: <reason>``.
    """
    return _job(obj, Seen(defaults, now))


class Seen:
    """What one request has already worked out, because its jobs mostly look alike: what
    they share (`wr.job_shape.Request`), parsed memory and time texts, cloud scripts read,
    the last shape, and each command's default req_grp."""

    __slots__ = ("request", "memory", "seconds", "scripts", "req_grps", "shape")

    def __init__(self, defaults: Any, now: float) -> None:
        self.request = Request(defaults, now)
        self.memory: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.scripts: dict[str, str] = {}
        self.req_grps: dict[str, str] = {}
        self.shape: Shape | None = None

    def req_grp(self, cmd: str) -> str:
        """wr's default req_grp of a command, shared by every command with the same first
        word."""
        first = cmd.partition(" ")[0]
        found = self.req_grps.get(first)
        if found is None:
            found = self.req_grps[first] = self.request.name(default_req_grp(cmd))
        return found


# -- one job ------------------------------------------------------------------------------

def _job(obj: Mapping[str, Any], seen: Seen) -> Job:
    if not isinstance(obj, Mapping):
        raise BadRequest(PROBLEM + f"a job must be a JSON object, not {_show(obj)}")
    try:
        return _convert(obj, seen)
    except Invalid as e:
        raise BadRequest(PROBLEM + str(e)) from None


def _convert(obj: Mapping[str, Any], seen: Seen) -> Job:
    o = obj if obj.keys() <= COMMON_KEYS else lowered(obj)
    cmd = json_string(o, "cmd")
    if not cmd:
        raise Invalid("cmd was not specified")
    found = seen.shape
    if found is None or o is not obj or not alike(o, found.given):
        found = shape(o, seen.request, seen)
        if o is obj:
            seen.shape = found
    job = Job(key_of(cmd, found.key_prefix, found.key_suffix), cmd, *found.head,
              found.req_grp or seen.req_grp(cmd), *found.tail)
    if found.part is not None:  # (a shape used again holds a shared part, or none)
        job.adopt_rare(found.part)
    return job
