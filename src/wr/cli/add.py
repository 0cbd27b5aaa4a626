"""``wr add``: add commands to the queue, from stdin or a file, one per line (spec cli §1.2).

A line is a bare command, a JSON object with ``cmd`` and any job options, or a command, a
TAB and a JSON object of options. The flags are defaults for lines that leave an option out.
A bad line is named (``line 3 had a problem: ...``) and nothing is added. Jobs go to the
manager in batches of `BATCH` (each one atomic) through ``POST /rest/v1/add/``, which answers
with counts rather than a status object per job: 100,000 commands cost one request and one
small answer. An input of one batch is checked by the manager alone (it adds all or none);
only when it refuses are the lines checked here, to name the bad one. A longer input is
checked here first, since its batches are separate steps.

Bare commands (the common case at scale) are not run through the full job conversion
client-side: once the flag defaults have been checked, nothing about a bare line can be
wrong except a NUL or bad UTF-8, which are checked over the whole input at once. JSON lines
are converted with `wr.submission.job_from_object`, the manager's own rules.

Differences from wr (docs/cli.md): the environment of ``wr add`` is not sent (jobs run with
the runner's environment plus ``--env``); the cloud, LSF and container-user options are
not offered. ``--bsub`` is (wr.lsf: the job runs with wr's bsub, bjobs and bkill).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from typing import Any

import click

from wr.cli.job_flags import add_defaults, job_options, mounts_option, simple_mounts
from wr.cli.options import deployment_option, info, load

__all__ = ["BATCH", "add", "mounts_option", "parse_lines", "read_input", "simple_mounts"]

BATCH = 100_000
"""Jobs per POST: each is one atomic step on the manager (of about 2 s for this many)."""
PROGRESS_MIN = 10_000
"""Inputs at least this long show a progress bar (when stderr is a terminal)."""
RELATIVE_CHECK_LIMIT = 10_000
"""Commands looked at for relative paths (the check costs a few µs a line)."""
SYNC_POLL_START = 0.5
"""--sync: seconds before the first status poll; each wait is 1.1 times the last."""
SYNC_POLL_MAX = 60.0
"""--sync: the longest wait between polls."""


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


# -- reading the input ------------------------------------------------------------------------

class LineError(click.ClickException):
    """A bad input line: wr's own wording, exit status 1, nothing added."""


def read_input(path: str) -> str:
    """The whole input as text (``-`` is stdin); bad UTF-8 names its line."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise click.ClickException(f"could not open file '{path}': {exc.strerror or exc}"
                                   ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LineError(f"line {line} had a problem: it is not valid UTF-8 text") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise LineError(f"line {line} had a problem: it contains a NUL character")
    return text


def parse_lines(text: str) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """Turn the input into job objects (spec cli §1.2 "Input format").

    Returns the objects, the line number of each, and the indexes of those that came from
    JSON (only they need the full conversion check). Empty lines, and lines whose first
    TAB-separated column is empty, are skipped, as in wr.
    """
    import orjson

    objects: list[dict[str, Any]] = []
    numbers: list[int] = []
    from_json: list[int] = []
    append = objects.append
    # Lines mostly give the same options after their command: read each text once.
    options: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line[-1] == "\r":
            line = line[:-1]
            if not line:
                continue
        if "\t" in line:
            cols = line.split("\t")
            if not cols[0]:
                continue
            if len(cols) > 2:
                raise LineError(f"line {n} has too many columns; check `wr add -h`")
            found = options.get(cols[1])
            if found is None:
                found = _documented_cmd_deps(_json_object(orjson, cols[1], n))
                if len(options) < 1000:
                    options[cols[1]] = found
            obj = dict(found)  # its values are shared, and never changed in place
            obj["cmd"] = cols[0]  # column 1 beats a cmd in the JSON
            from_json.append(len(objects))
            append(obj)
            numbers.append(n)
        elif line[0] == "{":
            from_json.append(len(objects))
            append(_documented_cmd_deps(_json_object(orjson, line, n)))
            numbers.append(n)
        else:
            append({"cmd": line})
            numbers.append(n)
    return objects, numbers, from_json


def _json_object(orjson: Any, text: str, n: int) -> dict[str, Any]:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"line {n} had a problem with the JSON: {exc}") from None
    if not isinstance(obj, dict):
        kind = "an array" if isinstance(obj, list) else f"{type(obj).__name__} value"
        raise LineError(f"line {n} had a problem with the JSON: expected an object of job "
                        f"options, got {kind}")
    return obj


def _documented_cmd_deps(obj: dict[str, Any]) -> dict[str, Any]:
    """``cmd_deps`` as wr documents it, ``[{"cmd": ..., "cwd": ...}]``, in the form the
    REST API takes (``{"Essence": {"Cmd", "Cwd"}}``); spec cli §1.2 says to implement the
    documented form. Entries already in the REST form pass through."""
    deps = obj.get("cmd_deps")
    if not isinstance(deps, list):
        return obj
    converted = []
    for dep in deps:
        if isinstance(dep, dict):
            lowered = {str(k).lower(): v for k, v in dep.items()}
            if "cmd" in lowered and "essence" not in lowered and "depgroup" not in lowered:
                dep = {"Essence": {"Cmd": lowered["cmd"], "Cwd": lowered.get("cwd") or ""}}
        converted.append(dep)
    obj["cmd_deps"] = converted
    return obj


def lacks(obj: dict[str, Any], name: str) -> bool:
    """True if a job object gives no value for ``name`` (keys are case-insensitive)."""
    value = obj.get(name)
    if value is None and len(obj) > 1:
        for k, v in obj.items():
            if k.lower() == name:
                value = v
                break
    return value is None or value == "" or value == []


# -- where the manager is ------------------------------------------------------------------

def _is_local(url: str) -> bool:
    """Whether the manager at ``url`` runs on this machine (wr then defaults cwd to the
    current directory; for a remote manager, to /tmp)."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host in ("localhost", "127.0.0.1", "::1") or host == socket.gethostname():
        return True
    try:
        address = socket.gethostbyname(host)
        return address.startswith("127.") or address == socket.gethostbyname(
            socket.gethostname())
    except OSError:
        return False


# -- the relative path check -------------------------------------------------------------------

_RELATIVE_WARNING = (
    "a job may fail because it seems to contain relative paths, but the job would run in a "
    "newly created unique sub-directory.\nUse absolute paths instead, or say --cwd_matters."
    "\nYou can also use --disable_relative_check to disable this warning.")


def mentions_relative_path(cmd: str, entries: frozenset[str], exes: dict[str, bool]) -> bool:
    """Whether ``cmd`` names something in a directory whose entries are ``entries`` by a
    relative path (a heuristic, as wr's: false positives and negatives are possible). The
    first word is skipped when it is a program on $PATH."""
    words = cmd.split()
    for i, word in enumerate(words):
        word = word.strip("'\"").rstrip(";)")
        if "=" in word:
            word = word.split("=", 1)[1]
        if word.startswith("./"):
            word = word[2:]
        if not word or word.startswith(("/", "~", "$", "-")):
            continue
        first = word.split("/", 1)[0]
        if first not in entries:
            continue
        if i == 0:
            found = exes.get(word)
            if found is None:
                found = exes[word] = shutil.which(word) is not None
            if found:
                continue
        return True
    return False


def check_relative_paths(objects: list[dict[str, Any]], default_cwd: str,
                         cwd_matters: bool) -> None:
    """Warn once if a job whose working directory will be a new unique one seems to refer
    to files in its cwd by relative paths (spec cli §1.2). Only the first
    `RELATIVE_CHECK_LIMIT` commands are looked at: it is a hint, and big inputs are made by
    scripts that write every line alike."""
    listings: dict[str, frozenset[str]] = {}
    exes: dict[str, bool] = {}
    for obj in objects[:RELATIVE_CHECK_LIMIT]:
        if cwd_matters or len(obj) > 1 and obj.get("cwd_matters") is True:
            continue
        cwd = default_cwd if len(obj) == 1 or lacks(obj, "cwd") else str(obj.get("cwd"))
        entries = listings.get(cwd)
        if entries is None:
            try:
                entries = listings[cwd] = frozenset(os.listdir(cwd))
            except OSError:
                entries = listings[cwd] = frozenset()
        if entries and mentions_relative_path(str(obj.get("cmd", "")), entries, exes):
            warn(_RELATIVE_WARNING)
            return


# -- the command --------------------------------------------------------------------------------

@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", "file_", default="-", show_default=True,
              help="file of commands, one per line: a command, a JSON object with cmd, or "
                   "command TAB JSON; - reads stdin")
@job_options("add")
@click.option("--bsub", is_flag=True,
              help="LSF emulation: the commands run with bsub, bjobs and bkill that add, "
                   "list and kill wr jobs of this deployment (see 'wr lsf -h')")
@click.option("--rerun", is_flag=True,
              help="run again commands that were added before and have completed")
@click.option("--disable_relative_check", is_flag=True,
              help="do not warn about commands that seem to use relative paths")
@click.option("-s", "--simple", is_flag=True,
              help="print only the ids of the commands now in the queue, one per line")
@click.option("--sync", is_flag=True,
              help="add exactly one command, wait for it to finish, print its output and "
                   "exit with its exit code")
@click.option("--timeout", type=click.IntRange(1), default=120, show_default=True,
              help="seconds to wait for the manager to answer")
@deployment_option
def add(file_: str, bsub: bool, rerun: bool, disable_relative_check: bool, simple: bool,
        sync: bool, timeout: int, deployment: str | None, **flags: Any) -> None:
    """Add commands to the queue.

    Give the commands on stdin or with -f, one per line. A line is either a command
    ("echo hello"), a JSON object of job options with a "cmd" ({"cmd":"echo hi",
    "memory":"50M"}), or a command, a TAB and a JSON object of options. JSON options are
    named as in the REST API (cmd, cwd, cwd_matters, change_home, rep_grp, req_grp, memory,
    time, cpus, disk, override, priority, retries, no_retry_over_walltime, dep_grps, deps,
    cmd_deps, limit_grps, modules, env, on_failure, on_success, on_exit, mounts, group,
    ...) and win over the flags, which are defaults.

    Commands already in the queue, or already completed (unless --rerun), are duplicates
    and are not added again. A bad line is reported with its number and nothing is added.
    """
    query, extra = add_defaults(flags)
    cwd, cwd_matters = flags["cwd"], flags["cwd_matters"]
    config = load(deployment)

    # A big input makes hundreds of thousands of objects that all live to the end: let the
    # collector run less often than its default of every 700 allocations.
    import gc

    gc.set_threshold(50_000, 20, 100)
    text = read_input(file_)
    objects, numbers, from_json = parse_lines(text)
    del text
    if sync and len(objects) != 1:
        raise click.ClickException("You must add exactly 1 command when using synchronous "
                                   "mode.")

    from wr.client import Client
    from wr.errors import WrError

    try:
        client = Client.for_deployment(config=config, timeout=timeout)
    except WrError as exc:
        raise click.ClickException(exc.message) from exc
    with client:
        local = _is_local(client.base_url)
        if cwd:
            default_cwd = cwd
        elif local or cwd_matters:
            default_cwd = os.getcwd()
        else:
            default_cwd = "/tmp"
            if any(lacks(obj, "cwd") for obj in objects):
                warn("command working directories defaulting to /tmp since the manager is "
                     "running remotely")
        query["cwd"] = default_cwd
        if bsub:
            query["bsub_mode"] = config.deployment
        if rerun:
            query["rerun"] = "true"
        _apply(objects, extra)

        def check() -> None:
            _check(objects, numbers, from_json, query, extra)

        show_progress = len(objects) >= PROGRESS_MIN and sys.stderr.isatty()
        size = _batch_size(len(objects), show_progress)
        if len(objects) > size:
            check()
        if not disable_relative_check:
            check_relative_paths(objects, default_cwd, cwd_matters)
        defaulted = (query.get("rep_grp", "manually_added")
                     if any(lacks(obj, "rep_grp") for obj in objects) else None)
        added, existed, keys = _send(client, objects, query, want_keys=simple or sync,
                                     size=size, progress_bar=show_progress, locate=check)

        if sync:
            if not keys:
                sys.exit(1)
            _wait_and_exit(client, keys[0])
    if simple:
        if not keys:
            sys.exit(1)
        click.echo("\n".join(keys))
        return
    suffix = f" using default identifier '{defaulted}'" if defaulted is not None else ""
    info(f"Added {added} new commands ({existed} were duplicates) to the queue{suffix}")


def _apply(objects: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    if not extra:
        return
    for obj in objects:
        for name, value in extra.items():
            if lacks(obj, name):
                obj[name] = value


def _check(objects: list[dict[str, Any]], numbers: list[int], from_json: Iterable[int],
           query: dict[str, str], extra: dict[str, Any]) -> None:
    """Check the flag defaults once, then every JSON line, with the manager's own rules;
    bare lines need no more checking (see the module docstring)."""
    from wr.errors import BadRequest
    from wr.submission import (
        PROBLEM,
        BadJobObject,
        check_job_objects,
        job_from_object,
        parse_query_defaults,
    )

    try:
        defaults, _ = parse_query_defaults(query)
        if extra:  # the per-job defaults, checked once on a stand-in job
            job_from_object({"cmd": "true", **extra}, defaults)
    except BadRequest as exc:
        raise click.ClickException(exc.message.removeprefix(PROBLEM)) from None
    try:
        check_job_objects(objects, defaults, from_json)
    except BadJobObject as exc:
        raise LineError(f"line {numbers[exc.index]} had a problem: "
                        f"{exc.message.removeprefix(PROBLEM)}") from None


def _batch_size(total: int, progress_bar: bool) -> int:
    """Jobs per request: `BATCH`, or with a bar ten smaller batches so it moves."""
    return max(PROGRESS_MIN, min(BATCH, -(-total // 10))) if progress_bar else BATCH


def _send(client: Any, objects: list[dict[str, Any]], query: dict[str, str], *,
          want_keys: bool, size: int, progress_bar: bool,
          locate: Any) -> tuple[int, int, list[str]]:
    """POST the jobs in batches; returns (added, existed, keys of the jobs now queued).
    ``locate`` names the bad line (raising) when the manager refuses the first batch."""
    import orjson

    from wr.client import ClientError
    from wr.errors import WrError

    added = existed = 0
    keys: dict[str, None] = {}
    total = len(objects)
    progress = None
    if progress_bar:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        progress = Progress("adding commands", BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True),
                            transient=True)
        task = progress.add_task("add", total=total)
        progress.start()
    try:
        for start in range(0, total, size):
            body = orjson.dumps(objects[start:start + size])
            try:
                answer = client.submit(body, keys=want_keys, **query)
            except WrError as exc:
                if start == 0 and isinstance(exc, ClientError) and exc.status == 400:
                    if progress is not None:
                        progress.stop()
                    locate()  # names the line, if the rules here see the problem too
                done = f" (the first {start} commands were added)" if start else ""
                raise click.ClickException(f"{exc.message}{done}") from exc
            added += answer["Added"]
            existed += answer["Existed"]
            keys.update(dict.fromkeys(answer.get("Keys") or ()))
            if progress is not None:
                progress.update(task, completed=min(start + size, total))
    finally:
        if progress is not None:
            progress.stop()
    return added, existed, list(keys)


def _wait_and_exit(client: Any, key: str) -> None:
    """--sync: poll the job until it is complete or buried, print its stored output, and
    exit with its exit code (spec cli §1.2)."""
    from wr.errors import WrError

    delay = SYNC_POLL_START
    while True:
        time.sleep(delay)
        try:
            found = client.status(key, std="true")
        except WrError as exc:
            raise click.ClickException(exc.message) from exc
        if not found:
            raise click.ClickException(f"job {key} is no longer in the queue")
        job = found[0]
        if job["State"] in ("complete", "buried"):
            break
        delay = min(delay * 1.1, SYNC_POLL_MAX)
    if job.get("StdOut"):
        click.echo(job["StdOut"])
    if job.get("StdErr"):
        click.echo(job["StdErr"], err=True)
    sys.exit(int(job["Exitcode"]))
