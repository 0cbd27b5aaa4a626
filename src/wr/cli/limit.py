"""``wr limit``: see and set how many jobs of a limit group may run at once (spec cli §1.4,
§5.7)."""

from __future__ import annotations

import click

from wr.cli.actions import call, connect, timeout_option
from wr.cli.options import deployment_option


@click.command(context_settings={"allow_extra_args": True})
@click.option("-g", "--group", default=None, metavar="NAME[:N]",
              help="name of the limit group to view; suffix it with :n to set its limit")
@timeout_option
@deployment_option
@click.pass_context
def limit(ctx: click.Context, group: str | None, timeout: int, deployment: str | None) -> None:
    """See or set limit groups, which cap how many of their jobs run at once.

    With no options, list every limit in place as "name: n". '-g name' prints the group's
    limit (-1: none); '-g name:n' sets it and prints it: 0 stops any more of the group's
    jobs from starting, -1 removes the limit. Jobs join limit groups with
    'wr add --limit_grps'. Group names must not contain ',' or ':'.

    A time window such as '17:00:00 < time < 20:00:00' is not a count: '-g <window>' says
    whether it lets jobs start now (by this machine's clock) and when that changes.
    """
    if ctx.args:
        raise click.ClickException("Did you mean to specify --group?")
    if group is not None and _show_window(group):
        return
    name, value = _parse(group)
    with connect(deployment, timeout) as client:
        if name is None:
            for key, n in sorted(call(client.limits).items()):
                click.echo(f"{key}: {n}")
        elif value is None:
            click.echo(call(client.limit, name))
        else:
            click.echo(call(client.set_limit, name, value))


def _show_window(group: str) -> bool:
    """Print what a time window does now, if ``group`` is one (issue 15; wr prints
    9223372036854775807 for any window)."""
    import time

    from wr.windows import WindowError, describe, parse

    try:
        window = parse(group)
    except WindowError as exc:
        raise click.BadParameter(str(exc), param_hint="--group") from None
    if window is None:
        return False
    click.echo(f"{describe(window, time.time())}; a time window has no count limit")
    return True


def _parse(group: str | None) -> tuple[str | None, int | None]:
    """``name`` or ``name:n`` as (name, n or None); bad input is a one-line error."""
    if group is None:
        return None, None
    name, sep, text = group.partition(":")
    if not name or "," in name:
        raise click.BadParameter(f"{group!r}: a limit group name must be non-empty and "
                                 f"contain neither ',' nor ':'", param_hint="--group")
    if not sep:
        return name, None
    try:
        value = int(text)
    except ValueError:
        raise click.BadParameter(f"{group!r}: the limit after ':' must be a whole number "
                                 f"(-1 removes the limit)", param_hint="--group") from None
    if value < -1:
        raise click.BadParameter(f"{group!r}: the limit must be -1 (no limit) or more",
                                 param_hint="--group")
    return name, value
