"""``wr lsf bsub|bjobs|bkill``, also run as ``bsub``, ``bjobs`` and ``bkill`` (links to wr,
which a job added with ``wr add --bsub`` finds first on its PATH): LSF's commands acting on
wr jobs (spec containers-mounts-lsf-env.md §5, issue 15; the rules are in `wr.lsf`).

Their arguments are LSF's, single-dash words included (``-noheader``, ``-cwd``), so click
hands them over untouched and `wr.lsf` reads them; ``--deployment NAME`` may come first, as
for every wr command. A refusal prints ``<command>: <why>`` on stderr and exits 255, as
LSF's commands do when a job is not submitted.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

USAGE = {
    "bsub": """Usage: bsub [-J name] [-o out|-oo out] [-e err|-eo err] [-M mem] [-n cores]
            [-R "rusage[mem=N] select[mem>N] span[hosts=1]"] [-W [hh:]mm] [-q queue]
            [-w "done(name|id) && ..."] [-cwd dir] [command [args]]

Add a job to wr as LSF's bsub would. Without a command, the job's script is read from
stdin (after a 'bsub> ' prompt), and its '#BSUB' lines give options too (those of the
command line win). The job runs in the current directory with this environment.""",
    "bjobs": """Usage: bjobs [-noheader] [-o "FIELD ... [delimiter='x']"] [-q queue] [-w]
             [-u all|you] [job ids]

List the queued jobs added with bsub (and 'wr add --bsub'). Fields: JOBID USER STAT QUEUE
FROM_HOST EXEC_HOST JOB_NAME SUBMIT_TIME. Finished jobs are not listed.""",
    "bkill": """Usage: bkill job_id [job_id ...]

Kill the given jobs added with bsub (running ones are killed, then each leaves the
queue).""",
}
"""What ``-h`` prints for each command."""

KILL_PATIENCE = 120.0
"""Seconds bkill waits for a killed job to be buried before it gives up on it."""

_RAW = {"context_settings": {"ignore_unknown_options": True,
                             "allow_interspersed_args": False, "help_option_names": []}}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lsf() -> None:
    """LSF emulation: bsub, bjobs and bkill for pipelines written for LSF.

    Add the command that calls bsub with 'wr add --bsub': inside it, bsub, bjobs and bkill
    are wr's, and the jobs it submits run as wr jobs (with its mounts and scheduler
    options). There is one queue, 'wr'. See each command's -h.
    """


def _command(name: str) -> Callable[..., Any]:
    def run(args: tuple[str, ...]) -> None:
        sys.exit(emulate(name, list(args)))

    run.__doc__ = USAGE[name].split("\n\n", 1)[1].split("\n")[0]
    return lsf.command(name=name, **_RAW)(
        click.argument("args", nargs=-1, type=click.UNPROCESSED)(run))


bsub = _command("bsub")
bjobs = _command("bjobs")
bkill = _command("bkill")


def emulate(name: str, args: list[str]) -> int:
    """Run LSF command ``name`` with its arguments; returns the exit status."""
    from wr.errors import WrError
    from wr.lsf import LsfError

    args, deployment = _take_deployment(args)
    if args in (["-h"], ["--help"]):
        click.echo(USAGE[name])
        return 0
    try:
        return {"bsub": _bsub, "bjobs": _bjobs, "bkill": _bkill}[name](args, deployment)
    except LsfError as exc:
        click.echo(f"{name}: {exc}", err=True)
        return 255
    except (WrError, click.ClickException) as exc:
        message = exc.message if isinstance(exc, WrError) else exc.format_message()
        click.echo(f"{name}: {message}", err=True)
        return 255


def _take_deployment(args: list[str]) -> tuple[list[str], str | None]:
    if args[:1] == ["--deployment"] and len(args) > 1:
        return args[2:], args[1]
    if args[:1] and args[0].startswith("--deployment="):
        return args[1:], args[0].partition("=")[2]
    return args, None


def _client(deployment: str | None) -> Any:
    from wr.cli.actions import connect

    return connect(deployment, 60)


# -- bsub ------------------------------------------------------------------------------------

def _bsub(args: list[str], deployment: str | None) -> int:
    import orjson

    from wr.cli.options import load
    from wr.lsf import (
        LsfError,
        build_request,
        inherited_properties,
        job_environment,
        job_object,
        read_script,
        split_command_line,
        submitted_message,
    )

    options, command = split_command_line(args)
    inherited: dict[str, Any] = {}
    raw = os.environ.get("WR_BSUB_CONFIG", "")
    if raw:  # set in a bsub-mode job: its mounts, scheduler options and deployment
        try:
            config = orjson.loads(raw)
        except orjson.JSONDecodeError:
            config = None
        if isinstance(config, dict):
            inherited, mode = inherited_properties(config)
            deployment = deployment or mode or None
    script_options: list[str] = []
    script = first = ""
    if not command:
        script_options, script, first = read_script(_prompted_lines())
    request = build_request(script_options, options, command, script, first, os.getcwd())
    if not request.cmd:
        click.echo("No command is specified. Job not submitted.")
        return 255
    config = load(deployment)
    with _client(deployment) as client:
        dep_keys = []
        if request.dep_ids:
            listing = client.lsf_jobs()
            keys = {job["JobID"]: job["Key"] for job in listing["Jobs"]}
            for job_id in request.dep_ids:
                if job_id in keys:
                    dep_keys.append(keys[job_id])
                elif not 0 < job_id <= listing["LastID"]:
                    raise LsfError(f"-w: no job <{job_id}> was ever submitted. Job not "
                                   f"submitted.")
                # else it has finished: done, so nothing to wait for
        env_key = client.put_environment(job_environment(os.environ))
        obj = job_object(request, deployment=config.deployment, env_key=env_key,
                         inherited=inherited, dep_keys=dep_keys)
        answer = client.submit([obj], keys=True, rerun=True)
        if answer["Added"] != 1:
            click.echo("Duplicate command specified. Job not submitted.")
            return 255
        key = answer["Keys"][0]
        found = [job["JobID"] for job in client.lsf_jobs()["Jobs"] if job["Key"] == key]
    if not found:  # over already, and gone from the queue
        raise LsfError(f"the job (key {key}) was added, but has already left the queue, so "
                       f"its id cannot be told")
    click.echo(submitted_message(found[0], request.queue))
    return 0


def _prompted_lines() -> list[str]:
    """stdin's lines, with wr's ``bsub> `` prompt before each."""
    lines = []
    sys.stdout.write("bsub> ")
    sys.stdout.flush()
    for line in sys.stdin:
        lines.append(line)
        sys.stdout.write("bsub> ")
        sys.stdout.flush()
    return lines


# -- bjobs -----------------------------------------------------------------------------------

def _bjobs(args: list[str], deployment: str | None) -> int:
    from wr.lsf import bjobs_rows, parse_bjobs_args, render_bjobs

    request = parse_bjobs_args(args, getpass.getuser())
    with _client(deployment) as client:
        listing = client.lsf_jobs()
    jobs = listing["Jobs"]
    missing = []
    if request.ids:
        by_id = {job["JobID"]: job for job in jobs}
        missing = [i for i in request.ids if i not in by_id]
        jobs = [by_id[i] for i in request.ids if i in by_id]
    rows = bjobs_rows(jobs, request, listing["Host"])
    click.echo(render_bjobs(rows, request), nl=False)
    for job_id in missing:
        click.echo(f"Job <{job_id}> is not found", err=True)
    if not rows and not request.ids:
        click.echo("No unfinished job found", err=True)
    return 255 if missing else 0


# -- bkill -----------------------------------------------------------------------------------

def _bkill(args: list[str], deployment: str | None) -> int:
    from wr.lsf import parse_bkill_args

    ids = parse_bkill_args(args)
    failed = False
    with _client(deployment) as client:
        listing = client.lsf_jobs()
        by_id = {job["JobID"]: job for job in listing["Jobs"]}
        for job_id in ids:
            job = by_id.get(job_id)
            if job is None:
                known = 0 < job_id <= listing["LastID"]
                click.echo(f"Job <{job_id}>: "
                           f"{'Job has already finished' if known else 'No matching job found'}")
                continue
            if not _terminate(client, job_id, job):
                failed = True
    return 255 if failed else 0


def _terminate(client: Any, job_id: int, job: dict[str, Any]) -> bool:
    """Kill a job (if a runner holds it) and remove it from the queue."""
    from wr.errors import WrError

    key = job["Key"]
    try:
        if job["State"] in ("reserved", "running", "lost"):
            client.kill(keys=[key])
            if not _wait_buried(client, key):
                click.echo(f"error trying to confirm job {job_id} was killed: it still "
                           f"runs after {KILL_PATIENCE:g}s", err=True)
                return False
        removed = client.remove(keys=[key])
    except WrError as exc:
        click.echo(f"error trying to kill job {job_id}: {exc.message}", err=True)
        return False
    if not removed.get("Affected") and job["State"] not in ("reserved", "running", "lost"):
        click.echo(f"Job <{job_id}>: not terminated: other jobs wait for it (kill those "
                   f"first)", err=True)
        return False
    click.echo(f"Job <{job_id}> is being terminated")
    return True


def _wait_buried(client: Any, key: str) -> bool:
    deadline = time.monotonic() + KILL_PATIENCE
    while time.monotonic() < deadline:
        found = client.status(key)
        if not found or found[0]["State"] in ("buried", "complete"):
            return True
        time.sleep(0.5)
    return False
