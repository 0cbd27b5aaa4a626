"""Turning jobs into the status objects the REST API returns, and filtering and grouping them.

A status object carries every property of the seed page's table plus the ones wr's code also
emits, in the seed's order (spec/rest-and-queue.md §3, DESIGN.md "Compatibility decisions"):
unset ``Started``/``Ended`` are ``-62135596800``; empty lists and an empty ``OtherRequests``
are ``null``; integral numbers are emitted as ints (``ExpectedTime`` 5, not 5.0).

Deliberate differences from wr (listed in docs/compatibility.md):

* An unknown ``state`` filter is a 400 (``unknown state "x"; use one of ...``); wr ignores it.
* ``deletable`` means delayed, ready, buried or dependent, as the seed says; wr's filter also
  lets reserved, running and lost jobs through.
* ``limit`` groups come out in order of first appearance, and ``Env`` overrides are appended
  in the order given; wr's orders are random.
* ``Walltime`` of a job that is not running and has no end time is 0 (wr lets it grow), and it
  is never negative.
* ``OtherRequests`` is sorted by key.
* A bad ``limit`` says ``limit value (x) is not an integer``, not Go's ``strconv.Atoi`` text.
"""

from __future__ import annotations

import operator
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from wr.errors import BadRequest
from wr.job_table import FIELDS, STATUS_ORDER, Part
from wr.jobs import NO_RARE, NOT_RUN, UNSET_TIME, Job, behaviours_to_text, compiled

STATE_FILTERS = (
    "delayed", "ready", "reserved", "running", "lost", "buried", "dependent", "complete",
    "deletable",
)
"""The values GET's ``state`` parameter takes."""

_DELETABLE = frozenset({"delayed", "ready", "buried", "dependent"})
_RUN_STATES = frozenset({"reserved", "running", "lost"})
_SAFE_INT = 2**53
_INT = re.compile(r"[+-]?[0-9]+")
_dumps = orjson.dumps


# -- the status object --------------------------------------------------------------------

def job_status(
    job: Job,
    *,
    now: float,
    std: tuple[str, str] | None = None,
    env: list[str] | None = None,
    similar: int = 0,
    rep_grp: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    """The status object of one job, keys in the seed's order.

    ``std`` is ``(stdout, stderr)`` when the caller fetched them; ``env`` the full environment
    (see `display_env`) when ``env=true`` was asked for. ``rep_grp`` reports the job under the
    rep group it was found by, ``state`` overrides its state (``deleted`` in DELETE answers).
    """
    rare, ran = job.rare, job.results
    if (ran is NOT_RUN and std is None and env is None and not similar and state is None
            and (template := _unrun_template(job, rep_grp, rare)) is not None):
        out = template.status.copy()
        out["Key"] = job.key
        out["Cmd"] = job.cmd
        return out
    return _status(job, now, std, env, similar, rep_grp, state, rare, ran)


def status_bytes(
    job: Job,
    *,
    now: float,
    std: tuple[str, str] | None = None,
    env: list[str] | None = None,
    similar: int = 0,
    rep_grp: str | None = None,
    state: str | None = None,
) -> bytes:
    """``orjson.dumps(job_status(...))``, the same bytes, made faster for a job that never
    ran: its template's encoding with its key and command spliced in, no dict made."""
    if (job.results is NOT_RUN and std is None and env is None and not similar
            and state is None
            and (template := _unrun_template(job, rep_grp, job.rare)) is not None):
        start, middle, end = template.pieces()
        return b"".join((start, _dumps(job.key), middle, _dumps(job.cmd), end))
    return _dumps(job_status(job, now=now, std=std, env=env, similar=similar,
                             rep_grp=rep_grp, state=state))


def encode_statuses(jobs: Iterable[Job], now: float) -> bytes:
    """`encode` of the jobs' status objects as a JSON array (what a POST of jobs answers).

    Those of jobs that never ran are put together from encoded templates, their key and
    command spliced in: the answer to a 100,000-job POST (67 MB) took 0.28 s as dicts,
    most of it allocating 100,000 copies of a template."""
    return json_array([status_bytes(job, now=now) for job in jobs])


def json_array(items: list[bytes]) -> bytes:
    """Encoded JSON values as `encode` would write the list of them: ``[a,b]`` and a
    newline."""
    if not items:
        return b"[]\n"
    items[0] = b"[" + items[0]  # not b"[" + ... + b"]": each + copies it all again
    items[-1] += b"]\n"
    return b",".join(items)


class _Template:
    """The status object of queued jobs that never ran, but for key and command."""

    __slots__ = ("status", "_pieces")

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self._pieces: tuple[bytes, bytes, bytes] | None = None

    def pieces(self) -> tuple[bytes, bytes, bytes]:
        """The object encoded, in three pieces around the key and the command."""
        if self._pieces is None:
            text = orjson.dumps({**self.status, "Key": _KEY, "Cmd": _CMD})
            start, rest = text.split(orjson.dumps(_KEY))
            middle, end = rest.split(orjson.dumps(_CMD))
            self._pieces = (start, middle, end)
        return self._pieces


_TEMPLATES: dict[tuple[Any, ...], _Template] = {}
"""Templates by everything a never-run job's status object shows but key and command
(and, for jobs sharing one, their part of rare requests): a 100,000-job add answers with
100,000 copies of a handful."""
_KEY, _CMD = "\x00wr key\x00", "\x00wr cmd\x00"  # no key or command holds a NUL
_UNRUN_SHOWN = operator.attrgetter(*(
    f.name for f in FIELDS
    if f.part is Part.HOT and f.shown is not None and f.name not in ("key", "cmd", "rep_grp")))
"""The hot fields a status object shows, but for key, command and rep group (which the
caller may override): with its rep group and its part of rare requests, what a template
stands for."""


def _unrun_template(job: Job, rep_grp: str | None, rare: Any) -> _Template | None:
    """The template of a job that never ran, or None if it is not worth one (its rare
    requests are its own)."""
    if rare is not NO_RARE and not rare.shared:
        return None
    shown = (job.rep_grp if rep_grp is None else rep_grp, _UNRUN_SHOWN(job), rare)
    try:
        template = _TEMPLATES.get(shown)
    except TypeError:  # lists, in a job not yet compacted
        return None
    if template is None:
        if len(_TEMPLATES) >= 10_000:
            _TEMPLATES.clear()
        template = _TEMPLATES[shown] = _Template(
            _status(job, 0.0, None, None, 0, rep_grp, None, rare, NOT_RUN))
    return template


_CONVERSIONS = {
    "": "{v}",
    "number": "_number({v})",
    "unix": "_unix({v})",
    "list_or_null": "list({v}) or None",
    "limit_groups": "(job.effective_limit_groups() or None) if {v} else None",
    "dependencies": "[*{v}, *rare.cmd_deps] or None",
    "behaviours": "behaviours_to_text({v})",
    "mounts": "mounts_to_text({v})",
    "other": 'sorted(f"{{k}}:{{x}}" for k, x in {v}.items()) or None',
    "state": "{v}.value if state is None else state",
    "rep_grp": "{v} if rep_grp is None else rep_grp",
    "display_cwd": "display_cwd(job)",
}
"""How a `wr.job_table.Shown` conversion shows a field's value ``{v}``."""
_EXTRAS = {
    "Walltime": "_number(walltime(job, now))",
    "StdErr": 'std[1] if std is not None else ""',
    "StdOut": 'std[0] if std is not None else ""',
    "Env": "env",
    "Similar": "similar",
    "IsPushUpdate": "False",
}
"""The properties of `wr.job_table.STATUS_EXTRAS`, which no one field gives."""


def _write_status() -> str:
    """The source of `_status`, written from the table: one line per property of
    `STATUS_ORDER`, from the field that shows it (`wr.job_table.Shown`) or `_EXTRAS`. A
    dict display is a third of the time of filling a dict in a loop, and the status objects
    of a million jobs are made for one GET. Print ``wr.status.STATUS_SOURCE`` to read it."""
    holder = {Part.HOT: "job", Part.RARE: "rare", Part.RAN: "ran"}
    shown = {f.shown.name: _CONVERSIONS[f.shown.convert].format(v=f"{holder[f.part]}.{f.name}")
             for f in FIELDS if f.shown is not None}
    lines = ["def _status(job, now, std, env, similar, rep_grp, state, rare, ran):",
             "    return {"]
    lines += [f'        "{name}": {shown.get(name) or _EXTRAS[name]},' for name in STATUS_ORDER]
    lines.append("    }")
    return "\n".join(lines) + "\n"


STATUS_SOURCE = _write_status()
"""`_status` as `_write_status` writes it."""


def _make_status() -> Callable[..., dict[str, Any]]:
    made: Callable[..., dict[str, Any]] = compiled(STATUS_SOURCE, "<wr.status._status>", {
        "_number": _number, "_unix": _unix, "walltime": walltime, "display_cwd": display_cwd,
        "mounts_to_text": mounts_to_text, "behaviours_to_text": behaviours_to_text})
    made.__doc__ = ("The status object of a job, given its parts (``rare``, ``ran``): "
                    "see `job_status`.")
    return made


def _number(value: float) -> float | int:
    """Integral floats as ints, so 5.0 is emitted as ``5`` (as Go prints float64s)."""
    if value.is_integer() and -_SAFE_INT < value < _SAFE_INT:
        return int(value)
    return value


def _unix(when: float | None) -> int:
    return UNSET_TIME if when is None else int(when // 1)


def walltime(job: Job, now: float) -> float:
    """Seconds the job ran (§3.5): 0 if never started, still counting while it is held by a
    runner and has not ended, else end minus start."""
    if job.started is None:
        return 0.0
    if job.ended is None:
        if str(job.state) in _RUN_STATES:
            return max(0.0, now - job.started)
        return 0.0
    return max(0.0, job.ended - job.started)


def display_cwd(job: Job) -> str:
    """``""``, or ``"/"`` + the actual working directory relative to the job's cwd
    (``/wr_cwd/5/8/c/ef10...052/cwd``); always ``""`` for cwd_matters jobs."""
    if not job.actual_cwd or job.cwd_matters:
        return ""
    base = posixpath.normpath(job.cwd).rstrip("/")
    actual = posixpath.normpath(job.actual_cwd)
    if actual.startswith(base + "/"):
        return "/" + actual[len(base) + 1:]
    if posixpath.isabs(base or "/") and posixpath.isabs(actual):
        return "/" + posixpath.relpath(actual, base or "/")
    return actual


def mounts_to_text(mounts: list[dict[str, Any]]) -> str:
    """Mount configs as the compact JSON string status objects show (``""`` if none).

    Zero values are left out except ``Targets`` and ``Path``; ``<``, ``>`` and ``&`` are
    escaped as Go's ``json.Marshal`` does.
    """
    if not mounts:
        return ""
    shown = []
    for m in mounts:
        out = {k: m[k] for k in ("Mount", "CacheBase", "Retries", "Verbose") if m.get(k)}
        out["Targets"] = [
            {k: t.get(k) or "" for k in ("Profile", "Path", "CacheDir", "Cache", "Write")
             if t.get(k) or k == "Path"}
            for t in m.get("Targets") or []
        ]
        shown.append(out)
    text = orjson.dumps(shown).decode()
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def display_env(job: Job, base: Mapping[str, str]) -> list[str]:
    """The environment a job runs with, as ``NAME=VALUE`` strings (§4.12).

    REST-added jobs have no stored base environment, so, as in wr, the caller passes the
    manager's own; each override replaces a variable of its name in place or is appended.
    """
    env = [f"{name}={value}" for name, value in base.items()]
    where = {name: i for i, name in enumerate(base)}
    for item in job.env:
        name = item.split("=", 1)[0]
        i = where.get(name)
        if i is None:
            where[name] = len(env)
            env.append(item)
        else:
            env[i] = item
    return env


_status = _make_status()


# -- filtering and grouping ---------------------------------------------------------------

def _normalise(state: str) -> str:
    state = str(state)
    return "reserved" if state == "running" else state


def parse_state_filter(value: str | None) -> str | None:
    """Check GET's ``state`` parameter: None/"" means no filter, else one of STATE_FILTERS."""
    if not value:
        return None
    if value not in STATE_FILTERS:
        raise BadRequest(f'unknown state "{value}"; use one of {"|".join(STATE_FILTERS)}')
    return value


def matches_state(job_state: str, wanted: str) -> bool:
    """Whether a job in ``job_state`` passes the ``state=wanted`` filter (§2.1.4).

    ``running`` and ``reserved`` are the same filter (both match reserved and running jobs);
    ``deletable`` matches delayed, ready, buried and dependent jobs. An unknown ``wanted`` is
    a BadRequest.
    """
    if wanted == "deletable":
        return str(job_state) in _DELETABLE
    if wanted not in STATE_FILTERS:
        parse_state_filter(wanted)
    return _normalise(job_state) == _normalise(wanted)


def parse_limit(value: str | None) -> int:
    """GET's ``limit`` parameter: "" means 0 (no grouping); negative counts as 0."""
    if not value:
        return 0
    if not _INT.fullmatch(value):
        raise BadRequest(f"limit value ({value}) is not an integer")
    return max(0, int(value))


def group_similar(jobs: Sequence[Job], limit: int) -> list[tuple[Job, int]]:
    """Keep the first ``limit`` jobs of each (state, exit code, fail reason) group (§2.1.5).

    Each further job of a group adds one to the ``Similar`` count of the last kept job of its
    group. Groups come out in order of first appearance, jobs within them in input order.
    With ``limit <= 0`` every job is kept with a count of 0.
    """
    if limit <= 0:
        return [(job, 0) for job in jobs]
    groups = SimilarGroups(limit)
    groups.add(jobs)
    return groups.result()


class SimilarGroups:
    """`group_similar` fed a slice of jobs at a time (a million jobs are grouped with the
    event loop given back between slices)."""

    __slots__ = ("_limit", "_groups")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._groups: dict[tuple[str, int, str], list[list[Any]]] = {}

    def add(self, jobs: Iterable[Job]) -> None:
        groups, limit = self._groups, self._limit
        for job in jobs:
            kept = groups.setdefault((_normalise(job.state), job.exitcode, job.fail_reason), [])
            if len(kept) < limit:
                kept.append([job, 0])
            else:
                kept[-1][1] += 1

    def result(self) -> list[tuple[Job, int]]:
        return [(job, similar) for kept in self._groups.values() for job, similar in kept]


def encode(value: Any) -> bytes:
    """JSON bytes for a response body: compact, no HTML escaping, ending in a newline."""
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)

