"""What a job object decides besides its command: its `Shape`, read by the table.

Reading a job object is two steps, both driven by `wr.job_table`:

1. every key's value is read and merged with the URL query's default (`wr.job_kinds`),
   giving a `Merged`: values by key name;
2. every field's value is taken from those (`Field.take`, or its one key's value, or its
   default), giving the job's hot values and its part of rare requests.

The jobs of one request mostly differ only in their command, so a job that gives what the
one before it gave takes its shape instead of reading every key again (`alike`): a third of
the time a 100,000-job POST took to read. A job with none of the rarely used keys
(`Key.common`) has its rare values from the query alone, worked out once per request, and
shares its part of rare requests with every such job.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wr.container_options import parse_container_mounts
from wr.job_fields import Rare, compact_rare
from wr.job_kinds import NOT_GIVEN, Reader, reader
from wr.job_table import FIELDS, KEY_FIELD, KEYS, Field, Key, Kind, Part
from wr.job_values import Invalid, given
from wr.jobs import key_affixes

COMMON_KEYS = frozenset(k.name for k in KEYS if k.common)
"""The keys most jobs use; a job with keys beyond these takes the full (slower) reading,
and one without shares a reading of the query defaults."""
_OTHER_KEYS = tuple((k.name, k.other) for k in KEYS if k.other)


class Merged(dict):  # type: ignore[type-arg]
    """A job object's keys' values merged with the query's defaults, by key name: what the
    table's `Field.take` functions read."""

    __slots__ = ("obj", "now")

    def __init__(self, obj: Mapping[str, Any], now: float) -> None:
        super().__init__()
        self.obj = obj
        self.now = now
        """When the job is added."""

    def from_job(self, name: str) -> Any:
        """The value of ``name`` only if the job object gave it (else ``[]``): ``deps``
        after ``cmd_deps`` are the job's own, never the query's (§2.2.3)."""
        return self[name] if given(self.obj.get(name)) else []

    def other_requests(self) -> dict[str, str]:
        """The ``other`` requests the keys with a `wr.job_table.Key.other` entry give, as
        text (``true`` for a flag); a key not given leaves its entry out."""
        other = {}
        for name, entry in _OTHER_KEYS:
            value = self[name]
            if value is None or value == "" or value is False:
                continue
            other[entry] = "true" if value is True else str(value)
        return other


def _take(field: Field) -> Callable[[Merged], Any]:
    """How ``field``'s value comes from a `Merged`."""
    if field.take is not None:
        return field.take
    default = field.default
    if not field.keys:  # internal: the queue, store or runner set it later
        return lambda v: default
    (key,) = field.keys  # (a field with several keys has a take: the table says how)
    if key.kind is Kind.COUNT:  # None: not given
        name = key.name
        return lambda v: default if v[name] is None else v[name]
    return operator.itemgetter(key.name)


_HOT = [f for f in FIELDS if f.part is Part.HOT][2:]  # after key and cmd, which each job gives
_HOT_TAKES = tuple(_take(f) for f in _HOT)
_RARE_TAKES = tuple(_take(f) for f in FIELDS if f.part is Part.RARE)
_REQ_GRP_AT = [f.name for f in _HOT].index("req_grp")
_NAMES_AT = tuple(i for i, f in enumerate(_HOT) if f.name in ("cwd", "rep_grp", "req_grp"))
"""Names one shared copy of which serves every job (`Seen.name`)."""
_TUPLES_AT = tuple(i for i, f in enumerate(_HOT) if isinstance(f.default, tuple))


@dataclass(slots=True)
class Shape:
    """Everything a job object decides besides its command (its key, and a default
    req_grp, come from that): ``Job(key, cmd, *head, req_grp, *tail)`` with ``part``."""

    given: dict[str, Any]
    """The job object without its ``cmd``, to recognise the next one that is `alike`."""
    head: tuple[Any, ...]
    req_grp: str
    """Given or defaulted by the query; empty: the command's first word."""
    tail: tuple[Any, ...]
    key_prefix: str
    key_suffix: str
    part: Rare | None
    """The rarely used requests as the job keeps them: shared by every job of the shape
    when only the query gives them, else the job's own (its shape is not used again)."""


def alike(o: Mapping[str, Any], given_before: Mapping[str, Any]) -> bool:
    """Whether a job object gives what ``given_before`` (the last one, without its ``cmd``)
    gave: the same keys, with values of the same types and equal (JSON's 1, 1.0 and true
    differ). The list values of these keys were read as lists of strings, to which only
    lists of the same strings are equal."""
    if len(o) != len(given_before) + 1:
        return False
    for name, value in o.items():
        if name != "cmd":
            was = given_before.get(name, Invalid)
            if type(value) is not type(was) or value != was:
                return False
    return True


class Readers:
    """The readers of one request's keys, each with the query's default for it."""

    __slots__ = ("common", "rare", "all", "rare_values", "parts")

    def __init__(self, defaults: Any) -> None:
        bound = [(k.name, reader(k, _builtin_default(k)),
                  getattr(defaults, k.name, NOT_GIVEN[k.kind]))  # (keys with no query form)
                 for k in KEYS if k.name != "cmd"]
        self.common: list[tuple[str, Reader, Any]] = [b for b in bound if b[0] in COMMON_KEYS]
        self.rare = [b for b in bound if b[0] not in COMMON_KEYS]
        self.all = bound
        self.rare_values: dict[str, Any] | None = None
        """The rare keys' values of a job that gives none of them: the query's."""
        self.parts: dict[bytes, Rare] = {}
        """One part of rare requests for all jobs with the same values and no rare keys."""


def _builtin_default(key: Key) -> Any:
    """What a key's value is when neither the job nor the query gives it: its field's
    default (cwd ``/tmp``), unless the field has several keys (then the kind's zero)."""
    field = KEY_FIELD[key.name]
    return field.default if len(field.keys) == 1 else NOT_GIVEN[key.kind]


def shape(o: Mapping[str, Any], readers: Readers, seen: Any, now: float) -> Shape:
    """Read a job object (keys in lower case) into its shape; raises `Invalid`."""
    common = not o.keys() - COMMON_KEYS
    v = Merged(o, now)
    if common:  # none of the rare keys: the query's values, as for every such job
        if readers.rare_values is None:
            readers.rare_values = _read({}, readers.rare, seen, Merged({}, now))
        v.update(readers.rare_values)
        _read(o, readers.common, seen, v)
    else:
        _read(o, readers.all, seen, v)
    if v["container_mounts"] or (v["with_docker"] and v["with_singularity"]):
        _check_containers(v)
    hot = [take(v) for take in _HOT_TAKES]
    for i in _NAMES_AT:
        hot[i] = seen.name(hot[i])
    for i in _TUPLES_AT:
        hot[i] = tuple(hot[i])
    rare = tuple(take(v) for take in _RARE_TAKES)
    part = Rare(*rare) if any(rare) else None
    if common and part is not None:
        part = _shared(readers.parts, part)
    prefix, suffix = key_affixes(
        cwd=v["cwd"], cwd_matters=v["cwd_matters"], mounts=v["mounts"],
        with_docker=v["with_docker"], with_singularity=v["with_singularity"],
        container_mounts=v["container_mounts"])
    return Shape(given={k: x for k, x in o.items() if k != "cmd"},
                 head=tuple(hot[:_REQ_GRP_AT]), req_grp=hot[_REQ_GRP_AT],
                 tail=tuple(hot[_REQ_GRP_AT + 1:]), key_prefix=prefix, key_suffix=suffix,
                 part=part)


def _read(o: Mapping[str, Any], readers: list[tuple[str, Reader, Any]], seen: Any,
          into: Merged) -> Merged:
    for name, read, query_default in readers:
        into[name] = read(o, query_default, seen)
    return into


def _shared(parts: dict[bytes, Rare], part: Rare) -> Rare:
    """Jobs with none of the rare keys share one part per request (and per value of the
    few common keys kept in it), not one part each."""
    found = parts.get(seen_key := orjson.dumps(tuple(
        getattr(part, name) for name in Rare.__slots__[:-2])))
    if found is None:
        found = parts[seen_key] = compact_rare(part)
        found.shared = True  # by this request's jobs, if by no others
    return found


def _check_containers(v: Merged) -> None:
    """Refuse container options that could never run as asked (issue 15; wr let docker
    win silently when both images were given)."""
    if v["with_docker"] and v["with_singularity"]:
        raise Invalid(f"with_docker ({v['with_docker']}) and with_singularity "
                      f"({v['with_singularity']}) are mutually exclusive: give one image")
    try:
        parse_container_mounts(v["container_mounts"])
    except ValueError as e:
        raise Invalid(str(e)) from None
