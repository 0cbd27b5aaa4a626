"""Where a job keeps its fields, and the values many jobs share.

A manager holds a million queued jobs, and most of a job's 59 fields hold their defaults
while it waits: nobody asked for containers, behaviours or mounts, and it has not run yet.
So `wr.jobs.Job` keeps the fields most jobs set (`HOT_FIELDS`) in its own slots and the rest
in two small parts made only when one of their fields first gets a value other than its
default: `Rare` (the rarely used requests) and `Ran` (what happened when it ran). Every
default is falsy, so "is there anything to keep?" is one truth test. A queued job went from
496 to 232 bytes. Which field goes where, its default and its place in a record are the
table's (`wr.job_table`); this module builds the parts from it.

Also here: the values many jobs share (`NO_OTHER`, `shared_names`, `compact_rare`),
because a million copies of an empty dict or of the same dependency list are tens of
megabytes.
"""

from __future__ import annotations

import operator
import sys
from typing import Any

import orjson

from wr.job_table import (
    BY_NAME,
    FIELD_NAMES,
    HOT_FIELDS,
    NAME_LIST,
    NO_OTHER,
    RAN_FIELDS,
    RARE_FIELDS,
    RECORD_LAYOUTS,
    RECORD_TAG,
    V1_NAMES,
    V1_TAG,
)

__all__ = [
    "FIELD_NAMES", "FIELD_SET", "HOT_FIELDS", "J2_NAMES", "J2_TAG", "NO_OTHER",
    "RAN_DEFAULTS", "RAN_FIELDS", "RARE_DEFAULTS", "RARE_FIELDS", "RECORD_TAG", "V1_NAMES",
    "V1_TAG", "Ran", "Rare", "compact_rare", "delegate_parts", "encode_ran", "encode_rare",
    "get_hot", "get_ran", "get_rare", "record_index", "shared_names",
]

J2_TAG = "j2"
J2_NAMES = RECORD_LAYOUTS[J2_TAG]
"""The layout before ``bsub_id`` was added to the rare part (issue 15), still read."""
FIELD_SET = frozenset(FIELD_NAMES)


def record_index(name: str, tag: str = RECORD_TAG) -> int:
    """Where field ``name`` sits in a positional record with ``tag`` (0 is the tag)."""
    return RECORD_LAYOUTS[tag].index(name) + 1


# -- values many jobs share -----------------------------------------------------------------

_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {(): ()}


def shared_names(items: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object for every equal list of names (dep groups, limit groups, ...)."""
    if not items:
        return ()
    given = tuple(items)
    found = _TUPLES.get(given)
    if found is None:
        if len(_TUPLES) >= 100_000:  # names shared by few jobs: stop sharing, don't grow
            return given
        found = _TUPLES[given] = tuple(sys.intern(x) for x in given)
    return found


# -- the two parts ------------------------------------------------------------------------

RARE_DEFAULTS = tuple(BY_NAME[name].default for name in RARE_FIELDS)
RAN_DEFAULTS = tuple(BY_NAME[name].default for name in RAN_FIELDS)


class Rare:
    """A job's `RARE_FIELDS`, positionally. ``shared`` parts (see `compact_rare`) stand for
    many jobs and are copied before one of them changes a field."""

    __slots__ = (*RARE_FIELDS, "shared", "encoded")

    def __init__(self, *values: Any) -> None:
        for name, value in zip(RARE_FIELDS, values, strict=True):
            setattr(self, name, value)
        self.shared = False
        self.encoded: bytes | None = None
        """The values as record bytes, kept once the part is shared (so never changes)."""


def encode_rare(part: Rare | None) -> bytes:
    """A part's values as they appear in a record: JSON, without the brackets. A shared part,
    which stands for many jobs and never changes, is encoded once."""
    if part is None:
        return _RARE_DEFAULTS_ENCODED
    if part.encoded is not None:
        return part.encoded
    encoded = orjson.dumps(get_rare(part))[1:-1]
    if part.shared:
        part.encoded = encoded
    return encoded


def encode_ran(part: Ran | None) -> bytes:
    """`encode_rare` for the results part (never shared)."""
    return _RAN_DEFAULTS_ENCODED if part is None else orjson.dumps(get_ran(part))[1:-1]


_RARE_PARTS: dict[bytes, Rare] = {}
_RARE_NAME_LISTS = tuple(n for n in RARE_FIELDS if BY_NAME[n].type == NAME_LIST)
"""The rare fields that are lists of names (modules, env, ...): shared tuples."""
_RARE_OBJECT_LISTS = tuple(n for n in RARE_FIELDS if BY_NAME[n].type.startswith("list[dict"))
"""The rare fields that are lists of objects (behaviours, mounts): tuples."""


def compact_rare(part: Rare) -> Rare:
    """The part to keep for ``part``: its lists made shared tuples, an empty ``other`` the
    shared `NO_OTHER`, and then one part for every job with the same values (see
    `_shared_rare`)."""
    if part.shared:
        return part
    for name in _RARE_NAME_LISTS:
        setattr(part, name, shared_names(getattr(part, name)))
    for name in _RARE_OBJECT_LISTS:
        setattr(part, name, tuple(getattr(part, name)))
    if not part.other:
        part.other = NO_OTHER
    if part.bsub_id:  # unique to its job: sharing it would only fill the table (issue 15)
        return part
    return _shared_rare(part)


def _shared_rare(part: Rare) -> Rare:
    """One part for every job with the same rare requests: ``wr add`` gives every job its
    default ``on_exit`` cleanup, and a million copies of one behaviour list and its part
    are 250 MB. The values must already be compacted (tuples, not lists)."""
    try:
        key = orjson.dumps(get_rare(part), option=orjson.OPT_SORT_KEYS)
    except TypeError:  # something orjson cannot encode: keep the job's own part
        return part
    found = _RARE_PARTS.get(key)
    if found is None:
        if len(_RARE_PARTS) >= 10_000:  # requests shared by few jobs: stop sharing
            return part
        found = _RARE_PARTS[key] = part
        part.shared = True
    return found


class Ran:
    """A job's `RAN_FIELDS`, positionally."""

    __slots__ = RAN_FIELDS

    def __init__(self, *values: Any) -> None:
        for name, value in zip(RAN_FIELDS, values, strict=True):
            setattr(self, name, value)


get_hot = operator.attrgetter(*HOT_FIELDS)
get_rare = operator.attrgetter(*RARE_FIELDS)
get_ran = operator.attrgetter(*RAN_FIELDS)
_RARE_DEFAULTS_ENCODED = orjson.dumps(RARE_DEFAULTS)[1:-1]
_RAN_DEFAULTS_ENCODED = orjson.dumps(RAN_DEFAULTS)[1:-1]


def _delegated(slot: str, part: type, name: str, default: Any,
               defaults: tuple[Any, ...]) -> property:
    """A property for a field kept in a part: the default while the part is absent; setting
    the default (same value and type) to an absent part makes no part."""
    read = operator.attrgetter(name)
    everything = get_rare if part is Rare else get_ran

    def get(job: Any) -> Any:
        holder = getattr(job, slot)
        return default if holder is None else read(holder)

    def set_(job: Any, value: Any) -> None:
        holder = getattr(job, slot)
        if holder is None:
            if value is default or (value == default and type(value) is type(default)):
                return
            holder = part(*defaults)
            setattr(job, slot, holder)
        elif getattr(holder, "shared", False):  # other jobs' too: change a copy
            holder = part(*everything(holder))
            setattr(job, slot, holder)
        setattr(holder, name, value)

    return property(get, set_, doc=f"``{name}``, kept in the job's `{part.__name__}` part.")


def delegate_parts(cls: type) -> type:
    """Give ``cls`` (with ``_rare`` and ``_ran`` slots) a property for every field of its
    parts."""
    for name, default in zip(RARE_FIELDS, RARE_DEFAULTS, strict=True):
        setattr(cls, name, _delegated("_rare", Rare, name, default, RARE_DEFAULTS))
    for name, default in zip(RAN_FIELDS, RAN_DEFAULTS, strict=True):
        setattr(cls, name, _delegated("_ran", Ran, name, default, RAN_DEFAULTS))
    return cls
