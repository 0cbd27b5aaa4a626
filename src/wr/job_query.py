"""The URL query of ``POST /rest/v1/jobs/``: defaults for every job of the body (§2.2.1).

`JobDefaults` has one attribute per job-object key that the query may give
(`wr.job_table.Key.query`), holding what the query gave or, when it gave nothing, the
kind's "not given" value (`wr.job_kinds.NOT_GIVEN`: ``""``, ``[]``, 0, None for counts).
It is made from the table, so a new key with a query default needs no change here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from wr.errors import BadRequest
from wr.job_kinds import NOT_GIVEN, query_value
from wr.job_table import KEYS, Key
from wr.job_values import Invalid

QUERY_KEYS: tuple[Key, ...] = tuple(k for k in KEYS if k.query)
"""The keys the URL query may give defaults for, in table order."""


def _not_given(key: Key) -> Any:
    value = NOT_GIVEN[key.kind]
    if isinstance(value, list):
        return dataclasses.field(default_factory=list)
    return value


JobDefaults = dataclasses.make_dataclass(
    "JobDefaults",
    [(k.name, Any, _not_given(k)) for k in QUERY_KEYS],
    slots=True,
)
JobDefaults.__module__ = __name__
JobDefaults.__doc__ = """Defaults for every job of one POST, parsed from its URL query
(§2.2.1); an attribute per key of `QUERY_KEYS`. A value the query did not give is its
kind's zero ("", [], 0, None for counts): ``memory`` 0 and ``time`` 0 fall back to 1G and
1h."""


def parse_query_defaults(query: Mapping[str, str]) -> tuple[Any, bool]:
    """Parse the URL query of a POST into job defaults and the ``rerun`` flag.

    Raises BadRequest with the parser's own text for a bad memory, time,
    no_retry_over_walltime, on_* or mounts value (``time: invalid duration "abc"``), and
    for numbers that are not numbers. Keys are checked in table order.
    """
    defaults = JobDefaults()
    get = query.get
    try:
        for key in QUERY_KEYS:
            text = get(key.name) or ""
            if text or (key.query_presence and key.name in query):
                setattr(defaults, key.name, query_value(key, text))
    except Invalid as e:
        raise BadRequest(str(e)) from None
    return defaults, get("rerun") == "true"
