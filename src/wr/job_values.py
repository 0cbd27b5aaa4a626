"""The scalar values of a job object and of a POST's URL query, read strictly, and the
named checks of `wr.job_table` (`CHECKS`).

Types are strict: a wrong type is an `Invalid` naming the key and quoting the value. In a
job object ``null``, ``""`` and ``[]`` all mean "not provided" (wr's own clients send every
key with zero values). Split from `wr.submission` (issue 14).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from wr.job_body import show_value as _show
from wr.jobs import check_limit_group as limit_group_rule
from wr.jobs import parse_duration, parse_memory

INT64_MAX = 2**63 - 1
"""The largest integer any numeric job field may hold (it is stored as SQLite INTEGER)."""
MAX_CPUS = 2**31 - 1
"""The largest ``cpus`` accepted; more is a typo, not a machine."""

_QUERY_INT = re.compile(r"[+-]?[0-9]+")
_QUERY_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Invalid(ValueError):
    """A conversion problem; turned into BadRequest with the right prefix at the boundary
    (`wr.submission`: a job's, `wr.job_query`: the query's)."""


def given(value: Any) -> bool:
    """False for the three spellings of "not provided": null, "" and []."""
    if value is None:
        return False
    return not (isinstance(value, (str, list)) and not value)


def lowered(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object's keys in lower case (wr matches them case-insensitively)."""
    return {k.lower(): v for k, v in obj.items() if isinstance(k, str)}


def check_text(name: str, value: str) -> str:
    """``value`` if it can be stored: no NUL, and valid Unicode."""
    if "\x00" in value:
        raise Invalid(f"{name} must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid(f"{name} is not valid Unicode text") from None
    return value


# json_string and json_strings run for many keys of every job of a big body, so they
# inline `given` and only call check_text for the rare string that could need it.

def json_string(o: Mapping[str, Any], name: str) -> str:
    """``o[name]`` as a string, ``""`` when not given."""
    value = o.get(name)
    if value is None or value == "" or value == []:
        return ""
    return as_string(name, value)


def as_string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string, not {_show(value)}")
    if "\x00" in value or not value.isascii():
        check_text(name, value)
    return value


def json_strings(o: Mapping[str, Any], name: str) -> list[str]:
    """``o[name]`` as a list of strings, ``[]`` when not given."""
    value = o.get(name)
    if value is None or value == "" or value == []:
        return []
    if not isinstance(value, list):
        raise Invalid(f"{name} must be an array of strings, not {_show(value)}")
    for item in value:
        if not isinstance(item, str):
            raise Invalid(f"{name} must be an array of strings, not {_show(value)}")
        if "\x00" in item or not item.isascii():
            check_text(name, item)
    return list(value)


def json_bool(o: Mapping[str, Any], name: str) -> bool:
    value = o.get(name)
    if not given(value):
        return False
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false, not {_show(value)}")
    return value


def json_count(o: Mapping[str, Any], name: str) -> int | None:
    """A whole number from 0, or None when not given."""
    value = o.get(name)
    if not given(value):
        return None
    return as_int(name, value, non_negative=True)


def as_int(name: str, value: Any, *, non_negative: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{name} must be an integer, not {_show(value)}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise Invalid(f"{name} must be an integer, not {_show(value)}")
        if abs(value) > INT64_MAX:
            raise Invalid(f"{name} value ({_show(value)}) is too large")
        value = int(value)
    return in_int64(name, value, _show(value), non_negative)


def in_int64(name: str, value: int, shown: str, non_negative: bool) -> int:
    """``value`` if it fits the store's INTEGER (and is not negative, if so asked)."""
    if abs(value) > INT64_MAX:
        raise Invalid(f"{name} value ({shown}) is too large")
    if non_negative and value < 0:
        raise Invalid(f"{name} must not be negative (got {shown})")
    return value


def json_level(o: Mapping[str, Any], name: str, top: int, default: int) -> int:
    """override/priority/retries: the job's value, else the query's, checked against
    0..top (2.0 is fine; 1e300 gets the range message)."""
    raw = o.get(name)
    if not given(raw):
        value, shown = default, str(default)
    elif (isinstance(raw, (int, float)) and not isinstance(raw, bool)
          and math.isfinite(raw) and raw == int(raw)):
        value, shown = int(raw), _show(raw)
    else:
        raise Invalid(f"{name} must be an integer, not {_show(raw)}")
    if not 0 <= value <= top:
        raise Invalid(f"{name} value ({shown}) is not in the range 0..{top}")
    return value


def json_cpus(o: Mapping[str, Any], name: str) -> float | None:
    value = o.get(name)
    if not given(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{name} must be a number, not {_show(value)}")
    return check_cpus(float(value), _show(value))


def check_cpus(value: float, shown: str) -> float:
    if not math.isfinite(value) or value > MAX_CPUS:
        raise Invalid(f"cpus value ({shown}) is too large (at most {MAX_CPUS})")
    if value < 0:
        raise Invalid(f"cpus must not be negative (got {shown})")
    return value + 0.0  # -0.0 -> 0.0


def memory(name: str, text: str) -> int:
    """A job's memory text in MB, with wr's words for a bad one."""
    try:
        return parse_memory(text)
    except ValueError as e:
        raise Invalid(f"{name} value ({text}) was not specified correctly: {e}") from None


def duration(name: str, text: str) -> float:
    """A job's duration text in seconds, with wr's words for a bad one."""
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise Invalid(f"{name} value ({text}) was not specified correctly: {e}") from None
    return not_negative(name, seconds, text)


def not_negative(name: str, seconds: float, text: str) -> float:
    """A time or no_retry_over_walltime of ``seconds``, which must not be negative (issue
    13: ``time: "-1h"`` was stored as ExpectedTime -3600)."""
    if seconds < 0:
        raise Invalid(f"{name} value ({text}) must not be negative")
    return seconds + 0.0  # -0s -> 0.0


# -- the URL query's texts ----------------------------------------------------------------

def query_int(name: str, text: str, *, non_negative: bool = False) -> int:
    if not _QUERY_INT.fullmatch(text):
        raise Invalid(f"{name} value ({text}) is not an integer")
    return in_int64(name, int(text), text, non_negative)


def query_cpus(name: str, text: str) -> float:
    if not _QUERY_FLOAT.fullmatch(text):
        raise Invalid(f"{name} value ({text}) is not a number")
    return check_cpus(float(text), text)


def query_memory(text: str) -> int:
    try:
        return parse_memory(text)
    except ValueError as e:
        raise Invalid(str(e)) from None


def query_duration(name: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise Invalid(str(e)) from None
    return not_negative(name, seconds, text)


# -- the named checks of the table --------------------------------------------------------

def checked(check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)``, its ValueError made a job problem (time windows and bsub_mode are
    checked in wr.windows and wr.lsf; issue 15)."""
    try:
        return check(value)
    except ValueError as e:
        raise Invalid(str(e)) from None


def check_cwd(name: str, cwd: Any) -> str:
    """A cwd must be absolute: a relative one would be taken relative to wherever the
    runner happens to run (issue 13: ``../../etc`` ran a job in ``/etc/wr_cwd/...``)."""
    cwd = as_string(name, cwd)
    if not cwd.startswith("/"):
        raise Invalid(f"cwd value ({cwd}) is not an absolute path: give one that starts "
                      f"with /")
    return cwd


def check_limit_group(name: str, group: str) -> str:
    """Each ``limit_grps`` entry must be a name or ``name:N`` that can be stored (issue
    13); see `wr.jobs.check_limit_group`."""
    return checked(limit_group_rule, group)


def check_env(name: str, item: str) -> str:
    env_name, sep, _ = item.partition("=")
    if not sep or not env_name:
        raise Invalid(f"env value ({item}) is not of the form NAME=VALUE")
    return check_text(name, item)


def check_bsub_mode(name: str, value: Any) -> str:
    """A deployment's name (`wr.lsf.check_bsub_mode` says which, in its own words for a
    value of the wrong type)."""
    from wr.lsf import check_bsub_mode as check

    return checked(check, value)


CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "cwd": check_cwd,
    "limit_group": check_limit_group,
    "env": check_env,
    "bsub_mode": check_bsub_mode,
}
"""The checks `wr.job_table.Key.check` names: each takes the key's name and a value (an
item, for lists), job's or query's, and returns it or raises `Invalid`."""
