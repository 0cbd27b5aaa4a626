"""What a job object decides besides its command: its `Shape`, read by the table.

Reading a job object is two steps, both driven by `wr.job_table`:

1. every key's value is read and merged with the URL query's default (`wr.job_kinds`),
   giving a `Merged`: values by key name;
2. every field's value is taken from those (`Field.take`, or its one key's value, or its
   default), giving the job's hot values and its part of rare requests.

Most of that is the same for every job of a request, so it is done once (`Request`): the
values of keys a job does not give are the query's (`Request.base`), and so are the
fields that use none of the keys a job gives (`Plan`, one per set of keys, usually one per
request). And the jobs of one request mostly differ only in their command, so a job that
gives what the one before it gave takes its shape instead of reading it again (`alike`):
a third of the time a 100,000-job POST took to read.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wr.container_options import parse_container_mounts
from wr.job_fields import Rare, compact_rare, get_rare
from wr.job_kinds import NOT_GIVEN, Reader, reader
from wr.job_structures import read_script
from wr.job_table import FIELDS, KEY_FIELD, KEYS, Field, Key, Kind, Part
from wr.job_values import Invalid, given
from wr.jobs import key_affixes

COMMON_KEYS = frozenset(k.name for k in KEYS if k.common)
"""The keys most jobs use: a job that gives only these shares its part of rare requests
with the request's other such jobs, and needs no lower-casing of its keys."""
_OTHER_KEYS = tuple((k.name, k.other, k.kind is Kind.SCRIPT) for k in KEYS if k.other)
_KEY_AFFIXES = frozenset(("cwd", "cwd_matters", "mounts", "with_docker", "with_singularity",
                          "container_mounts"))
"""The keys a job's key depends on, besides its command."""
_ORDER = {k.name: i for i, k in enumerate(KEYS)}


class Merged(dict):  # type: ignore[type-arg]
    """A job object's keys' values merged with the query's defaults, by key name: what the
    table's `Field.take` functions read."""

    __slots__ = ("obj", "now", "scripts")

    def __init__(self, values: Mapping[str, Any], obj: Mapping[str, Any], now: float,
                 scripts: dict[str, str]) -> None:
        super().__init__(values)
        self.obj = obj
        self.now = now
        """When the job is added."""
        self.scripts = scripts
        """The request's cloud scripts read, by path."""

    def from_job(self, name: str) -> Any:
        """The value of ``name`` only if the job object gave it (else ``[]``): ``deps``
        after ``cmd_deps`` are the job's own, never the query's (§2.2.3)."""
        return self[name] if given(self.obj.get(name)) else []

    def other_requests(self) -> dict[str, str]:
        """The ``other`` requests the keys with a `wr.job_table.Key.other` entry give, as
        text (``true`` for a flag, a script's content); a key not given leaves its entry
        out."""
        other = {}
        for name, entry, script in _OTHER_KEYS:
            value = self[name]
            if value is None or value == "" or value is False:
                continue
            if script:
                value = read_script(value, self.scripts)
            other[entry] = "true" if value is True else str(value)
        return other


def _take(field: Field) -> Callable[[Merged], Any]:
    """How ``field``'s value comes from a `Merged`."""
    if callable(field.take):
        return field.take
    default = field.default
    if isinstance(field.take, str):
        return operator.itemgetter(field.take)
    if not field.keys:  # internal: the queue, store or runner set it later
        return lambda v: default
    (key,) = field.keys  # (a field with several keys has a take: the table says how)
    if key.kind is Kind.COUNT:  # None: not given
        name = key.name
        return lambda v: default if v[name] is None else v[name]
    return operator.itemgetter(key.name)


def _uses(field: Field) -> frozenset[str] | None:
    """The keys a field's value depends on (None: any)."""
    if isinstance(field.take, str):
        return frozenset((field.take,))
    if callable(field.take):
        return None if field.uses is None else frozenset(field.uses)
    return frozenset(k.name for k in field.keys)


_HOT = [f for f in FIELDS if f.part is Part.HOT][2:]  # after key and cmd, which each job gives
_RARE = [f for f in FIELDS if f.part is Part.RARE]
_HOT_TAKES = tuple((_take(f), _uses(f)) for f in _HOT)
_RARE_TAKES = tuple((_take(f), _uses(f)) for f in _RARE)
_REQ_GRP_AT = [f.name for f in _HOT].index("req_grp")
_NAMES_AT = frozenset(i for i, f in enumerate(_HOT) if f.name in ("cwd", "rep_grp", "req_grp"))
"""Names one shared copy of which serves every job (`Request.name`)."""
_TUPLES_AT = frozenset(i for i, f in enumerate(_HOT) if isinstance(f.default, tuple))


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
    """The rarely used requests as the job keeps them: shared by every job of the request
    with the same ones when only common keys were given, else the job's own."""


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


@dataclass(slots=True)
class Plan:
    """How to read the jobs of a request that give one set of keys."""

    readers: tuple[tuple[str, Reader, Any], ...]
    """The readers of the keys given, in table order, each with the query's default."""
    hot: tuple[tuple[int, Callable[[Merged], Any]], ...]
    """The hot fields that depend on the keys given (the others are the request's)."""
    rare: tuple[tuple[int, Callable[[Merged], Any]], ...]
    common: bool
    """Only common keys given: the job's part of rare requests is shared."""
    affixes: tuple[str, str] | None
    """The key's affixes when none of the keys they depend on is given."""


class Request:
    """What one request's jobs share: the query's defaults bound to the keys' readers,
    the values of a job that gives no key (`base`), and a `Plan` per set of keys."""

    __slots__ = ("now", "readers", "base", "failed", "hot", "rare", "part", "affixes",
                 "unsure_hot", "unsure_rare", "parts", "plans", "names")

    def __init__(self, defaults: Any, now: float) -> None:
        self.now = now
        self.readers = {k.name: (reader(k, _builtin_default(k)),
                                 getattr(defaults, k.name, NOT_GIVEN[k.kind]))
                        for k in KEYS if k.name != "cmd"}
        self.base: dict[str, Any] | None = None
        """The values of the keys of a job object that gives none: the query's."""
        self.failed: dict[str, Invalid] = {}
        """Keys whose query default is refused (a priority of 300): every job that does
        not give them fails, as in wr."""
        self.hot: list[Any] = []
        """The hot fields of a job that gives no key."""
        self.rare: list[Any] = []
        self.part: Rare | None = None
        self.affixes = ("", "")
        self.unsure_hot: set[int] = set()
        self.unsure_rare: set[int] = set()
        self.parts: dict[bytes, Rare] = {}
        self.plans: dict[frozenset[str], Plan] = {}
        self.names: dict[str, str] = {}

    def name(self, text: str) -> str:
        return self.names.setdefault(text, text)

    def start(self, seen: Any) -> None:
        """Work out the values of a job that gives no key, once."""
        base = {}
        for name, (read, query_default) in self.readers.items():
            try:
                base[name] = read({}, query_default, seen)
            except Invalid as e:
                base[name] = query_default
                self.failed[name] = e
        self.base = base
        v = Merged(base, {}, self.now, seen.scripts)
        self.hot = self._fields(_HOT_TAKES, v, self.unsure_hot)
        for i in _NAMES_AT:
            self.hot[i] = self.name(self.hot[i])
        for i in _TUPLES_AT:
            self.hot[i] = tuple(self.hot[i])
        self.rare = self._fields(_RARE_TAKES, v, self.unsure_rare)
        if not self.unsure_rare:
            self.part = _shared(self.parts, self.rare) if any(self.rare) else None
        self.affixes = _affixes(v)

    @staticmethod
    def _fields(takes: tuple[tuple[Callable[[Merged], Any], Any], ...], v: Merged,
                unsure: set[int]) -> list[Any]:
        """The fields of a job that gives no key; one that fails that way (the query's
        cloud script cannot be read) is worked out for each job, which may give its own."""
        values = []
        for i, (take, _) in enumerate(takes):
            try:
                values.append(take(v))
            except Invalid:
                values.append(None)
                unsure.add(i)
        return values

    def plan(self, keys: Iterable[str]) -> Plan:
        given_keys = frozenset(keys)
        found = self.plans.get(given_keys)
        if found is None:
            found = self.plans[given_keys] = self._plan(given_keys)
        return found

    def _plan(self, keys: frozenset[str]) -> Plan:
        readers = tuple((name, *self.readers[name])
                        for name in sorted(keys & self.readers.keys(), key=_ORDER.__getitem__))
        return Plan(
            readers=readers,
            hot=tuple((i, take) for i, (take, uses) in enumerate(_HOT_TAKES)
                      if uses is None or uses & keys or i in self.unsure_hot),
            rare=tuple((i, take) for i, (take, uses) in enumerate(_RARE_TAKES)
                       if uses is None or uses & keys or i in self.unsure_rare),
            common=keys <= COMMON_KEYS,
            affixes=None if keys & _KEY_AFFIXES else self.affixes)


def _builtin_default(key: Key) -> Any:
    """What a key's value is when neither the job nor the query gives it: its field's
    default (cwd ``/tmp``), unless the field has several keys (then the kind's zero)."""
    field = KEY_FIELD[key.name]
    return field.default if len(field.keys) == 1 else NOT_GIVEN[key.kind]


def shape(o: Mapping[str, Any], request: Request, seen: Any) -> Shape:
    """Read a job object (keys in lower case) into its shape; raises `Invalid`."""
    if request.base is None:
        request.start(seen)
    plan = request.plan(o.keys())
    if request.failed:
        for name, problem in request.failed.items():
            if name not in o:
                raise problem
    v = Merged(request.base, o, request.now, seen.scripts)  # type: ignore[arg-type]
    for name, read, query_default in plan.readers:
        v[name] = read(o, query_default, seen)
    if v["container_mounts"] or (v["with_docker"] and v["with_singularity"]):
        _check_containers(v)
    hot = request.hot.copy()
    for i, take in plan.hot:
        value = take(v)
        if i in _NAMES_AT:
            value = request.name(value)
        elif i in _TUPLES_AT:
            value = tuple(value)
        hot[i] = value
    part = request.part
    if plan.rare:
        rare = request.rare.copy()
        for i, take in plan.rare:
            rare[i] = take(v)
        part = None if not any(rare) else (_shared(request.parts, rare) if plan.common
                                           else Rare(*rare))
    prefix, suffix = plan.affixes or _affixes(v)
    return Shape(given={k: x for k, x in o.items() if k != "cmd"},
                 head=tuple(hot[:_REQ_GRP_AT]), req_grp=hot[_REQ_GRP_AT],
                 tail=tuple(hot[_REQ_GRP_AT + 1:]), key_prefix=prefix, key_suffix=suffix,
                 part=part)


def _affixes(v: Merged) -> tuple[str, str]:
    return key_affixes(
        cwd=v["cwd"], cwd_matters=v["cwd_matters"], mounts=v["mounts"],
        with_docker=v["with_docker"], with_singularity=v["with_singularity"],
        container_mounts=v["container_mounts"])


def _shared(parts: dict[bytes, Rare], values: list[Any]) -> Rare:
    """One part of rare requests for every job of the request with the same values and no
    rare keys of its own (``wr add`` gives each job the same ``on_exit``), not one each."""
    part = compact_rare(Rare(*values))
    key = orjson.dumps(get_rare(part), option=orjson.OPT_SORT_KEYS)
    found = parts.get(key)
    if found is None:
        found = parts[key] = part
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
