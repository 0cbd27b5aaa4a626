"""LSF emulation: ``bsub``, ``bjobs`` and ``bkill`` that add, list and kill wr jobs, so that
pipelines written for LSF (Nextflow's LSF executor, cellranger/Martian, shell scripts) run
under wr unchanged (spec containers-mounts-lsf-env.md §5, issue 15).

A job added with ``wr add --bsub`` (REST ``bsub_mode``: the deployment) runs with ``bsub``,
``bjobs`` and ``bkill`` first on its PATH (`add_emulation`); each job it submits with
``bsub`` is a wr job in bsub mode too, with an LSF job id (``bsub_id``, given by the
manager's queue at add time, never repeated).

``bsub`` takes its options from ``#BSUB`` lines of a script on stdin, as wr's does, and
from its command line (which wins), followed by the command itself if it is not on stdin:

=================  =============================================================
``-J name``        the job's name: its rep group, and a dep group that ``-w done(name)``
                   of later jobs waits for (wr: rep group only)
``-o``/``-oo f``   stdout (and stderr, without ``-e``) appended / written to ``f``
``-e``/``-eo f``   stderr appended / written to ``f`` (``%J`` is the job id, ``%I`` 0)
``-M mem``         memory (MB, or with a unit: ``4GB``); memory values are then kept
                   as given (override 2), as wr does
``-n cores``       cores
``-R res``         ``rusage[mem=N]``, ``select[mem>N]`` / ``select[mem>=N]`` (memory,
                   the largest asked for) and ``span[hosts=1]`` (a wr job runs on one
                   host anyway); several ``-R`` may be given
``-W [hh:]mm``     time
``-q queue``       accepted and echoed: wr has one queue
``-w expr``        ``done(name)``, ``done(id)`` or a bare name or id, joined by ``&&``
``-cwd dir``       the working directory (default: the current one)
=================  =============================================================

Anything else (another option, another ``-w`` condition or ``-R`` section, a job array) is
refused with a message naming it; nothing is silently ignored. Everything here but
`add_emulation` is pure: parsers and formatters, tested without a manager; ``wr.cli.lsf``
does the talking.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

QUEUE = "wr"
"""The one queue wr's emulation has."""

BSUB_OPTIONS = ("-J", "-o", "-oo", "-e", "-eo", "-M", "-n", "-R", "-W", "-q", "-w", "-cwd")
"""The bsub options understood (each takes a value)."""

DEFAULT_RAM_MB = 1000
"""Memory of a bsub job that asks for none (wr's)."""
DEFAULT_TIME = "1h"
"""Time of a bsub job that asks for none (wr's)."""

EMULATION_NAMES = ("bsub", "bjobs", "bkill")
"""The commands the emulation puts on a bsub-mode job's PATH."""


class LsfError(ValueError):
    """Input the emulation cannot honour; the message says what and what is accepted."""


_BSUB_MODES = ("the deployment (production or development) whose manager 'bsub' inside the "
               "job adds its jobs to")


def check_bsub_mode(value: Any) -> str:
    """A job's ``bsub_mode`` ("" for none): it names a deployment. wr's help calls it a
    boolean, and wr stores any string, with which the job's bsub cannot find a manager."""
    from wr.config import DEPLOYMENTS

    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        shown = "true" if value is True else "false" if value is False else repr(value)
        raise LsfError(f"bsub_mode must be a string: {_BSUB_MODES}, not {shown}")
    if value not in DEPLOYMENTS:
        raise LsfError(f"bsub_mode must be {_BSUB_MODES}, not {value!r}")
    return value


# -- bsub ----------------------------------------------------------------------------------

@dataclass(slots=True)
class BsubRequest:
    """What a bsub invocation asks for, options of the script and of the command line
    merged (the command line wins)."""

    name: str = ""
    cores: float = 1.0
    memory_mb: int | None = None
    """From -M."""
    reserve_mb: int | None = None
    """The largest memory -R asked for."""
    time: str = ""
    out: str = ""
    out_overwrite: bool = False
    err: str = ""
    err_overwrite: bool = False
    queue: str = ""
    dep_names: list[str] = field(default_factory=list)
    dep_ids: list[int] = field(default_factory=list)
    cwd: str = ""
    cmd: str = ""
    req_grp: str = ""


def split_command_line(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """bsub's arguments as (options with their values, the command's words): the command
    starts at the first argument that is not an option (or after ``--``)."""
    options: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return options, list(args[i + 1:])
        if not arg.startswith("-") or arg == "-":
            break
        if arg not in BSUB_OPTIONS:
            raise LsfError(_unsupported(arg))
        if i + 1 >= len(args):
            raise LsfError(f"option {arg} needs a value")
        options += [arg, args[i + 1]]
        i += 2
    return options, list(args[i:])


def _unsupported(arg: str) -> str:
    return (f"option {arg} is not supported by wr's LSF emulation (supported: "
            f"{', '.join(BSUB_OPTIONS)}, each with a value)")


_DIRECTIVE = re.compile(r"#BSUB(?:\s+(.*))?")


def read_script(lines: Iterable[str]) -> tuple[list[str], str, str]:
    """A script given on stdin, as wr reads it: (the options of its ``#BSUB`` lines, the
    command text, the first word of its first command line, for req_grp). Every other line
    (comments and blank lines too) is trimmed and becomes a line of the command."""
    options: list[str] = []
    cmd: list[str] = []
    first = ""
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        found = _DIRECTIVE.fullmatch(line)
        if found is not None:
            try:
                words = shlex.split(found.group(1) or "")
            except ValueError as exc:
                raise LsfError(f"line {n} ({line!r}): {exc}") from None
            try:
                given, rest = split_command_line(words)
            except LsfError as exc:
                raise LsfError(f"line {n} ({line!r}): {exc}") from None
            if rest:
                raise LsfError(f"line {n} ({line!r}): {' '.join(rest)!r} is not an option; "
                               f"a #BSUB line holds options only")
            options += given
            continue
        if not first and line and not line.startswith("#"):
            first = line.split(" ", 1)[0]
        cmd.append(line + "\n")
    return options, "".join(cmd), first


def build_request(script_options: Sequence[str], options: Sequence[str],
                  command: Sequence[str], script: str = "", first_word: str = "",
                  cwd: str = "") -> BsubRequest:
    """Merge the options (those of the command line override the script's, option by
    option; ``-R`` as a whole) into a request for ``command`` (the command line's words,
    joined with spaces as LSF does) or else ``script`` (none, if it has no line but blank
    ones and comments: ``first_word`` is its first command's first word)."""
    given = _pairs(options)
    names = {name for name, _ in given}
    merged = [(n, v) for n, v in _pairs(script_options)
              if n not in names and not (n == "-R" and "-R" in names)] + given
    request = BsubRequest(cwd=cwd)
    for name, value in merged:
        _apply(request, name, value)
    if command:
        request.cmd = " ".join(command)
    elif first_word:  # a script with a command in it (wr submits blank lines and comments)
        request.cmd = script
        request.req_grp = first_word
    if request.cmd and (request.out or request.err):
        request.cmd = with_output_files(request)
    return request


def _pairs(options: Sequence[str]) -> list[tuple[str, str]]:
    return [(options[i], options[i + 1]) for i in range(0, len(options), 2)]


def _apply(request: BsubRequest, name: str, value: str) -> None:
    if name == "-J":
        if re.search(r"\[[^]]*\]$", value):
            raise LsfError(f"-J {value!r}: job arrays are not supported")
        if not value:
            raise LsfError("-J needs a job name")
        request.name = value
    elif name in ("-o", "-oo"):
        request.out, request.out_overwrite = _path(name, value), name == "-oo"
    elif name in ("-e", "-eo"):
        request.err, request.err_overwrite = _path(name, value), name == "-eo"
    elif name == "-M":
        request.memory_mb = parse_memory(value, "-M")
    elif name == "-n":
        request.cores = _cores(value)
    elif name == "-R":
        mb = parse_resources(value)
        if mb is not None:
            request.reserve_mb = max(request.reserve_mb or 0, mb)
    elif name == "-W":
        request.time = parse_run_limit(value)
    elif name == "-q":
        request.queue = value
    elif name == "-w":
        dep_names, dep_ids = parse_dependency(value)
        request.dep_names += dep_names
        request.dep_ids += dep_ids
    elif name == "-cwd":
        request.cwd = os.path.join(request.cwd, value) if request.cwd else value
    else:  # (split_command_line lets no other through)
        raise LsfError(_unsupported(name))


def _path(option: str, value: str) -> str:
    if not value:
        raise LsfError(f"{option} needs a file name")
    if "%" in value.replace("%J", "").replace("%I", ""):
        raise LsfError(f"{option} {value!r}: only %J (the job id) and %I (0: no job arrays) "
                       f"may be substituted in a file name")
    return value


def _cores(value: str) -> float:
    try:
        cores = float(value)
    except ValueError:
        raise LsfError(f"-n {value!r}: give a number of cores (a range such as 2,4 is not "
                       f"supported)") from None
    if not 0 < cores < 2**31:
        raise LsfError(f"-n {value!r}: the number of cores must be more than 0")
    return cores


_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)B?", re.IGNORECASE)
_UNIT_MB = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_memory(value: str, what: str) -> int:
    """An LSF memory amount as MB: a plain number is MB (as wr reads -M; LSF's own unit
    depends on the site's LSF_UNIT_FOR_LIMITS), or give a unit: ``500MB``, ``4G``, ``4GB``."""
    found = _MEMORY.fullmatch(value.strip())
    if found is None:
        raise LsfError(f"{what} {value!r}: give memory in MB (4000) or with a unit (4GB, "
                       f"500M)")
    mb = float(found.group(1)) * _UNIT_MB[found.group(2).upper()]
    if mb <= 0:
        raise LsfError(f"{what} {value!r}: memory must be more than 0")
    return max(1, round(mb))


_SECTION = re.compile(r"\s*(\w+)\s*\[([^]]*)\]\s*")
_MEM_TERM = re.compile(r"mem\s*(=|>=|>)\s*([0-9.]+\s*[KMGT]?B?)", re.IGNORECASE)


def parse_resources(value: str) -> int | None:
    """The memory (MB) an ``-R`` resource requirement string asks for, or None if it asks
    for none. Understood: ``rusage[mem=N]``, ``select[mem>N]``, ``select[mem>=N]`` and
    ``span[hosts=1]``; anything else is refused."""
    text = value.strip()
    if not text:
        raise LsfError("-R needs a resource requirement string")
    mb: int | None = None
    pos = 0
    while pos < len(text):
        found = _SECTION.match(text, pos)
        if found is None or found.end() == pos:
            raise LsfError(f"-R {value!r}: cannot read {text[pos:]!r}; {_RESOURCES}")
        pos = found.end()
        section, body = found.group(1).lower(), found.group(2).strip()
        if section == "span":
            if re.fullmatch(r"hosts\s*=\s*1", body) is None:
                raise LsfError(f"-R {value!r}: span[{body}] is not supported (a wr job "
                               f"runs on one host: span[hosts=1]); {_RESOURCES}")
            continue
        if section not in ("rusage", "select"):
            raise LsfError(f"-R {value!r}: {section}[...] is not supported; {_RESOURCES}")
        term = _MEM_TERM.fullmatch(body)
        operator = term.group(1) if term is not None else ""
        if term is None or (section == "rusage") != (operator == "="):
            raise LsfError(f"-R {value!r}: {section}[{body}] is not supported; {_RESOURCES}")
        mb = max(mb or 0, parse_memory(term.group(2), f"-R {value!r}:"))
    return mb


_RESOURCES = ("understood are rusage[mem=N], select[mem>N], select[mem>=N] and "
              "span[hosts=1]")


def parse_run_limit(value: str) -> str:
    """``-W [hours:]minutes`` as a wr duration (``1h30m``)."""
    found = re.fullmatch(r"(?:([0-9]+):)?([0-9]+)", value.strip())
    if found is None:
        raise LsfError(f"-W {value!r}: give the run limit as [hours:]minutes (90 or 1:30)")
    minutes = int(found.group(1) or 0) * 60 + int(found.group(2))
    if minutes <= 0:
        raise LsfError(f"-W {value!r}: the run limit must be at least a minute")
    return f"{minutes}m"


_CONDITION = re.compile(r"""(?:(\w+)\s*\(\s*(["']?)([^()"']*)\2\s*\)|([^\s()&|!"']+))""")


def parse_dependency(value: str) -> tuple[list[str], list[int]]:
    """``-w``: job names and job ids that must be done first. Understood: ``done(x)`` and a
    bare ``x`` (LSF's default condition is done), joined by ``&&``, where x is a job name
    (``-J``) or id."""
    names: list[str] = []
    ids: list[int] = []
    for part in value.split("&&"):
        found = _CONDITION.fullmatch(part.strip())
        if found is None or (found.group(1) is not None and found.group(1) != "done"):
            raise LsfError(f"-w {value!r}: {part.strip()!r} is not supported; understood are "
                           f"done(name), done(id) and bare names or ids, joined by && (wr "
                           f"runs a job once those it waits for have completed)")
        target = (found.group(3) if found.group(1) is not None else found.group(4)).strip()
        if not target or "*" in target:
            raise LsfError(f"-w {value!r}: {part.strip()!r} needs one job name or id "
                           f"(wildcards are not supported)")
        if target.isdigit():
            ids.append(int(target))
        else:
            names.append(target)
    return names, ids


def with_output_files(request: BsubRequest) -> str:
    """The command with its output sent to the -o/-e files, as LSF does (``%J`` is the
    job's id, from ``$LSB_JOBID``, which the emulation sets)."""
    cmd = request.cmd if request.cmd.endswith("\n") else request.cmd + "\n"
    redirect = ""
    if request.out:
        redirect += f" {'>' if request.out_overwrite else '>>'}{_shell_path(request.out)}"
    if request.err:
        redirect += f" 2{'>' if request.err_overwrite else '>>'}{_shell_path(request.err)}"
    elif request.out:
        redirect += " 2>&1"
    return "{ " + cmd + "}" + redirect


def _shell_path(path: str) -> str:
    pieces = path.replace("%I", "0").split("%J")
    return '"$LSB_JOBID"'.join(shlex.quote(p) if p else "" for p in pieces)


def job_object(request: BsubRequest, *, deployment: str, env_key: str,
               inherited: Mapping[str, Any] | None = None,
               dep_keys: Sequence[str] = ()) -> dict[str, Any]:
    """The REST job object for a bsub request. ``env_key``: the stored environment the job
    runs with (bsub's own, as LSF does, less what would be wrong in another job: see
    `job_environment`; stored, not sent as ``env`` overrides, so `Env` in its status stays
    what the user overrode, none). ``inherited``:
    the mounts and scheduler options of the bsub-mode job bsub runs in. ``dep_keys``: the
    keys of the jobs ``-w`` named by id."""
    if not request.cmd:
        raise LsfError("No command is specified. Job not submitted.")
    memory = max(m for m in (request.memory_mb, request.reserve_mb, 0) if m is not None)
    obj: dict[str, Any] = {
        "cmd": request.cmd, "cwd": request.cwd, "cwd_matters": True,
        "rep_grp": request.name or "bsub", "cpus": request.cores,
        "memory": f"{memory or DEFAULT_RAM_MB}M", "time": request.time or DEFAULT_TIME,
        "retries": 0, "override": 2 if memory else 0, "bsub_mode": deployment,
        "env_key": env_key,
    }
    if request.req_grp:
        obj["req_grp"] = request.req_grp
    if request.name:
        obj["dep_grps"] = [request.name]
    if request.dep_names:
        obj["deps"] = list(dict.fromkeys(request.dep_names))
    if dep_keys:
        obj["cmd_deps"] = [{"Essence": {"JobKey": key}} for key in dep_keys]
    if inherited:
        obj.update(inherited)
    return obj


_NOT_PASSED_ON = frozenset({"TMPDIR", "WR_EXECUTION_ID", "LSB_JOBID", "LSB_JOBNAME",
                            "WR_BSUB_CONFIG"})
"""Variables of bsub's environment a submitted job does not get: the directory for
temporary files of the job bsub runs in (gone when it ends), and what identifies that job
(each job gets its own)."""


def job_environment(environ: Mapping[str, str]) -> list[str]:
    """bsub's environment as a job's ``env``, less `_NOT_PASSED_ON` and anything that is
    not text."""
    out = []
    for name, value in environ.items():
        if name in _NOT_PASSED_ON or not name or "=" in name:
            continue
        item = f"{name}={value}"
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            continue
        if "\x00" not in item:
            out.append(item)
    return out


_OTHER_AS_PROPERTY = {
    "cloud_os": "cloud_os", "cloud_user": "cloud_username", "cloud_flavor": "cloud_flavor",
    "cloud_config_files": "cloud_config_files", "scheduler_queue": "queue",
    "scheduler_queues_avoid": "queues_avoid", "scheduler_misc": "misc",
}


def inherited_properties(config: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """From ``WR_BSUB_CONFIG`` (see `bsub_config`): the job properties a submitted job takes
    from the bsub-mode job bsub runs in (its mounts and scheduler options), and that job's
    deployment ("" if none)."""
    props: dict[str, Any] = {}
    mounts = config.get("MountConfigs")
    if isinstance(mounts, list) and mounts:
        props["mounts"] = mounts
    other = (config.get("Requirements") or {}).get("Other") or {}
    if isinstance(other, dict):
        for key, value in other.items():
            if key in _OTHER_AS_PROPERTY and isinstance(value, str):
                props[_OTHER_AS_PROPERTY[key]] = value
            elif key == "cloud_os_ram" and str(value).isdigit():
                props["cloud_ram"] = int(value)
            elif key == "cloud_shared":
                props["cloud_shared"] = str(value) == "true"
            elif key == "rtimeout" and str(value).isdigit():
                props["reserve_timeout"] = int(value)
    mode = config.get("BsubMode")
    return props, mode if isinstance(mode, str) else ""


def submitted_message(job_id: int, queue: str) -> str:
    """What bsub prints once the job is added."""
    if queue:
        return f"Job <{job_id}> is submitted to queue <{queue}>."
    return f"Job <{job_id}> is submitted to default queue <{QUEUE}>."


# -- bjobs ---------------------------------------------------------------------------------

FIELDS = ("JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME",
          "SUBMIT_TIME")
"""The bjobs columns, in default order."""

STAT = {"delayed": "PEND", "dependent": "PEND", "ready": "PEND", "reserved": "PEND",
        "running": "RUN", "lost": "UNKWN", "buried": "EXIT", "complete": "DONE"}
"""wr state -> LSF job status."""


@dataclass(slots=True)
class BjobsRequest:
    header: bool = True
    fields: tuple[str, ...] = FIELDS
    delimiter: str | None = None
    """None: aligned columns (the default format)."""
    queue: str = QUEUE
    ids: list[int] = field(default_factory=list)
    user: str = ""


def parse_bjobs_args(args: Sequence[str], user: str) -> BjobsRequest:
    """bjobs' arguments: ``-noheader``, ``-o format``, ``-q queue``, ``-w`` (wide: our
    columns are never cut anyway), ``-u user`` (``all`` or you: the manager runs only your
    jobs) and job ids."""
    request = BjobsRequest(user=user)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-noheader":
            request.header = False
        elif arg == "-w":
            pass  # wide output is all we print
        elif arg in ("-o", "-q", "-u"):
            if i + 1 >= len(args):
                raise LsfError(f"option {arg} needs a value")
            value = args[i + 1]
            i += 1
            if arg == "-o":
                request.fields, request.delimiter = parse_output_format(value)
            elif arg == "-q":
                request.queue = value
            elif value not in ("all", user):
                raise LsfError(f"-u {value!r}: wr's manager runs only your jobs (-u all or "
                               f"-u {user})")
        elif arg.isdigit():
            request.ids.append(int(arg))
        else:
            raise LsfError(f"option {arg} is not supported by wr's LSF emulation of bjobs "
                           f"(supported: -noheader, -o FORMAT, -q QUEUE, -u USER, -w, job "
                           f"ids)")
        i += 1
    return request


_DELIMITER = re.compile(r"""\s*delimiter\s*=\s*(["'])(.*?)\1\s*""", re.IGNORECASE)


def parse_output_format(text: str) -> tuple[tuple[str, ...], str]:
    """``-o "JOBID STAT SUBMIT_TIME delimiter=','"``: the fields and the delimiter (default
    one space)."""
    delimiter = " "
    found = _DELIMITER.search(text)
    if found is not None:
        delimiter = found.group(2)
        text = text[:found.start()] + " " + text[found.end():]
    fields = tuple(name.upper() for name in text.split())
    for name in fields:
        if name not in FIELDS:
            raise LsfError(f"unsupported field '{name}' (supported: {' '.join(FIELDS)}; no "
                           f"widths)")
    if not fields:
        raise LsfError(f"-o {text!r} names no field (supported: {' '.join(FIELDS)})")
    return fields, delimiter


def bjobs_rows(jobs: Iterable[Mapping[str, Any]], request: BjobsRequest, from_host: str
               ) -> list[list[str]]:
    """One row of cells per job (as `wr.manager.lsf_api` lists them)."""
    rows = []
    for job in jobs:
        cells = {
            "JOBID": str(job["JobID"]), "USER": request.user, "STAT": STAT.get(job["State"],
                                                                                 "UNKWN"),
            "QUEUE": request.queue, "FROM_HOST": from_host, "EXEC_HOST": job["Host"],
            "JOB_NAME": job["Name"], "SUBMIT_TIME": lsf_time(job["Submitted"]),
        }
        rows.append([cells[name] for name in request.fields])
    return rows


def lsf_time(unix: float) -> str:
    """``Mar 04 10:07``, as bjobs shows times (local time)."""
    return datetime.fromtimestamp(unix).strftime("%b %d %H:%M")


def render_bjobs(rows: Sequence[Sequence[str]], request: BjobsRequest) -> str:
    """The table: aligned columns (each as wide as its widest cell plus 3 spaces, the last
    unpadded) or, with ``-o``, cells joined by the delimiter; the header only when there
    is a row to head."""
    if not rows:
        return ""
    table = [list(request.fields), *rows] if request.header else [list(r) for r in rows]
    if request.delimiter is not None:
        return "".join(request.delimiter.join(row) + "\n" for row in table)
    widths = [max(len(row[i]) for row in table) + 3 for i in range(len(request.fields) - 1)]
    return "".join(
        "".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + row[-1] + "\n"
        for row in table)


# -- bkill ---------------------------------------------------------------------------------

def parse_bkill_args(args: Sequence[str]) -> list[int]:
    """Job ids to kill, in order, each once."""
    if not args:
        raise LsfError("job ID must be specified")
    ids: list[int] = []
    for arg in args:
        if arg.startswith("-"):
            raise LsfError(f"option {arg} is not supported by wr's LSF emulation of bkill "
                           f"(give job ids)")
        if not arg.isdigit():
            raise LsfError(f"could not convert jobID [{arg}] to an int")
        if int(arg) == 0:
            raise LsfError("job 0 (all of your jobs) is not supported by wr's LSF emulation: "
                           "give job ids")
        ids.append(int(arg))
    return list(dict.fromkeys(ids))


# -- the emulation in a running job ----------------------------------------------------------

def bsub_config(job: Any) -> str:
    """``WR_BSUB_CONFIG`` for a bsub-mode job: what the jobs it submits inherit (wr's field
    names; only those bsub reads)."""
    import orjson

    other = dict(job.other)
    config: dict[str, Any] = {"BsubMode": job.bsub_mode, "Requirements": {"Other": other}}
    if job.mounts and "cloud_shared" not in other:
        config["MountConfigs"] = list(job.mounts)
    return orjson.dumps(config).decode()


def runner_fields(job: Any) -> dict[str, Any]:
    """What a runner needs to set up the emulation for a bsub-mode job (the manager sends
    it with the job)."""
    return {"id": job.bsub_id, "name": job.rep_grp, "config": bsub_config(job)}


def add_emulation(env: dict[str, str], bsub: Mapping[str, Any], shell: str) -> None:
    """Give a bsub-mode job's environment the emulation: bsub, bjobs and bkill (links to
    this wr) first on its PATH, and the variables LSF sets and wr's bsub reads. Raises
    OSError with wr's words if the links cannot be made."""
    folder = _emulation_folder()
    env["PATH"] = folder + os.pathsep + env.get("PATH", os.defpath)
    env["WR_BSUB_CONFIG"] = str(bsub.get("config") or "{}")
    env["LSB_JOBID"] = str(bsub.get("id") or 0)
    env["LSB_JOBNAME"] = str(bsub.get("name") or "")
    env["LSF_BINDIR"] = folder
    for name in ("LSF_SERVERDIR", "LSF_LIBDIR", "LSF_ENVDIR"):
        env[name] = "/dev/null"
    env["SHELL"] = shell


_FOLDER: list[str] = []


def _emulation_folder() -> str:
    """This process's folder of links, made on first use and removed at exit."""
    if _FOLDER and os.path.isdir(_FOLDER[0]):
        return _FOLDER[0]
    wr = wr_executable()
    try:
        folder = tempfile.mkdtemp(prefix=".wr_lsf_emulation")
    except OSError as exc:
        raise OSError(f"could not create lsf emulation directory: {exc}") from exc
    for name in EMULATION_NAMES:
        try:
            os.symlink(wr, os.path.join(folder, name))
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise OSError(f"could not create {name} symlink: {exc}") from exc
    _FOLDER[:] = [folder]
    atexit.register(_remove_folder, folder)
    return folder


def _remove_folder(folder: str) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(folder)


def wr_executable() -> str:
    """The ``wr`` command of this installation: beside this Python (a virtual environment's
    bin), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "wr")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("wr")
    if found:
        return os.path.abspath(found)
    raise OSError(f"could not get path to wr: no executable 'wr' beside {sys.executable} "
                  f"or on PATH")
