"""``wr kill``, ``wr retry``, ``wr remove`` and ``wr mod``: act on jobs already queued.

Each is ONE request (``POST /rest/v1/actions/<action>`` through `wr.client.Client`): the
manager picks the jobs of the selection that are in the state the action needs, acts on all
of them in one step and one transaction, and says how many were eligible and how many it
changed. So retrying 100,000 buried jobs is one round trip, not 100,000 (wr's own users hit
its timeouts there; issue 3). The messages are wr's (spec cli §1.4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import orjson
from click.core import ParameterSource

from wr.cli.options import Checked, deployment_option, info, load
from wr.cli.select import Selection, selection_options
from wr.errors import WrError

NOT_FOUND = "No matching jobs found"
"""wr's words when the selection holds no job in the state the action needs."""


# -- talking to the manager ---------------------------------------------------------------

def connect(deployment: str | None, timeout: float) -> Any:
    """A `wr.client.Client` for the deployment's manager, or a one-line error."""
    from wr.client import Client

    config = load(deployment)
    try:
        return Client.for_deployment(config=config, timeout=timeout)
    except WrError as exc:
        raise click.ClickException(exc.message) from None


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one client call; the manager's error (or why it could not be reached) becomes a
    one-line error and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except WrError as exc:
        raise click.ClickException(exc.message.strip().splitlines()[0]
                                   if exc.message.strip() else repr(exc)) from None


def timeout_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--timeout", default=120, show_default=True, type=click.IntRange(1),
                        help="how long (seconds) to wait for a reply from the manager")(f)


def _act(deployment: str | None, timeout: int, method: str, selection: Selection,
         **extra: Any) -> dict[str, Any]:
    with connect(deployment, timeout) as client:
        return call(getattr(client, method), **selection.kwargs(), **extra)


# -- parameter types ----------------------------------------------------------------------

DURATION = Checked("duration", "parse_duration",
                   "{value!r} is not a duration like 30m or 1h30m ({exc})", parsed=True)
"""A Go-style duration (``30m``, ``1h30m``) as seconds; ``""`` stays ``""`` (unset)."""
DURATION_TEXT = Checked("duration", "parse_duration",
                        "{value!r} is not a duration like 30m or 1h30m ({exc})")
"""A duration checked and kept as typed, so the manager's refusal of it (a negative time,
issue 13) quotes what the user wrote."""
MEMORY = Checked("memory", "parse_memory", "{value!r} is not a memory size like 500M or 3G ({exc})")
"""A memory size with a unit (``500M``, ``3G``), checked and kept as text; ``""`` is kept
(it clears the setting)."""


class Override(click.ParamType):
    """wr's override levels: ``0``/``no``/``n``, ``1``/``higher``/``h``, ``2``/``always``/
    ``a``."""

    name = "[0|1|2]"
    _LEVELS = {"0": 0, "no": 0, "n": 0, "1": 1, "higher": 1, "h": 1, "2": 2, "always": 2,
               "a": 2}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if isinstance(value, int):
            return value
        level = self._LEVELS.get(str(value).lower())
        if level is None:
            self.fail(f"invalid override value {value!r}; use 0|no, 1|higher or 2|always",
                      param, ctx)
        return level


class JSONList(click.ParamType):
    """A JSON array (behaviours, mounts); ``""`` is kept (it clears the setting)."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if value == "" or isinstance(value, list):
            return value
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            self.fail(f"{value!r} is not valid JSON: {exc}", param, ctx)
        if not isinstance(parsed, list):
            self.fail(f"{value!r} must be a JSON array", param, ctx)
        return parsed


# -- kill, retry, remove ------------------------------------------------------------------

@click.command()
@selection_options("kill", all_help="kill every running command")
@click.option("--confirmdead", is_flag=True,
              help="only confirm that lost contact jobs are dead (they are retried or "
                   "buried as their retries allow)")
@click.option("--age", default=None, metavar="DURATION",
              help="only kill jobs that have been running longer than this (with "
                   "--confirmdead: lost for longer than this), e.g. 30m or 2h")
@timeout_option
@deployment_option
def kill(selection: Selection, confirmdead: bool, age: str | None, timeout: int,
         deployment: str | None) -> None:
    """Kill running commands: they end buried with "killed by user request".

    Select them with one of -i (rep group), -f (file of commands), -l (one command line) or
    -a (every running command). Killing happens as soon as the runner hears of it (within
    a keep-alive interval); use 'wr status' to see them buried, then 'wr retry' or
    'wr remove' them.
    """
    extra: dict[str, Any] = {}
    if age:
        try:
            extra["age"] = DURATION.convert(age, None, None)
        except click.BadParameter as exc:
            raise click.BadParameter(exc.message, param_hint="--age") from None
    out = _act(deployment, timeout, "confirm_dead" if confirmdead else "kill", selection,
               **extra)
    if not out.get("Matched", out["Eligible"]):
        raise click.ClickException(NOT_FOUND)
    if not out["Eligible"]:
        raise click.ClickException(f"No matching jobs were older than {age}")
    info(f"Initiated the termination of {out['Affected']} running commands "
         f"(out of {out['Eligible']} eligible)")


@click.command()
@selection_options("retry", all_help="retry every buried command")
@timeout_option
@deployment_option
def retry(selection: Selection, timeout: int, deployment: str | None) -> None:
    """Retry buried commands, with their full number of retries back.

    Select them with one of -i (rep group), -f (file of commands), -l (one command line) or
    -a (every buried command). Fix whatever made them fail first.
    """
    out = _act(deployment, timeout, "retry", selection)
    if not out["Eligible"]:
        raise click.ClickException(NOT_FOUND)
    info(f"Initiated retry of {out['Affected']} buried commands "
         f"(out of {out['Eligible']} eligible)")


@click.command()
@selection_options("remove", all_help="remove every command that is not running or complete")
@click.option("-b", "--buried", is_flag=True, help="only remove buried commands")
@timeout_option
@deployment_option
def remove(selection: Selection, buried: bool, timeout: int, deployment: str | None) -> None:
    """Remove commands that are not running and not complete from the queue.

    Select them with one of -i (rep group), -f (file of commands), -l (one command line) or
    -a (every such command). A command that other queued commands depend on is only
    removed together with them.
    """
    out = _act(deployment, timeout, "remove", selection, buried_only=buried)
    if not out["Eligible"]:
        raise click.ClickException(NOT_FOUND)
    kind = "buried" if buried else "incomplete, non-running"
    info(f"Removed {out['Affected']} {kind} commands (out of {out['Eligible']} eligible)")


# -- mod ----------------------------------------------------------------------------------

def _list(text: str) -> list[str] | str:
    """A comma-separated option as a list; ``""`` stays ``""`` (it clears the setting)."""
    return [p for p in text.split(",") if p] if text else ""


@click.command()
@selection_options("modify", by_command=False,
                   all_help="modify every incomplete, non-running command")
@click.option("--cmdline", default=None, metavar="CMD",
              help="new command line (only when exactly one command is selected)")
@click.option("-l", "--limit_grps", default=None, help="comma-separated list of limit groups")
@click.option("-c", "--cwd", default=None, help="base for the command's working dir")
@click.option("--cwd_matters", is_flag=True,
              help="--cwd should be used as the actual working directory")
@click.option("--unset_cwd_matters", is_flag=True, help="unset --cwd_matters")
@click.option("--change_home", is_flag=True,
              help="when not --cwd_matters, set $HOME to the actual working directory")
@click.option("--unset_change_home", is_flag=True, help="unset --change_home")
@click.option("-g", "--req_grp", default=None, help="group name for commands with similar reqs")
@click.option("-m", "--memory", type=MEMORY, default=None,
              help="peak memory estimate, with a unit (e.g. 500M, 2G)")
@click.option("-t", "--time", "time_", type=DURATION_TEXT, default=None,
              help="maximum time estimate, with a unit (e.g. 30m, 2h)")
@click.option("--cpus", type=click.FloatRange(0), default=None, help="cpu cores needed")
@click.option("--disk", type=click.IntRange(0), default=None,
              help="GB of disk space required")
@click.option("-o", "--override", type=Override(), default=None,
              help="[0|1|2] should your memory/time estimates override learned ones?")
@click.option("-p", "--priority", type=click.IntRange(0, 255), default=None,
              help="[0-255] command priority")
@click.option("-r", "--retries", type=click.IntRange(0, 255), default=None,
              help="[0-255] number of automatic retries for failed commands")
@click.option("-n", "--no_retry_over_walltime", type=DURATION_TEXT, default=None,
              help="do not retry a failure that ran longer than this")
@click.option("--cmd_deps", default=None,
              help='dependencies of your commands, as "command1,cwd1,command2,cwd2..."')
@click.option("-d", "--deps", default=None,
              help='dependencies of your commands, as "dep_grp1,dep_grp2..."')
@click.option("--monitor_docker", default=None,
              help="monitor resource usage of the docker container with this --name or "
                   "--cidfile path")
@click.option("--with_docker", default=None,
              help="docker image to run the commands in")
@click.option("--with_singularity", default=None,
              help="singularity image to run the commands in")
@click.option("--container_mounts", default=None,
              help="comma-separated /outside[:/inside][:ro] mounts for the container")
@click.option("--group", default=None, help="unix group to run the commands as")
@click.option("--on_failure", type=JSONList(), default=None,
              help='behaviours when a command fails, in JSON (e.g. [{"cleanup":true}]); '
                   '"" for none')
@click.option("--on_success", type=JSONList(), default=None,
              help='behaviours when a command succeeds, in JSON; "" for none')
@click.option("--on_exit", type=JSONList(), default=None,
              help='behaviours when a command finishes, in JSON; "" for none')
@click.option("-j", "--mount_json", type=JSONList(), default=None,
              help='S3 buckets to mount, in JSON (see \'wr mount -h\'); "" for none')
@click.option("--mounts", default=None,
              help="S3 buckets to mount, as [c|u][r|w]:[profile@]bucket[/path],... "
                   '(see \'wr mount -h\'); "" for none')
@click.option("--modules", default=None, help="comma-separated list of modules to load")
@click.option("--env", default=None,
              help="comma-separated list of key=value environment variables to set before "
                   "running the commands")
@timeout_option
@deployment_option
@click.pass_context
def mod(ctx: click.Context, selection: Selection, cmdline: str | None, timeout: int,
        deployment: str | None, **values: Any) -> None:
    """Modify commands that are queued but not running.

    Select them with -i (rep group; -z substring, -y internal id) or -a (all of them), and
    give any of 'wr add''s options to change that aspect (not the rep group, dependency
    groups or bsub mode). --unset_cwd_matters and --unset_change_home turn those off; an
    empty string ("") clears other options, and --on_exit "" turns behaviours off. A
    change to the command line, cwd (with cwd_matters) or mounts changes the job's id;
    the old and new ids are printed.
    """
    if selection.all and cmdline is not None:
        raise click.ClickException("-a is not compatible with --cmdline")
    changes = _changes(ctx, cmdline, values)
    if not changes:
        raise click.UsageError("nothing to modify: give at least one option to change")
    with connect(deployment, timeout) as client:
        out = call(client.modify, changes, **selection.kwargs())
    if not out["Eligible"]:
        raise click.ClickException(NOT_FOUND)
    info(f"Modified {out['Affected']} incomplete, non-running commands "
         f"(out of {out['Eligible']} eligible)")
    for old, new in out["Modified"].items():
        click.echo(f" {old} => {new}")


def _changes(ctx: click.Context, cmdline: str | None, v: dict[str, Any]) -> dict[str, Any]:
    """The job properties to change: only those whose option was given."""

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                  ParameterSource.ENVIRONMENT)

    for flag in ("cwd_matters", "change_home"):
        if v[flag] and v[f"unset_{flag}"]:
            raise click.UsageError(f"--{flag} and --unset_{flag} contradict each other")
    changes: dict[str, Any] = {}
    if cmdline is not None:
        if not cmdline.strip():
            raise click.BadParameter("the new command line must not be empty",
                                     param_hint="--cmdline")
        changes["cmd"] = cmdline
    for flag in ("cwd_matters", "change_home"):
        if v[flag]:
            changes[flag] = True
        elif v[f"unset_{flag}"]:
            changes[flag] = False
    plain = {"cwd": "cwd", "req_grp": "req_grp", "memory": "memory", "cpus": "cpus",
             "disk": "disk", "override": "override", "priority": "priority",
             "retries": "retries", "monitor_docker": "monitor_docker",
             "with_docker": "with_docker", "with_singularity": "with_singularity",
             "container_mounts": "container_mounts", "group": "group",
             "on_failure": "on_failure", "on_success": "on_success", "on_exit": "on_exit",
             "mount_json": "mounts"}
    for option, prop in plain.items():
        if given(option):
            changes[prop] = v[option]
    if given("mounts"):
        if given("mount_json"):
            raise click.UsageError("--mounts and --mount_json are mutually exclusive")
        from wr.mounts.config import MountConfigError, parse_simple

        try:
            changes["mounts"] = parse_simple(v["mounts"]) if v["mounts"] else ""
        except MountConfigError as exc:
            raise click.BadParameter(exc.message, param_hint="--mounts") from None
    for option, prop in (("time_", "time"), ("no_retry_over_walltime",
                                             "no_retry_over_walltime")):
        if given(option):
            changes[prop] = v[option]
    for option in ("limit_grps", "deps", "modules", "env"):
        if given(option):
            changes[option] = _list(v[option])
    if given("cmd_deps"):
        text = v["cmd_deps"]
        cols = text.split(",") if text else []
        if len(cols) % 2:
            raise click.ClickException(
                "--cmd_deps must have an even number of comma-separated entries")
        changes["cmd_deps"] = [{"Essence": {"Cmd": cmd, "Cwd": cwd}}
                               for cmd, cwd in zip(cols[::2], cols[1::2], strict=True)] or ""
    return changes
