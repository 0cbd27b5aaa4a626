"""Every field of a job, in one table: `FIELDS`.

A job field used to live in six places (issue 14, item 5): the slots and defaults of
`wr.jobs.Job`, the record layout, the reading of a POST, the status object, ``wr mod`` and
the flags of ``wr add`` and ``wr mod``. Now each field is one `Field` entry here, and
everything else is derived from the table:

* where the field is kept (`Part`: a slot of the job, or one of its two parts made only
  when needed, `wr.job_fields`), its default, and its place in a record (table order; a
  record tag says which fields it holds, `since`);
* ``Job(...)``'s parameters and slots (`wr.jobs` writes ``Job.__init__`` from the table);
* how a POST gives it: the job-object `Key` (or keys) that set it, each with its `Kind`
  (how its JSON value and URL-query default are read and merged, `wr.job_kinds`), a
  check, and whether the URL query may give a default (`wr.job_query`, `wr.job_shape`);
* how it shows in a status object (`Shown`: the property and its conversion; the order of
  the properties is the seed's, `STATUS_ORDER`; `wr.status` writes the function);
* whether ``wr mod`` may change it (`Key.mod`) and how a job gives the key back
  (`Key.back`, `wr.modification`);
* its command-line flags (`Flag`, `wr.cli.job_flags`): name, short flag, help, the
  default of ``wr add``, and whether ``wr mod`` offers it.

So adding a job field is one entry here plus its behaviour where that lives (the runner's
use of ``no_retry_over_walltime`` in `wr.execute`, say). A field with no keys is
internal: the queue, the store or the runner set it (state, seq, sched_group, results).

This module only describes; it imports nothing of wr, so ``wr add`` can build its flags
from it without loading the manager's code. Conversions are named (a `Kind`, a `Shown`
conversion) and implemented where they are used; tests check that every name has one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class State(enum.StrEnum):
    """A job's state, spelled as wr prints it (re-exported by `wr.jobs`)."""

    DELAYED = "delayed"
    READY = "ready"
    RESERVED = "reserved"
    RUNNING = "running"
    LOST = "lost"
    BURIED = "buried"
    DEPENDENT = "dependent"
    COMPLETE = "complete"
    DELETED = "deleted"

    def __str__(self) -> str:
        return self.value


class Part(enum.StrEnum):
    """Where a job keeps a field (see `wr.job_fields`)."""

    HOT = "hot"
    """A slot of its own: the fields most jobs set."""
    RARE = "rare"
    """The part of rarely used requests, made when one of them is first set."""
    RAN = "ran"
    """The part of what running the job told us, made when it first ran."""


class Kind(enum.StrEnum):
    """How a job-object key is read and merged with its URL-query default (§2.2.3); each
    is implemented in `wr.job_kinds`."""

    STRING = "string"
    """A string: the job's if non-empty, else the query's, else the default."""
    STRINGS = "strings"
    """An array of strings (comma-separated in the query): the job's if non-empty, else
    the query's."""
    FLAG = "flag"
    """true or false (``true`` in the query): the job's OR the query's."""
    COUNT = "count"
    """A whole number from 0: the job's if given, else the query's."""
    LEVEL = "level"
    """A whole number from 0 to `Key.top`: the job's if given, else the query's, checked
    after merging (so a bad query default fails each job, as in wr)."""
    CPUS = "cpus"
    """A number of cores from 0 (fractions allowed)."""
    MEMORY = "memory"
    """A size like ``500M``, kept in MB: the job's if given (``500K`` gives 0), else the
    query's if at least 1 MB, else the default."""
    DURATION = "duration"
    """A duration like ``1h30m``, kept in seconds, not negative: the job's if given, else
    the query's if not 0, else the default."""
    BEHAVIOURS = "behaviours"
    """An array of behaviour objects (JSON in the query)."""
    MOUNTS = "mounts"
    """An array of mount configs (JSON in the query)."""
    CMD_DEPS = "cmd_deps"
    """An array of dependency objects: (dep-group names, job keys)."""
    SCRIPT = "script"
    """A string, the path of a file on the manager's machine, whose content is kept."""


class _ReadOnlyDict(dict):  # type: ignore[type-arg]
    """An empty dict that refuses changes, so one can stand for every job's empty ``other``;
    code that wants to change a job's ``other`` assigns a new dict."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("this shared empty dict cannot be changed; assign a new one")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _refuse


NO_OTHER: dict[str, str] = _ReadOnlyDict()
"""The default ``other`` of every job: a million copies of an empty dict are 64 MB."""

NOT_OFFERED: Any = type("NotOffered", (), {"__repr__": lambda self: "NOT_OFFERED"})()
"""`Flag.add` of a flag ``wr add`` does not have."""


@dataclass(frozen=True, slots=True)
class Flag:
    """A key's command-line flag, for ``wr add`` (a default for lines without the key) and
    ``wr mod`` (a change; ``""`` clears it)."""

    help: str
    short: str = ""
    """Its one-letter form, e.g. ``-m``."""
    add: Any = ""
    """``wr add``'s default (`NOT_OFFERED`: ``wr add`` has no such flag)."""
    show_default: bool = False
    mod: bool = True
    """Whether ``wr mod`` offers it."""
    name: str = ""
    """The long name, when it is not the key's (``--mount_json`` for ``mounts``)."""
    hidden: bool = False
    metavar: str | None = None


@dataclass(frozen=True, slots=True)
class Key:
    """A key of a job object in ``POST /rest/v1/jobs/`` (matched case-insensitively), and of
    the changes of ``wr mod``."""

    name: str
    kind: Kind
    help: str
    query: bool = True
    """Whether the URL query of a POST may give a default for it (§2.2.1)."""
    common: bool = False
    """One of the keys most jobs give: a job that gives only such keys (in lower case)
    is read without lower-casing its keys, and shares its part of rare requests with the
    request's other such jobs (`wr.job_shape`)."""
    mod: bool = True
    """Whether ``wr mod`` (``POST /rest/v1/actions/modify``) may change it."""
    check: str = ""
    """A named check of each value (of each item, for lists), job's and query's alike
    (`wr.job_values.CHECKS`)."""
    top: int = 0
    """The largest value of a `Kind.LEVEL`."""
    other: str = ""
    """The entry of the job's ``other`` requests it sets (``cloud_user`` for
    ``cloud_username``), as text."""
    query_presence: bool = False
    """The key's presence in the query counts as giving it, even empty (wr's disk_set)."""
    back: str | Callable[[Any], Any] | None = None
    """How a job gives the key's value back (``wr mod`` rebuilds a job's object): a field
    name, or a function of the job (returning None: leave the key out). Unset: the field
    the key sets, except for a key of ``other`` requests, which `wr.modification` carries
    over instead. Written back in the kind's JSON form (`wr.job_kinds.json_form`)."""
    flag: Flag | None = None
    example: Any = None
    """A value other than the default, for the docs and the round-trip tests."""


@dataclass(frozen=True, slots=True)
class Shown:
    """How a field shows in a status object: the property and its conversion (one of
    `wr.status`'s, by name; "" shows the value as it is)."""

    name: str
    convert: str = ""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a job."""

    name: str
    part: Part
    default: Any
    type: str
    """Its Python type, as ``Job(...)`` declares it."""
    doc: str
    keys: tuple[Key, ...] = ()
    """The job-object keys that set it; none: an internal field."""
    take: str | Callable[[Any], Any] | None = None
    """How its value comes from the merged values of a job object's keys (a
    `wr.job_shape.Merged`, by key name), when it is not simply its one key's: another
    key's value (by name), or a function of them."""
    uses: tuple[str, ...] | None = None
    """The keys a ``take`` function reads (None: any). Jobs of a request that give none
    of them share the field's value, worked out once (`wr.job_shape`); tests check it."""
    shown: Shown | None = None
    since: str = "j1"
    """The first record tag whose layout holds it (`RECORD_LAYOUTS`)."""

    @property
    def internal(self) -> bool:
        """Set by the queue, the store or the runner, never by a request."""
        return not self.keys and self.take is None


NAME_LIST = "list[str] | tuple[str, ...]"
"""The type of a field that is a list of names (kept as one shared tuple per distinct
list: `wr.job_fields.shared_names`)."""
OTHER_KEYS = ("cloud_os", "cloud_username", "cloud_flavor", "cloud_script",
              "cloud_config_files", "cloud_ram", "cloud_shared", "queue", "queues_avoid",
              "misc", "reserve_timeout")
"""The keys that set an entry of a job's ``other`` requests (`Key.other`)."""
_ON = ("behaviours to run when the command {}, in JSON: an array of objects like "
       '{{"run":"cmd"}}, {{"cleanup":true}}, {{"cleanup_all":true}}, {{"remove":true}}')


def _behaviours_of(when: str) -> Callable[[Any], Any]:
    return lambda job: [{b["do"]: b["arg"]} for b in job.behaviours if b["when"] == when]


FIELDS: tuple[Field, ...] = (
    # -- hot: a slot of every job --------------------------------------------------------
    Field("key", Part.HOT, "", "str",
          "The job's identity: wr's CityHash128 of cmd (+cwd), mounts and container "
          "(computed).",
          shown=Shown("Key")),
    Field("cmd", Part.HOT, "", "str", "The shell command (run with bash -c).",
          keys=(Key("cmd", Kind.STRING, "The shell command (run with `bash -c`); required.",
                    query=False, common=True,
                    flag=Flag("new command line (only when exactly one command is selected)",
                              name="cmdline", add=NOT_OFFERED, metavar="CMD"),
                    example="echo changed"),),
          shown=Shown("Cmd")),
    Field("cwd", Part.HOT, "/tmp", "str",
          "Base working directory; the job runs in a unique directory below it unless "
          "cwd_matters.",
          keys=(Key("cwd", Kind.STRING,
                    "Base working directory, an absolute path (default `/tmp`).",
                    common=True, check="cwd",
                    flag=Flag("base working directory (default: the current directory); "
                              "commands run in a new unique directory below it unless "
                              "--cwd_matters", short="-c"),
                    example="/var/tmp"),),
          shown=Shown("CwdBase")),
    Field("cwd_matters", Part.HOT, False, "bool", "Run in cwd itself (part of the key).",
          keys=(Key("cwd_matters", Kind.FLAG,
                    "Run in `cwd` itself (and make it part of the key) instead of a unique "
                    "directory below it.", common=True,
                    flag=Flag("run the commands in --cwd itself (it then is part of their "
                              "identity)", add=False),
                    example=True),)),
    Field("rep_grp", Part.HOT, "manually_added", "str",
          "Report group, to ask about jobs later.",
          keys=(Key("rep_grp", Kind.STRING, "Report group (default `manually_added`).",
                    common=True,
                    flag=Flag("report group of the commands, to ask about them later",
                              short="-i", add="manually_added", show_default=True,
                              mod=False),
                    example="reports"),),
          shown=Shown("RepGroup", "rep_grp")),
    Field("req_grp", Part.HOT, "", "str",
          "Group whose learned usage sets memory and time (\"\": the command's first "
          "word).",
          keys=(Key("req_grp", Kind.STRING,
                    "Group whose past usage sets this job's memory and time (default: the "
                    "command's first word).", common=True,
                    flag=Flag("group of commands with similar resource needs, whose past "
                              "usage sets memory and time (default: the first word of the "
                              "command)", short="-g"),
                    example="aligners"),)),
    Field("ram", Part.HOT, 1024, "int", "Expected memory, MB (learned values may raise it).",
          keys=(Key("memory", Kind.MEMORY, "Peak memory, e.g. `500M`, `3G` (default 1G).",
                    common=True, back="user_ram",
                    flag=Flag("peak memory each command needs, with a unit (500M, 2G)",
                              short="-m", add="1G", show_default=True),
                    example="3G"),),
          shown=Shown("ExpectedRAM")),
    Field("time", Part.HOT, 3600.0, "float",
          "Expected run time, seconds (learned values may raise it).",
          keys=(Key("time", Kind.DURATION,
                    "Expected run time, e.g. `30s`, `1h30m`, not negative (default 1h).",
                    common=True, back="user_time",
                    flag=Flag("longest time each command should take (30m, 1h30m)",
                              short="-t", add="1h", show_default=True),
                    example="1h30m"),),
          shown=Shown("ExpectedTime", "number")),
    Field("cores", Part.HOT, 0.0, "float", "CPU cores (fractions allowed).",
          keys=(Key("cpus", Kind.CPUS, "Cores, from 0 (fractions allowed; default 0).",
                    common=True,
                    flag=Flag("CPU cores each command needs (may be fractional)", add=1.0,
                              show_default=True),
                    example=2.5),),
          shown=Shown("Cores", "number")),
    Field("disk", Part.HOT, 0, "int", "Disk space, GB.",
          keys=(Key("disk", Kind.COUNT, "Disk space, GB.", common=True,
                    query_presence=True,
                    back=lambda job: job.user_disk if job.user_disk or job.disk_set else None,
                    flag=Flag("GB of disk space each command needs (default 0)", add=None),
                    example=4),),
          shown=Shown("RequestedDisk")),
    Field("priority", Part.HOT, 0, "int", "0-255: higher-priority jobs start first.",
          keys=(Key("priority", Kind.LEVEL, "0..255: higher runs first.", common=True,
                    top=255,
                    flag=Flag("0-255: higher-priority commands start first", short="-p",
                              add=0, show_default=True),
                    example=7),)),
    Field("retries", Part.HOT, 0, "int", "Automatic retries after a failure (0-255).",
          keys=(Key("retries", Kind.LEVEL,
                    "0..255 automatic retries after a failure (default 0).", common=True,
                    top=255,
                    flag=Flag("0-255: automatic retries of a failed command before it is "
                              "buried", short="-r", add=3, show_default=True),
                    example=5),)),
    Field("limit_grps", Part.HOT, (), NAME_LIST,
          "Limit groups (name, name:N, or a time window).",
          keys=(Key("limit_grps", Kind.STRINGS,
                    "Named concurrency limits; `name:N` also sets the limit to N (from -1, "
                    "which removes it, to 2^63-1); names contain neither `,` nor `:`. A time "
                    "window such as `17:00:00 < time < 20:00:00` lets the job start only "
                    "inside it.", common=True, check="limit_group",
                    flag=Flag("comma-separated limit groups; name:N also sets that group's "
                              "limit to N", short="-l"),
                    example=["fast", "io:4"]),),
          shown=Shown("LimitGroups", "limit_groups")),
    Field("dep_grps", Part.HOT, (), NAME_LIST,
          "Dependency groups the job belongs to.",
          keys=(Key("dep_grps", Kind.STRINGS, "Dependency groups this job belongs to.",
                    common=True, mod=False,
                    flag=Flag("comma-separated dependency groups the commands belong to",
                              short="-e", mod=False),
                    example=["stage1"]),),
          shown=Shown("DepGroups", "list_or_null")),
    Field("deps", Part.HOT, (), NAME_LIST,
          "Dependency groups the job waits for (live: jobs added to them later count).",
          keys=(Key("deps", Kind.STRINGS,
                    "Dependency groups this job waits for (including jobs added to them "
                    "later).", common=True,
                    flag=Flag("comma-separated dependency groups the commands wait for "
                              "(live: re-run when one is added to again)", short="-d"),
                    example=["stage0"]),),
          # (cmd_deps' dep groups come first, then the job's own: §2.2.3)
          take=lambda v: ([*v["cmd_deps"][0], *v.from_job("deps")] if v["cmd_deps"][0]
                          else v["deps"]), uses=("cmd_deps", "deps"),
          shown=Shown("Dependencies", "dependencies")),
    Field("user_ram", Part.HOT, 1024, "int", "Memory the user asked for, MB.",
          take="memory"),
    Field("user_time", Part.HOT, 3600.0, "float", "Time the user asked for, seconds.",
          take="time"),
    Field("state", Part.HOT, State.READY, "State", "Where the job is in the queue.",
          shown=Shown("State", "state")),
    Field("until_buried", Part.HOT, 1, "int", "Failures left before the job is buried.",
          take=lambda v: v["retries"] + 1, uses=("retries",)),
    Field("attempts", Part.HOT, 0, "int", "Times the job has been started.",
          shown=Shown("Attempts")),
    Field("sched_group", Part.HOT, "", "str",
          "The scheduler group its requirements put it in."),
    Field("added", Part.HOT, 0.0, "float", "When it was added (Unix seconds).",
          take=lambda v: v.now, uses=()),
    Field("seq", Part.HOT, 0, "int", "Order of adding, for FIFO among equals."),
    # -- rare: the part of rarely used requests -----------------------------------------
    Field("change_home", Part.RARE, False, "bool", "$HOME is the unique working directory.",
          keys=(Key("change_home", Kind.FLAG,
                    "Set `$HOME` to the unique working directory.", common=True,
                    flag=Flag("without --cwd_matters, set $HOME to the unique working "
                              "directory", add=False),
                    example=True),),
          shown=Shown("HomeChanged")),
    Field("disk_set", Part.RARE, False, "bool", "Whether disk was given (even as 0).",
          take=lambda v: v["disk"] is not None, uses=("disk",)),
    Field("other", Part.RARE, NO_OTHER, "dict[str, str]",
          "Scheduler-specific requests (cloud, LSF queue, ...), name to text.",
          keys=(
              Key("cloud_os", Kind.STRING, "Cloud OS image.", other="cloud_os",
                  example="ubuntu"),
              Key("cloud_username", Kind.STRING, "Cloud OS user.", other="cloud_user",
                  example="admin"),
              Key("cloud_flavor", Kind.STRING, "Cloud server flavor.", other="cloud_flavor",
                  example="m1.small"),
              Key("cloud_script", Kind.SCRIPT,
                  "Path of a file on the manager's machine (at most 1 MiB) whose content "
                  "is stored.", other="cloud_script"),
              Key("cloud_config_files", Kind.STRING, "Cloud config files to copy.",
                  other="cloud_config_files", example="~/.s3cfg"),
              Key("cloud_ram", Kind.COUNT, "MB of memory for the cloud OS.",
                  other="cloud_os_ram", example=2048),
              Key("cloud_shared", Kind.FLAG, "Share a cloud server's disk.",
                  other="cloud_shared", example=True),
              Key("queue", Kind.STRING, "Scheduler queue.", query=False,
                  other="scheduler_queue", example="long"),
              Key("queues_avoid", Kind.STRING, "Scheduler queues to avoid.", query=False,
                  other="scheduler_queues_avoid", example="short"),
              Key("misc", Kind.STRING, "Other scheduler options.", query=False,
                  other="scheduler_misc", example="-R avx"),
          ),
          take=lambda v: v.other_requests(), uses=OTHER_KEYS,
          shown=Shown("OtherRequests", "other")),
    Field("override", Part.RARE, 0, "int",
          "0: learned memory/time replace the user's; 1: only if higher; 2: never.",
          keys=(Key("override", Kind.LEVEL,
                    "0: learned values replace yours; 1: only if higher; 2: keep yours.",
                    common=True, top=2,
                    flag=Flag("do your memory/time values beat learned ones? 0|no|n, "
                              "1|higher|h (if higher), 2|always|a", short="-o", add="no",
                              show_default=True),
                    example=2),)),
    Field("no_retry_over_walltime", Part.RARE, 0.0, "float",
          "A failure after running longer than this (seconds) is not retried.",
          keys=(Key("no_retry_over_walltime", Kind.DURATION,
                    "Don't retry a failure that ran longer than this (not negative).",
                    common=True,
                    flag=Flag("do not retry a command that failed after running longer "
                              "than this", short="-n"),
                    example="2h"),)),
    Field("modules", Part.RARE, (), NAME_LIST,
          "Environment modules to load first.",
          keys=(Key("modules", Kind.STRINGS, "Environment modules to load.", query=False,
                    flag=Flag("comma-separated environment modules to load before "
                              "running"),
                    example=["samtools/1.9"]),),
          shown=Shown("Modules", "list_or_null")),
    Field("cmd_deps", Part.RARE, (), NAME_LIST,
          "Keys of the jobs it waits for, named by their essence.",
          keys=(Key("cmd_deps", Kind.CMD_DEPS,
                    "wr's dependency objects (a dependency group, or a job named by its "
                    "essence).", query=False,
                    back=lambda job: [{"Essence": {"JobKey": k}} for k in job.cmd_deps],
                    flag=Flag("commands the commands wait for: cmd1,cwd1,cmd2,cwd2,... (cwd "
                              "empty unless it mattered)"),
                    example=[{"Essence": {"JobKey": "0123456789abcdef0123456789abcdef"}}]),),
          take=lambda v: v["cmd_deps"][1], uses=("cmd_deps",)),
    Field("behaviours", Part.RARE, (), "list[dict[str, Any]] | tuple[dict[str, Any], ...]",
          "What to do after a run: {when, do, arg} records.",
          keys=tuple(
              Key(when, Kind.BEHAVIOURS, _ON.format(what), back=_behaviours_of(when),
                  flag=Flag(_ON.format(what) + extra, add=default,
                            show_default=bool(default)),
                  example=[{"run": "echo done"}])
              for when, what, default, extra in (
                  ("on_failure", "fails", "", ""),
                  ("on_success", "succeeds", "", ""),
                  ("on_exit", "ends either way", '[{"cleanup":true}]',
                   " (wr add's default deletes the unique working directory)"))),
          take=lambda v: [*v["on_failure"], *v["on_success"], *v["on_exit"]],
          uses=("on_failure", "on_success", "on_exit"),
          shown=Shown("Behaviours", "behaviours")),
    Field("mounts", Part.RARE, (), "list[dict[str, Any]] | tuple[dict[str, Any], ...]",
          "S3 mount configs (part of the key).",
          keys=(Key("mounts", Kind.MOUNTS,
                    "Mount configs (they change the key); see `wr mount`.",
                    flag=Flag("S3 buckets to mount while the commands run, in JSON (see "
                              "'wr mount -h')", short="-j", name="mount_json", add=None),
                    example=[{"Mount": "m", "Targets": [{"Path": "bucket/dir"}]}]),),
          shown=Shown("Mounts", "mounts")),
    Field("monitor_docker", Part.RARE, "", "str",
          "Docker container whose usage counts as the job's.",
          keys=(Key("monitor_docker", Kind.STRING,
                    "Docker container (name, or a --cidfile path, or `?`) whose memory and "
                    "CPU count as the job's.",
                    flag=Flag("docker container (--name or --cidfile path, or ? for the "
                              "first one started) whose memory and CPU to add to the "
                              "command's"),
                    example="?"),),
          shown=Shown("MonitorDocker")),
    Field("with_docker", Part.RARE, "", "str", "Docker image to run in (part of the key).",
          keys=(Key("with_docker", Kind.STRING,
                    "Docker image to run the job in (changes the key).",
                    flag=Flag("run the commands in a docker container of this image (pulled "
                              "if missing), in their working directory, with --env's "
                              "variables"),
                    example="ubuntu:22.04"),),
          shown=Shown("WithDocker")),
    Field("with_singularity", Part.RARE, "", "str",
          "Singularity image to run in (part of the key).",
          keys=(Key("with_singularity", Kind.STRING,
                    "Singularity image to run the job in (changes the key).",
                    flag=Flag("run the commands in a singularity container of this image "
                              "(local path or remote URI)"),
                    example="/images/tool.sif"),),
          shown=Shown("WithSingularity")),
    Field("container_mounts", Part.RARE, "", "str",
          "/outside[:/inside][:ro] mounts for the container (part of the key).",
          keys=(Key("container_mounts", Kind.STRING,
                    "Comma-separated `/outside[:/inside][:ro]` mounts for the container "
                    "(changes the key).",
                    flag=Flag("comma-separated /outside[:/inside][:ro] mounts for the "
                              "container"),
                    example="/data:/data:ro"),),
          shown=Shown("ContainerMounts")),
    Field("env", Part.RARE, (), NAME_LIST,
          "NAME=VALUE overrides of the environment.",
          keys=(Key("env", Kind.STRINGS, "`NAME=VALUE` overrides of the environment.",
                    check="env",
                    flag=Flag("comma-separated NAME=VALUE environment variables to set for "
                              "the commands"),
                    example=["A=1", "B=two"]),)),
    Field("group", Part.RARE, "", "str", "Unix group to run as.",
          keys=(Key("group", Kind.STRING, "Unix group to run the job as.", query=False,
                    flag=Flag("unix group to run the commands as"),
                    example="staff"),)),
    Field("bsub_mode", Part.RARE, "", "str",
          "LSF emulation: the deployment its bsub adds to.",
          keys=(Key("bsub_mode", Kind.STRING,
                    "`production` or `development`: the job runs with the LSF emulation's "
                    "bsub, bjobs and bkill, adding to that deployment's manager, and gets an "
                    "LSF job id.", mod=False, check="bsub_mode",
                    example="development"),)),  # (wr add's --bsub sets it: wr.cli.add)
    Field("reserve_timeout", Part.RARE, 0, "int",
          "Seconds a runner waits for more work before it exits.",
          keys=(Key("reserve_timeout", Kind.COUNT,
                    "Seconds a runner waits for more work before it exits.", query=False,
                    other="rtimeout", back=lambda job: job.reserve_timeout or None,
                    flag=Flag("seconds a runner waits for more work before it exits",
                              add=None, hidden=True, mod=False),
                    example=30),)),
    Field("user_disk", Part.RARE, 0, "int", "Disk the user asked for, GB.",
          take=lambda v: v["disk"] or 0, uses=("disk",)),
    Field("kill_called", Part.RARE, False, "bool", "A kill was asked for while it ran."),
    Field("recovered", Part.RARE, False, "bool",
          "Restored as running after a manager restart."),
    Field("delay", Part.RARE, 0.0, "float", "Seconds before a retry (back-off)."),
    Field("bsub_id", Part.RARE, 0, "int", "Its LSF job id, in bsub mode (issue 15).",
          since="j3"),
    # -- ran: what running it told us ---------------------------------------------------
    Field("exited", Part.RAN, False, "bool", "Whether the command exited.",
          shown=Shown("Exited")),
    Field("exitcode", Part.RAN, 0, "int", "Its exit code.", shown=Shown("Exitcode")),
    Field("fail_reason", Part.RAN, "", "str", "Why it failed, in wr's words.",
          shown=Shown("FailReason")),
    Field("pid", Part.RAN, 0, "int", "Its process id.", shown=Shown("Pid")),
    Field("host", Part.RAN, "", "str", "Where it ran.", shown=Shown("Host")),
    Field("host_id", Part.RAN, "", "str", "The id of where it ran.", shown=Shown("HostID")),
    Field("host_ip", Part.RAN, "", "str", "The address of where it ran.",
          shown=Shown("HostIP")),
    Field("started", Part.RAN, None, "float | None", "When it started (Unix seconds).",
          shown=Shown("Started", "unix")),
    Field("ended", Part.RAN, None, "float | None", "When it ended (Unix seconds).",
          shown=Shown("Ended", "unix")),
    Field("peak_ram", Part.RAN, 0, "int", "Peak memory, MB.", shown=Shown("PeakRAM")),
    Field("peak_disk", Part.RAN, 0, "int", "Peak disk, MB.", shown=Shown("PeakDisk")),
    Field("cpu_time", Part.RAN, 0.0, "float", "CPU seconds used.",
          shown=Shown("CPUtime", "number")),
    Field("actual_cwd", Part.RAN, "", "str", "The directory it ran in.",
          shown=Shown("Cwd", "display_cwd")),
    Field("reserved_by", Part.RAN, "", "str", "The runner that holds it."),
)
"""Every field of a job, in record order: the hot fields, then the rare part's, then the
results part's. Append a new field at the end of its part; see `RECORD_LAYOUTS`."""


# -- the status object ------------------------------------------------------------------

STATUS_ORDER = (
    "Key", "RepGroup", "DepGroups", "Dependencies", "Cmd", "State", "Cwd", "CwdBase",
    "HomeChanged", "Behaviours", "Mounts", "MonitorDocker", "WithDocker", "WithSingularity",
    "ContainerMounts", "ExpectedRAM", "ExpectedTime", "RequestedDisk", "OtherRequests",
    "Cores", "PeakRAM", "PeakDisk", "Exited", "Exitcode", "FailReason", "Pid", "Host",
    "HostID", "HostIP", "Walltime", "CPUtime", "Started", "Ended", "StdErr", "StdOut", "Env",
    "Attempts", "Similar", "LimitGroups", "Modules", "IsPushUpdate",
)
"""The properties of a status object, in the seed's order (spec/rest-and-queue.md §3.1)."""
STATUS_EXTRAS = ("Walltime", "StdErr", "StdOut", "Env", "Similar", "IsPushUpdate")
"""The properties no one field gives: worked out when asked, or given by the caller
(`wr.status`)."""


# -- derived views ----------------------------------------------------------------------

def _names(part: Part) -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS if f.part is part)


BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
HOT_FIELDS = _names(Part.HOT)
"""The fields every job keeps in its own slots, in record order."""
RARE_FIELDS = _names(Part.RARE)
"""The requests few jobs make, and flags few jobs ever raise."""
RAN_FIELDS = _names(Part.RAN)
"""What running a job told us; a job that never ran has none of it."""
FIELD_NAMES = (*HOT_FIELDS, *RARE_FIELDS, *RAN_FIELDS)
"""Every field, in the order of ``Job(...)``'s parameters and of records."""
KEYS: tuple[Key, ...] = tuple(k for f in FIELDS for k in f.keys)
"""Every job-object key, in table order."""
KEY_FIELD: dict[str, Field] = {k.name: f for f in FIELDS for k in f.keys}
"""The field each key sets."""

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
"""The first record layout (tag ``j1``), whose order was not the parts': history, kept so
that its records are still read."""
TAGS = ("j2", "j3")
"""The record tags of the parts' order, oldest first; a field's `since` is one of them
(or ``j1``)."""
RECORD_LAYOUTS: dict[str, tuple[str, ...]] = {
    V1_TAG: V1_NAMES,
    **{tag: tuple(f.name for f in FIELDS if f.since == V1_TAG or TAGS.index(f.since)
                  <= TAGS.index(tag)) for tag in TAGS},
}
"""The fields each record tag holds, in order. A record lists its tag, then the values of
its layout, and may stop early: the missing fields take their defaults (a job that never
ran stores no results). So a field appended at the end of the results part needs no new
tag; any other new field (or a removed or reordered one) needs one, added to `TAGS` and
named by the field's `since`, with the older layouts still read."""
RECORD_TAG = TAGS[-1]
"""The tag records are written with."""


def _check_table() -> None:
    """The rules the rest of the code relies on, checked once at import."""
    assert HOT_FIELDS[:2] == ("key", "cmd"), "Job(...) takes key and cmd first"
    assert len(set(FIELD_NAMES)) == len(FIELD_NAMES), "a field is named twice"
    assert len(KEY_FIELD) == len(KEYS), "a key is named twice"
    for f in FIELDS:
        if f.part is not Part.HOT:
            # "is there anything to keep?" is one truth test of the part's values
            assert not f.default, f"{f.name}: a part's defaults must be falsy"
        assert f.since == V1_TAG or f.since in TAGS, f.name
    assert set(OTHER_KEYS) == {k.name for k in KEYS if k.other}, "see OTHER_KEYS"
    for f in FIELDS:
        assert isinstance(f.take, str) or f.uses is None or set(f.uses) <= set(KEY_FIELD), f
        assert f.take is not None or len(f.keys) <= 1, f"{f.name}: how do its keys combine?"
    shown = [f.shown.name for f in FIELDS if f.shown is not None]
    assert sorted(shown + list(STATUS_EXTRAS)) == sorted(STATUS_ORDER), shown


_check_table()


# -- for the documents (OpenAPI, docs/) -------------------------------------------------

_SCHEMAS: dict[Kind, dict[str, Any]] = {
    Kind.STRING: {"type": ["string", "null"]},
    Kind.SCRIPT: {"type": ["string", "null"]},
    Kind.STRINGS: {"type": ["array", "null"], "items": {"type": "string"}},
    Kind.FLAG: {"type": ["boolean", "null"]},
    Kind.COUNT: {"type": ["integer", "null"], "minimum": 0,
                 "maximum": 9223372036854775807},
    Kind.LEVEL: {"type": ["integer", "null"], "minimum": 0},
    Kind.CPUS: {"type": ["number", "null"], "minimum": 0, "maximum": 2147483647},
    Kind.MEMORY: {"oneOf": [{"$ref": "#/components/schemas/Memory"}, {"type": "null"}]},
    Kind.DURATION: {"oneOf": [{"$ref": "#/components/schemas/Duration"}, {"type": "null"}]},
    Kind.BEHAVIOURS: {"$ref": "#/components/schemas/Behaviours"},
    Kind.MOUNTS: {"type": ["array", "null"],
                  "items": {"$ref": "#/components/schemas/MountConfig"}},
    Kind.CMD_DEPS: {"type": ["array", "null"], "items": {"$ref": "#/components/schemas/CmdDep"}},
}


def key_schema(key: Key) -> dict[str, Any]:
    """The JSON Schema of a key's value in a job object, with its help as description (the
    ``Memory``, ``Duration``, ``Behaviours``, ``MountConfig`` and ``CmdDep`` components it
    refers to are the OpenAPI document's)."""
    schema = dict(_SCHEMAS[key.kind])
    if key.kind is Kind.LEVEL:
        schema["maximum"] = key.top
    if key.name == "cmd":
        schema = {"type": "string", "minLength": 1}
    schema["description"] = key.help
    return schema


def job_keys() -> list[tuple[str, dict[str, Any], bool]]:
    """Every job-object key with its schema, and whether the URL query of a POST may give a
    default for it: what the OpenAPI document's ``JobInput`` and the POST's query
    parameters are made of."""
    return [(k.name, key_schema(k), k.query) for k in KEYS]
