"""What each `wr.job_table.Kind` of key means: how a job object's value is read and merged
with the URL query's default (§2.2.3), how the query's text is read, and how a job's value
is written back into a job object (for ``wr mod``).

The merge rules, by kind (spec/rest-and-queue.md §2.2.3):

* strings: the job's if non-empty, else the query's, else the built-in default (the
  field's: cwd ``/tmp``, rep_grp ``manually_added``);
* lists: the job's if non-empty, else the query's (comma-separated there; behaviours and
  mounts are JSON in the query);
* numbers: the job's if not null, else the query's; booleans are OR-ed;
* memory: the job's if given (``500K`` -> 0 MB is kept), else the query's if at least
  1 MB, else the default (1G); durations: the job's if given, else the query's if not
  0, else the default (time 1h).

A reader is made once per key (`reader`) and called for every job object whose shape is
new, so each is a small closure over the key's name, default and check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus

import orjson

from wr import job_structures as structures
from wr.job_table import Key, Kind
from wr.job_values import (
    CHECKS,
    Invalid,
    as_string,
    check_text,
    duration,
    given,
    json_bool,
    json_count,
    json_cpus,
    json_level,
    json_string,
    json_strings,
    memory,
    query_cpus,
    query_duration,
    query_int,
    query_memory,
)
from wr.jobs import format_duration

Reader = Callable[[Mapping[str, Any], Any, Any], Any]
"""``read(job_object, query_default, seen)`` -> the key's merged value; ``seen`` holds the
request's caches (``memory``, ``seconds``, ``scripts``: `wr.submission.Seen`)."""

NOT_GIVEN: dict[Kind, Any] = {
    Kind.STRING: "", Kind.SCRIPT: "", Kind.STRINGS: [], Kind.FLAG: False, Kind.COUNT: None,
    Kind.LEVEL: 0, Kind.CPUS: 0.0, Kind.MEMORY: 0, Kind.DURATION: 0.0,
    Kind.BEHAVIOURS: [], Kind.MOUNTS: [], Kind.CMD_DEPS: None,
}
"""A query default that the query did not give, by kind."""


# -- a job object's values, merged with the query's -------------------------------------

def reader(key: Key, default: Any) -> Reader:
    """The reader of ``key``, whose built-in default is ``default``."""
    return _READERS[key.kind](key, default)


def _string(key: Key, default: Any) -> Reader:
    name, check = key.name, CHECKS.get(key.check, as_string)

    def read(o: Mapping[str, Any], q: Any, seen: Any) -> Any:
        value = o.get(name)
        if value is None or value == "" or value == []:
            return q or default
        return check(name, value)
    return read


def _script(key: Key, default: Any) -> Reader:
    # The path; its content is read when the job's `other` requests are (wr.job_shape),
    # so a query's script is read only for jobs that do not give their own.
    name = key.name
    return lambda o, q, seen: json_string(o, name) or q


def _strings(key: Key, default: Any) -> Reader:
    name, check = key.name, CHECKS.get(key.check)

    def read(o: Mapping[str, Any], q: Any, seen: Any) -> Any:
        value = o.get(name)
        if value is None or value == "" or value == []:
            return list(q)
        items = json_strings(o, name)
        if check is not None:
            for item in items:
                check(name, item)
        return items
    return read


def _flag(key: Key, default: Any) -> Reader:
    name = key.name
    return lambda o, q, seen: (name in o and json_bool(o, name)) or q


def _parsed_or_query(parse: Callable[[Mapping[str, Any], str], Any]
                     ) -> Callable[[Key, Any], Reader]:
    """A reader maker for a number the job object may give (``parse`` reads and checks it;
    None when it is not given), else the query's default."""
    def make(key: Key, default: Any) -> Reader:
        name = key.name

        def read(o: Mapping[str, Any], q: Any, seen: Any) -> Any:
            value = parse(o, name) if name in o else None
            return q if value is None else value
        return read
    return make


_count = _parsed_or_query(json_count)


def _level(key: Key, default: Any) -> Reader:
    name, top = key.name, key.top
    return lambda o, q, seen: json_level(o, name, top, q)


_cpus = _parsed_or_query(json_cpus)


def _memory(key: Key, default: Any) -> Reader:
    name = key.name

    def read(o: Mapping[str, Any], q: Any, seen: Any) -> Any:
        text = name in o and json_string(o, name)
        if not text:
            return q if q >= 1 else default
        found = seen.memory.get(text, -1)
        if found < 0:
            found = seen.memory[text] = memory(name, text)
        return found
    return read


def _duration(key: Key, default: Any) -> Reader:
    name = key.name

    def read(o: Mapping[str, Any], q: Any, seen: Any) -> Any:
        text = name in o and json_string(o, name)
        if not text:
            return q if q != 0 else default
        found = seen.seconds.get(text, -1.0)
        if found < 0:  # (a negative duration is refused, so never kept)
            found = seen.seconds[text] = duration(name, text)
        return found
    return read


def _behaviours(key: Key, default: Any) -> Reader:
    name = key.name

    def read(o: Mapping[str, Any], q: Any, seen: Any) -> Any:
        raw = o.get(name)
        return structures.behaviours(name, raw) if given(raw) else q
    return read


def _mounts(key: Key, default: Any) -> Reader:
    name = key.name

    def read(o: Mapping[str, Any], q: Any, seen: Any) -> Any:
        raw = o.get(name)
        return structures.mounts(raw) if given(raw) else list(q)
    return read


def _cmd_deps(key: Key, default: Any) -> Reader:
    name = key.name

    def read(o: Mapping[str, Any], q: Any, seen: Any) -> Any:
        raw = o.get(name)
        return structures.cmd_deps(raw) if given(raw) else ([], [])
    return read


_READERS: dict[Kind, Callable[[Key, Any], Reader]] = {
    Kind.STRING: _string, Kind.SCRIPT: _script, Kind.STRINGS: _strings, Kind.FLAG: _flag,
    Kind.COUNT: _count, Kind.LEVEL: _level, Kind.CPUS: _cpus, Kind.MEMORY: _memory,
    Kind.DURATION: _duration, Kind.BEHAVIOURS: _behaviours, Kind.MOUNTS: _mounts,
    Kind.CMD_DEPS: _cmd_deps,
}


# -- the URL query's texts --------------------------------------------------------------

def query_value(key: Key, text: str) -> Any:
    """The query default ``text`` gives ``key``: raises `Invalid` with the parser's own words
    (``time: invalid duration "abc"``). ``text`` is not empty, except for a key whose
    presence counts (`Key.query_presence`)."""
    name, kind = key.name, key.kind
    if kind is Kind.STRING or kind is Kind.SCRIPT:
        check = CHECKS.get(key.check)
        text = check_text(name, text)
        return text if check is None else check(name, text)
    if kind is Kind.STRINGS:
        check = CHECKS.get(key.check)
        items = [check_text(name, p) for p in text.split(",") if p]
        return items if check is None else [check(name, p) for p in items]
    if kind is Kind.FLAG:
        return text == "true"
    if kind is Kind.COUNT:
        value = query_int(name, text, non_negative=True) if text else 0
        return value if value or key.query_presence else None
    if kind is Kind.LEVEL:
        return query_int(name, text)
    if kind is Kind.CPUS:
        return query_cpus(name, text)
    if kind is Kind.MEMORY:
        return query_memory(text)
    if kind is Kind.DURATION:
        return query_duration(name, text)
    if kind is Kind.BEHAVIOURS:
        return structures.behaviours(name, _query_json(name, text))
    if kind is Kind.MOUNTS:
        return structures.mounts(_query_json(name, text))
    raise AssertionError(f"{name} ({kind}) has no query form")


def _query_json(name: str, text: str) -> Any:
    # The framework has percent-decoded the value once; wr decodes it a second time. We only
    # do that when it is evidently still escaped, so a literal % or + in the JSON survives.
    if text[:3].upper() == "%5B":
        text = unquote_plus(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise Invalid(f"{name}: invalid JSON: {e}") from None


# -- a job's value written back ---------------------------------------------------------

def json_form(kind: Kind, value: Any) -> Any:
    """A job's value of a ``kind`` key as a job object gives it (None: leave it out)."""
    if kind is Kind.MEMORY:
        return f"{value}M"
    if kind is Kind.DURATION:
        return format_duration(value)
    if isinstance(value, tuple):
        return list(value)
    return value


assert set(_READERS) == set(Kind) == set(NOT_GIVEN), "every kind needs a reader and a zero"
