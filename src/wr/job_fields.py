"""Which fields a job has, where each is kept, and the order records list them in.

A manager holds a million queued jobs, and most of a job's 58 fields hold their defaults
while it waits: nobody asked for containers, behaviours or mounts, and it has not run yet.
So `wr.jobs.Job` keeps the fields most jobs set (`HOT_FIELDS`) in its own slots and the rest
in two small parts made only when one of their fields first gets a value other than its
default: `Rare` (the rarely used requests) and `Ran` (what happened when it ran). Every
default is falsy, so "is there anything to keep?" is one truth test. A queued job went from
496 to 232 bytes.

Also here: the values many jobs share (`NO_OTHER`, `shared_names`), because a million copies
of an empty dict or of the same dependency list are tens of megabytes.
"""

from __future__ import annotations

import operator
import sys
from typing import Any

import orjson

HOT_FIELDS = (
    "key", "cmd", "cwd", "cwd_matters", "rep_grp", "req_grp", "ram", "time", "cores", "disk",
    "priority", "retries", "limit_grps", "dep_grps", "deps", "user_ram", "user_time", "state",
    "until_buried", "attempts", "sched_group", "added", "seq",
)
"""The fields every job keeps in its own slots, in record order."""
RARE_FIELDS = (
    "change_home", "disk_set", "other", "override", "no_retry_over_walltime", "modules",
    "cmd_deps", "behaviours", "mounts", "monitor_docker", "with_docker", "with_singularity",
    "container_mounts", "env", "group", "bsub_mode", "reserve_timeout", "user_disk",
    "kill_called", "recovered", "delay", "bsub_id",
)
"""The requests few jobs make, and flags few jobs ever raise. (``bsub_id``: the LSF job id
`wr.lsf` gives jobs in bsub mode; 0 for every other job.)"""
RAN_FIELDS = (
    "exited", "exitcode", "fail_reason", "pid", "host", "host_id", "host_ip", "started",
    "ended", "peak_ram", "peak_disk", "cpu_time", "actual_cwd", "reserved_by",
)
"""What running a job told us; a job that never ran has none of it."""
FIELD_NAMES = (*HOT_FIELDS, *RARE_FIELDS, *RAN_FIELDS)
"""Every field of a job, in the order of ``Job.__init__`` and of records."""

RECORD_TAG = "j3"
"""Marks the positional record layout of ``Job.to_record`` (fields in `FIELD_NAMES` order).
A record may stop early, and the missing fields take their defaults: ``Job.record_bytes``
leaves out the parts a job lacks, and a new field is appended at the end of its part
(older records, being shorter, get its default; a field appended to the rare part moves
the results part, so it needs a new tag). A removed or reordered one needs a new tag, with
the old layout still read."""
J2_TAG = "j2"
J2_NAMES = tuple(name for name in FIELD_NAMES if name != "bsub_id")
"""The layout before ``bsub_id`` was added to the rare part (issue 15), still read."""
V1_TAG = "j1"
V1_NAMES = (
    "key", "cmd", "cwd", "cwd_matters", "change_home", "rep_grp", "req_grp", "ram", "time",
    "cores", "disk", "disk_set", "other", "override", "priority", "retries",
    "no_retry_over_walltime", "limit_grps", "modules", "dep_grps", "deps", "cmd_deps",
    "behaviours", "mounts", "monitor_docker", "with_docker", "with_singularity",
    "container_mounts", "env", "group", "bsub_mode", "reserve_timeout", "user_ram",
    "user_time", "user_disk", "state", "until_buried", "attempts", "exited", "exitcode",
    "fail_reason", "pid", "host", "host_id", "host_ip", "started", "ended", "peak_ram",
    "peak_disk", "cpu_time", "actual_cwd", "reserved_by", "kill_called", "recovered",
    "delay", "sched_group", "added", "seq",
)
"""The field order of the first record layout (tag ``j1``), which is still read."""
FIELD_SET = frozenset(FIELD_NAMES)


def record_index(name: str, tag: str = RECORD_TAG) -> int:
    """Where field ``name`` sits in a positional record with ``tag`` (0 is the tag)."""
    names = {RECORD_TAG: FIELD_NAMES, J2_TAG: J2_NAMES, V1_TAG: V1_NAMES}[tag]
    return names.index(name) + 1


# -- values many jobs share -----------------------------------------------------------------

class _ReadOnlyDict(dict):  # type: ignore[type-arg]
    """An empty dict that refuses changes, so one can stand for every job's empty ``other``;
    code that wants to change a job's ``other`` assigns a new dict."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("this shared empty dict cannot be changed; assign a new one")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _refuse


NO_OTHER: dict[str, str] = _ReadOnlyDict()
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

RARE_DEFAULTS = (False, False, NO_OTHER, 0, 0.0, (), (), (), (), "", "", "", "", (), "", "",
                 0, 0, False, False, 0.0, 0)
RAN_DEFAULTS = (False, 0, "", 0, "", "", "", None, None, 0, 0, 0.0, "", "")


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


def rare_part(*values: Any) -> Rare | None:
    """A part holding these `RARE_FIELDS` values, or None when all are defaults."""
    return Rare(*values) if any(values) else None


def compact_rare(part: Rare) -> Rare:
    """The part to keep for ``part``: its lists made shared tuples, an empty ``other`` the
    shared `NO_OTHER`, and then one part for every job with the same values (see
    `_shared_rare`)."""
    if part.shared:
        return part
    part.modules = shared_names(part.modules)
    part.cmd_deps = shared_names(part.cmd_deps)
    part.env = shared_names(part.env)
    part.behaviours = tuple(part.behaviours)
    part.mounts = tuple(part.mounts)
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
