"""The job record, its states, its key, and the units users write requirements in.

A job is the unit everything else moves around: the queue changes its state, the store
persists it, the REST layer renders it. It is a slotted dataclass because a manager holds a
million of them.

Identity is wr's: the key is the CityHash128 (v1.1) of the command, plus the cwd when
``cwd_matters``, plus mounts and container settings (spec/rest-and-queue.md §4.2), so that
jobs added to wr and to us get the same keys and duplicates are found the same way.

Units follow wr's parsers so the same inputs mean the same thing: memory is bytefmt's
(powers of 1024, ``5M`` = 5 MB, ``3G`` = 3072 MB) and durations are Go's ``ParseDuration``
(``1h30m``, ``5s``, ``300ms``; no days).
"""

from __future__ import annotations

import enum
import linecache
import math
import re
import sys
import textwrap
from collections.abc import Iterable
from typing import Any

import cityhash
import orjson

from wr.errors import BadRequest
from wr.job_fields import (
    FIELD_SET,
    HOT_FIELDS,
    RAN_DEFAULTS,
    RAN_FIELDS,
    RARE_DEFAULTS,
    RARE_FIELDS,
    RECORD_TAG,
    Ran,
    Rare,
    compact_rare,
    delegate_parts,
    encode_ran,
    encode_rare,
    get_hot,
    get_ran,
    get_rare,
    shared_names,
)
from wr.job_table import BY_NAME, FIELD_NAMES, NAME_LIST, RECORD_LAYOUTS, State

__all__ = [  # what the rest of wr imports from here (State lives in wr.job_table)
    "DEFAULT_CWD", "DEFAULT_RAM_MB", "DEFAULT_REP_GRP", "DEFAULT_TIME_S", "DELETABLE_STATES",
    "FailReason", "Job", "NO_RARE", "NOT_RUN", "QUEUED_STATES", "RUN_STATES", "State",
    "UNSET_TIME", "behaviours_from_json", "behaviours_to_text", "check_limit",
    "check_limit_group", "check_limit_name", "compiled", "compute_key", "default_req_grp",
    "format_duration", "jobs_that_wait", "key_affixes", "key_of", "limit_plan",
    "mounts_key", "parse_duration", "parse_memory", "split_limit_group",
]


#: States a job can have while it is in the queue (everything but complete and deleted).
QUEUED_STATES = frozenset(
    {State.DELAYED, State.READY, State.RESERVED, State.RUNNING, State.LOST, State.BURIED,
     State.DEPENDENT}
)
#: States whose jobs may be deleted: "not running and not complete" (DESIGN.md).
DELETABLE_STATES = frozenset({State.DELAYED, State.READY, State.BURIED, State.DEPENDENT})
#: States of jobs held by a runner (wr's "run" sub-queue).
RUN_STATES = frozenset({State.RESERVED, State.RUNNING, State.LOST})


class FailReason(enum.StrEnum):
    """wr's exact failure texts (spec/rest-and-queue.md §4.14)."""

    ENV = "failed to get environment variables"
    CWD = "working directory does not exist"
    START = "command failed to start"
    PERM = "command permission problem"
    NOTFOUND = "command not found"
    EXIT_INVALID = "command invalid exit code"
    EXIT = "command exited non-zero"
    RAM = "command used too much RAM"
    DISK = "ran out of disk space"
    TIME = "command used too much time"
    DOCKER = "could not interact with docker"
    ABNORMAL = "command failed to complete normally"
    LOST = "lost contact with runner"
    SIGNAL = "runner received a signal to stop"
    IMPOSSIBLE = "resource requirements cannot be met"
    MOUNT = "mounting of remote file system(s) failed"
    UPLOAD = "failed to upload files to remote file system"
    KILLED = "killed by user request"

    def __str__(self) -> str:
        return self.value


# -- defaults -----------------------------------------------------------------------------

DEFAULT_RAM_MB: int = BY_NAME["ram"].default
"""1G, as the seed page says (wr's code uses 1000; DESIGN.md settles on the seed)."""
DEFAULT_TIME_S: float = BY_NAME["time"].default
"""One hour."""
DEFAULT_CWD: str = BY_NAME["cwd"].default
"""Where jobs run (inside a unique directory) unless told otherwise."""
DEFAULT_REP_GRP: str = BY_NAME["rep_grp"].default
"""The report group of jobs added without one."""
UNSET_TIME = -62135596800
"""How an unset Started/Ended is reported: Go's zero time in Unix seconds, as the seed shows."""


# -- units --------------------------------------------------------------------------------

_MEMORY_UNITS = {
    "B": 1,
    "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
    "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
    "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30,
    "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40,
    "P": 1 << 50, "PB": 1 << 50, "PIB": 1 << 50,
    "E": 1 << 60, "EB": 1 << 60, "EIB": 1 << 60,
}
MEMORY_ERROR = (
    "byte quantity must be a positive integer with a unit of measurement like M, MB, MiB, "
    "G, GiB, or GB"
)


def parse_memory(text: str) -> int:
    """Parse a memory size like ``5M``, ``3G`` or ``1.5GiB`` into whole megabytes.

    Raises ValueError with bytefmt's message for anything else (a bare number included).
    """
    s = text.strip().upper()
    i = next((n for n, ch in enumerate(s) if ch.isalpha()), None)
    if i is None:
        raise ValueError(MEMORY_ERROR)
    number, unit = s[:i].strip(), s[i:].strip()
    try:
        value = float(number)
    except ValueError:
        raise ValueError(MEMORY_ERROR) from None
    if not math.isfinite(value) or value <= 0 or unit not in _MEMORY_UNITS:
        raise ValueError(MEMORY_ERROR)
    total = value * _MEMORY_UNITS[unit]
    if total >= 2**64:
        raise ValueError(MEMORY_ERROR)
    return int(total) // (1 << 20)


_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")


def parse_duration(text: str) -> float:
    """Parse a Go duration like ``1h30m``, ``5s`` or ``300ms`` into seconds.

    Raises ValueError with Go's messages (``time: invalid duration "abc"``) otherwise.
    """
    orig = text
    s = text
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f'time: invalid duration "{orig}"')
        number, unit = m.group(1), m.group(2)
        if not unit:
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        total += float(number) * _DURATION_UNITS[unit]
        pos = m.end()
    if total > 9223372036.854775807:
        raise ValueError(f'time: invalid duration "{orig}"')
    return sign * total


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a Duration (``1h0m0s``, ``5.002s``, ``1m30.5s``)."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    ns = round(abs(seconds) * 1e9)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1e3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1e6)}ms"
    h, rem = divmod(ns, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    secs = _trim(rem / 1e9)
    if h:
        return f"{sign}{h}h{m}m{secs}s"
    if m:
        return f"{sign}{m}m{secs}s"
    return f"{sign}{secs}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


# -- behaviours and mounts ----------------------------------------------------------------

BEHAVIOUR_TRIGGERS = ("on_failure", "on_success", "on_failure|success", "on_exit")
BEHAVIOUR_ACTIONS = ("run", "copy_to_manager", "cleanup", "cleanup_all", "remove", "nothing")


def behaviours_from_json(when: str, items: Any) -> list[dict[str, Any]]:
    """Turn a list of wr behaviour objects (``{"run": "cmd"}``, ``{"cleanup": true}``) into
    ``{"when", "do", "arg"}`` records; an object naming nothing becomes ``nothing`` (as wr).
    """
    if items is None:
        return []
    if not isinstance(items, list):
        raise BadRequest(f"{when} must be an array of behaviour objects, not {items!r}")
    out: list[dict[str, Any]] = []
    for item in items:
        if item is None:
            item = {}
        if not isinstance(item, dict):
            raise BadRequest(f"a behaviour must be an object like {{\"cleanup\":true}}, "
                             f"not {item!r}")
        lowered = {str(k).lower(): v for k, v in item.items()}
        run = lowered.get("run")
        copy = lowered.get("copy_to_manager")
        if isinstance(run, str) and run:
            out.append({"when": when, "do": "run", "arg": run})
        elif isinstance(copy, list) and copy:
            out.append({"when": when, "do": "copy_to_manager", "arg": [str(p) for p in copy]})
        elif lowered.get("cleanup") is True:
            out.append({"when": when, "do": "cleanup", "arg": True})
        elif lowered.get("cleanup_all") is True:
            out.append({"when": when, "do": "cleanup_all", "arg": True})
        elif lowered.get("remove") is True:
            out.append({"when": when, "do": "remove", "arg": True})
        else:
            out.append({"when": when, "do": "nothing", "arg": True})
    return out


def behaviours_to_text(behaviours: list[dict[str, Any]]) -> str:
    """Render behaviours as the compact JSON string status objects show (``""`` if none)."""
    if not behaviours:
        return ""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for b in behaviours:
        grouped.setdefault(b["when"], []).append({b["do"]: b["arg"]})
    ordered = {w: grouped[w] for w in BEHAVIOUR_TRIGGERS if w in grouped}
    return orjson.dumps(ordered).decode()


def mounts_key(mounts: list[dict[str, Any]] | None) -> str:
    """The part of a job's key that its mounts contribute (spec §4.2)."""
    if not mounts:
        return ""
    parts = []
    for m in sorted(mounts, key=lambda m: str(m.get("Mount") or "")):
        text = (m.get("Mount") or "mnt") + ":"
        for t in m.get("Targets") or []:
            text += (t.get("Profile") or "default") + "-" + str(t.get("Path") or "") + ";"
        parts.append(text)
    return "".join(parts)


def compute_key(
    cmd: str,
    *,
    cwd: str = "",
    cwd_matters: bool = False,
    mounts: list[dict[str, Any]] | None = None,
    with_docker: str = "",
    with_singularity: str = "",
    container_mounts: str = "",
) -> str:
    """wr's job key: 32 hex digits of CityHash128 over cmd (+cwd) + mounts (+container)."""
    return key_of(cmd, *key_affixes(cwd=cwd, cwd_matters=cwd_matters, mounts=mounts,
                                    with_docker=with_docker, with_singularity=with_singularity,
                                    container_mounts=container_mounts))


def key_affixes(*, cwd: str, cwd_matters: bool, mounts: list[dict[str, Any]] | None,
                with_docker: str, with_singularity: str, container_mounts: str
                ) -> tuple[str, str]:
    """What `compute_key` hashes before and after the command: the same for every job of
    a big add, so worked out once for them all."""
    prefix = cwd + "." if cwd_matters else ""
    suffix = "." + mounts_key(mounts)
    if with_docker:
        suffix += ".docker:" + with_docker + "." + container_mounts
    elif with_singularity:
        suffix += ".singularity:" + with_singularity + "." + container_mounts
    return prefix, suffix


def key_of(cmd: str, prefix: str, suffix: str) -> str:
    """`compute_key` given its `key_affixes`."""
    text = prefix + cmd + suffix
    digest: int = cityhash.CityHash128(text.encode("utf-8", "surrogatepass"))
    return digest.to_bytes(16, "big").hex()  # format(digest, "032x"), in a third of the time


# -- the record ---------------------------------------------------------------------------

def _write_init() -> str:
    """The source of ``Job.__init__``, written from the table (`wr.job_table.FIELDS`): one
    parameter per field in record order, the hot ones stored in slots, the others in a part
    made only when one of them is not its default. Print ``wr.jobs.JOB_INIT_SOURCE`` to
    read it; ``inspect.signature(Job)`` shows the parameters with their defaults."""
    params = textwrap.fill(", ".join(FIELD_NAMES), 84, initial_indent="    ",
                           subsequent_indent="    ")
    lines = ["def __init__(", "    self,", params, "):"]
    lines += [f"    self.{name} = {name}" for name in HOT_FIELDS]
    for slot, part, names in (("_rare", "Rare", RARE_FIELDS), ("_ran", "Ran", RAN_FIELDS)):
        # every default of a part is falsy (None for times): one truth test per field
        anything = " or ".join(f"{n} is not None" if BY_NAME[n].default is None else n
                               for n in names)
        lines += [f"    if {anything}:",
                  f"        self.{slot} = {part}({', '.join(names)})",
                  "    else:",
                  f"        self.{slot} = None"]
    return "\n".join(lines) + "\n"


JOB_INIT_SOURCE = _write_init()
"""``Job.__init__`` as `_write_init` writes it."""


def compiled(source: str, filename: str, namespace: dict[str, Any]) -> Any:
    """The one function ``source`` defines, compiled with ``namespace`` as its globals
    (for the code the table writes: `JOB_INIT_SOURCE`, `wr.status.STATUS_SOURCE`). Its
    source is given to `linecache`, so tracebacks and debuggers show its lines."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    (name,) = (n for n, v in namespace.items() if getattr(v, "__code__", None) is not None
               and v.__code__.co_filename == filename)
    return namespace[name]


def _make_init() -> Any:
    init = compiled(JOB_INIT_SOURCE, "<wr.jobs.Job.__init__>", {"Rare": Rare, "Ran": Ran})
    init.__defaults__ = tuple(BY_NAME[name].default for name in FIELD_NAMES[2:])
    init.__annotations__ = {name: BY_NAME[name].type for name in FIELD_NAMES}
    init.__annotations__["return"] = "None"
    init.__doc__ = ("One parameter per field of `wr.job_table.FIELDS`, in record order, "
                    "with the table's defaults (``key`` and ``cmd`` have none).")
    init.__qualname__ = "Job.__init__"
    return init


@delegate_parts
class Job:
    """One command and everything known about it: the fields of `wr.job_table.FIELDS`.

    Times are Unix seconds as floats (None when unset); memory is MB, disk GB, time
    seconds. ``Job(key, cmd, ...)`` takes every field, in the table's order, each with its
    default; ``__init__`` is written from the table (`JOB_INIT_SOURCE`).

    A manager holds a million of these, so a job keeps in its own slots only the fields
    most jobs set; the rarely used requests (containers, behaviours, mounts, ...) and the
    results of running it live in two small parts made the first time one of their fields
    is set to something other than its default (all defaults are falsy). Reading such a
    field when its part is absent gives the default. This took a queued job from 496 to
    232 bytes.
    """

    __slots__ = (*HOT_FIELDS, "_rare", "_ran")
    __init__ = _make_init()

    @property
    def rare(self) -> Rare:
        """The rarely used requests, for reading many at once (a shared all-defaults part
        when the job has none: read it, never change it)."""
        return self._rare or NO_RARE

    @property
    def results(self) -> Ran:
        """What running the job told us, for reading many at once (a shared all-defaults
        part when it never ran: read it, never change it)."""
        return self._ran or NOT_RUN

    def __repr__(self) -> str:
        return f"Job(key={self.key!r}, cmd={self.cmd!r}, state={self.state!r})"

    def adopt_rare(self, part: Rare | None) -> None:
        """Give the job this part of rare requests: its own, or one that other jobs hold
        too, which must then be marked ``shared`` (so a change copies it first)."""
        self._rare = part

    def to_record(self) -> list[Any]:
        """What the store keeps: ``[RECORD_TAG, <every field in __init__'s order>]``.

        Positional, because a million of these are written on a big add and read on every
        restart: a third of the size of a dict record, and 25 times faster to load.
        ``from_record`` is its inverse; a new field is appended at the end (old records,
        being shorter, get its default) and a removed or reordered one needs a new tag.
        """
        rare, ran = self._rare, self._ran
        return [RECORD_TAG, *get_hot(self),
                *(RARE_DEFAULTS if rare is None else get_rare(rare)),
                *(RAN_DEFAULTS if ran is None else get_ran(ran))]

    def record_bytes(self) -> bytes:
        """`to_record` encoded for the store, without the defaults of the parts a job lacks.

        A record may end early (`from_record` gives the missing fields their defaults): a
        job that never ran stores no results, and one without rare requests none of those,
        a third of the record, and of what a big add writes and syncs. It is put together
        from the encoded hot fields and each part's encoding, which a shared part keeps (a
        big add's jobs share one), into a new bytes object of exactly the right size:
        orjson returns its output in an over-sized allocation, and keeping 100,000 of them
        at once (a big add's rows before the insert) cost two fresh pages each, 200,000
        page faults and 0.4 s.
        """
        rare, ran = self._rare, self._ran
        pieces = [_RECORD_START, orjson.dumps(get_hot(self))[1:-1]]
        if rare is not None or ran is not None:
            pieces += (b",", encode_rare(rare))
        if ran is not None:
            pieces += (b",", encode_ran(ran))
        pieces.append(b"]")
        return b"".join(pieces)

    @classmethod
    def from_record(cls, record: list[Any] | dict[str, Any]) -> Job:
        """The job `to_record` (or `record_bytes`) stored, with any tag of
        `wr.job_table.RECORD_LAYOUTS`: fields a record lacks take their defaults."""
        if isinstance(record, dict):  # a keyed record, as tests and tools may write
            job = cls(**{k: v for k, v in record.items() if k in FIELD_SET})
        elif record and record[0] == RECORD_TAG and len(record) <= len(FIELD_NAMES) + 1:
            job = cls(*record[1:])
        elif (record and (names := RECORD_LAYOUTS.get(record[0])) is not None
              and len(record) <= len(names) + 1):  # an older layout: by name
            job = cls(**dict(zip(names, record[1:], strict=False)))
        else:
            raise ValueError(f"not a job record: {str(record)[:80]}")
        job.state = State(job.state)
        return job

    def compact(self) -> None:
        """Share what many jobs hold alike, because a manager holds a million of them:
        lists of names become one shared tuple per distinct list (empty ones the empty
        tuple), an empty ``other`` one shared read-only dict, and group names and paths are
        interned."""
        _share_hot(self)
        if self._rare is not None:
            self._rare = compact_rare(self._rare)
        ran = self._ran
        if ran is not None:
            ran.fail_reason = sys.intern(ran.fail_reason)

    def effective_limit_groups(self) -> list[str]:
        """Limit group names without their ``:N`` settings (sorted, deduplicated)."""
        return list(limit_plan(self.limit_grps)[1])


def jobs_that_wait(jobs: Iterable[Job]) -> list[Job]:
    """The jobs with ``deps`` or ``cmd_deps``. It reads the rare part's slot itself: run
    over every job of a big add (for its dependency check), the property took three times
    as long, and most adds wait for nothing."""
    return [j for j in jobs if j.deps or (j._rare is not None and j._rare.cmd_deps)]


def limit_plan(groups: list[str] | tuple[str, ...]
               ) -> tuple[tuple[tuple[str, int | None], ...], tuple[str, ...]]:
    """What a job's limit groups ask for: the ``name:N`` settings in order, as (name, N, or
    None for a negative N, which removes the limit), and the group names without them
    (sorted, deduplicated)."""
    given = tuple(groups)
    plan = _LIMIT_PLANS.get(given)
    if plan is None:
        if len(_LIMIT_PLANS) >= 10_000:  # jobs share a few sets; don't grow without end
            _LIMIT_PLANS.clear()
        settings = []
        names = set()
        for group in given:
            name, limit = split_limit_group(group)
            names.add(name)
            if limit is not None:
                settings.append((name, None if limit < 0 else limit))
        plan = _LIMIT_PLANS[given] = (tuple(settings), tuple(sorted(names)))
    return plan


_LIMIT_PLANS: dict[tuple[str, ...], tuple[tuple[tuple[str, int | None], ...],
                                          tuple[str, ...]]] = {}
"""`limit_plan` by limit_grps: a big add and the status objects of 100,000 jobs ask 100,000
times about the same few lists."""

_RECORD_START = orjson.dumps([RECORD_TAG])[:-1] + b","


def _write_share_hot() -> str:
    """The source of `_share_hot`: the hot fields that are lists of names (limit and dep
    groups, deps) made shared tuples, and those that are names many jobs share (groups,
    cwd; not key and cmd) interned. Written out, it took a third of the time of a loop
    over the names (0.03 s, not 0.07 s, for the 100,000 jobs of an add)."""
    lines = ["def _share_hot(job):"]
    lines += [f"    job.{n} = shared_names(job.{n})" for n in HOT_FIELDS
              if BY_NAME[n].type == NAME_LIST]
    lines += [f"    job.{n} = intern(job.{n})" for n in HOT_FIELDS[2:]
              if BY_NAME[n].type == "str"]
    return "\n".join(lines) + "\n"


_share_hot = compiled(_write_share_hot(), "<wr.jobs._share_hot>",
                      {"shared_names": shared_names, "intern": sys.intern})
NO_RARE = Rare(*RARE_DEFAULTS)
NOT_RUN = Ran(*RAN_DEFAULTS)


def _is_count_limit(group: str) -> bool:
    # Only ``name:N`` with a colon-free name: time windows (``time < 12:00:00``) are not counts.
    name, sep, limit = group.rpartition(":")
    return bool(sep) and bool(name) and ":" not in name and _COUNT.fullmatch(limit) is not None


_COUNT = re.compile(r"-?[0-9]+")

LIMIT_MAX = 2**63 - 1
"""The largest count limit: limits are stored as SQLite INTEGERs (int64)."""
LIMIT_RANGE = f"an integer from -1 (which removes the limit) to {LIMIT_MAX}"
"""What a count limit may be, in the words every refusal of one uses."""


def check_limit(limit: int, shown: str) -> int:
    """``limit`` if it is a count limit the store can hold (-1 to `LIMIT_MAX`), else
    ValueError quoting ``shown`` (how the user wrote it). One rule for ``name:N`` in a job
    and for ``PUT /rest/v1/limits/`` (issue 13: a job's ``name:-7`` used to mean "no limit"
    and ``name:2**64`` to fail its store after the jobs were stored)."""
    if not -1 <= limit <= LIMIT_MAX:
        raise ValueError(f"limit {shown} is out of range: a limit is {LIMIT_RANGE}")
    return limit


def check_limit_name(name: str) -> str:
    """``name`` if it can name a limit group, else ValueError saying why: not empty, no
    NUL (refused in every name a job gives), and no ``,`` (lists of groups are
    comma-separated) nor ``:`` (``name:N`` sets a limit)."""
    if not name:
        raise ValueError("a limit group name must not be empty")
    bad = next((c for c in ("\x00", ",", ":") if c in name), None)
    if bad is not None:
        shown = "NUL" if bad == "\x00" else f"'{bad}'"
        raise ValueError(f"limit group name {name!r} must not contain {shown}")
    return name


def check_limit_group(group: str) -> str:
    """A job's ``limit_grps`` entry if it is a group name, ``name:N`` with N in range, or
    one of wr's time windows (``time < 12:00:00``, wr.windows), else ValueError quoting it
    (a `wr.windows.WindowError` quoting the accepted forms for a window gone wrong)."""
    from wr.windows import parse

    if parse(group) is not None:
        return group
    name, limit = split_limit_group(group)  # (an N out of range raises here)
    if limit is None and ":" in name:
        raise ValueError(f"limit group {group!r} is not a name, name:N with N {LIMIT_RANGE},"
                         f" nor a time window (names cannot contain ':')")
    if name != group:  # name:N: the name's own rules, said of the whole entry
        try:
            check_limit_name(name)
        except ValueError as exc:
            raise ValueError(f"{exc} (in limit group {group!r})") from None
        return group
    return check_limit_name(group)


def split_limit_group(group: str) -> tuple[str, int | None]:
    """``name:3`` -> (``name``, 3); ``name`` -> (``name``, None). A count out of range
    (below -1, or beyond `LIMIT_MAX`) is a ValueError: such a limit could not be stored."""
    if _is_count_limit(group):
        name, _, limit = group.rpartition(":")
        try:
            return name, check_limit(int(limit), limit)
        except ValueError as exc:
            raise ValueError(f"limit group {group!r}: {exc}") from None
    return group, None


def default_req_grp(cmd: str) -> str:
    """wr's default req_grp: the basename of the command's first word (``/usr/bin/x y`` -> x)."""
    first = cmd.split(" ", 1)[0]
    return first.rsplit("/", 1)[-1] if first else "."
