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

from wr.cli.job_flags import job_options, mod_changes
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

@click.command()
@selection_options("modify", by_command=False,
                   all_help="modify every incomplete, non-running command")
@job_options("mod")
@timeout_option
@deployment_option
@click.pass_context
def mod(ctx: click.Context, selection: Selection, timeout: int, deployment: str | None,
        **values: Any) -> None:
    """Modify commands that are queued but not running.

    Select them with -i (rep group; -z substring, -y internal id) or -a (all of them), and
    give any of 'wr add''s options to change that aspect (not the rep group, dependency
    groups or bsub mode). --unset_cwd_matters and --unset_change_home turn those off; an
    empty string ("") clears other options, and --on_exit "" turns behaviours off. A
    change to the command line, cwd (with cwd_matters) or mounts changes the job's id;
    the old and new ids are printed.
    """
    if selection.all and values["cmd"] is not None:
        raise click.ClickException("-a is not compatible with --cmdline")
    changes = mod_changes(ctx, values)
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
