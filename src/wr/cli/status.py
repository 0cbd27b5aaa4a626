"""``wr status``: report on jobs in wr's five output formats (spec cli §1.3).

Selection: nothing (every incomplete job), ``-i`` a rep group (``-z`` any rep group
containing it, ``-y`` a job key), ``-f`` a file in ``wr add`` format or ``-l`` one command
line (the keys are computed here, from each line's cwd/cwd_matters/mounts as ``wr add``
would). ``-o counts`` and ``-o summary`` of a rep group or of everything are worked out by
the manager (``/rest/v1/counts/``, ``/rest/v1/summary/``): 100,000 completed jobs are
summarised without being sent. Everything else fetches status objects and renders them here
(`wr.cli.render`).

Beyond wr: ``-s/--state`` filters by any state the REST API knows (``-b`` and ``-r`` are
wr's ``buried`` and ``running``), and ``--no_std`` skips fetching the output of failed jobs.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import click

from wr.cli.options import deployment_option, load
from wr.cli.select import command_keys

FORMATS = {"counts": "counts", "c": "counts", "summary": "summary", "s": "summary",
           "details": "details", "d": "details", "plain": "plain", "p": "plain",
           "json": "json", "j": "json"}
"""-o values and the format each names."""
STATES = ("delayed", "ready", "reserved", "running", "lost", "buried", "dependent",
          "complete", "deletable")
"""The states -s accepts (those of the REST API's state filter)."""
KEYS_PER_REQUEST = 200
"""Job keys asked about per request in -f/-l mode (keeps URLs short)."""

_KEY = re.compile(r"[0-9a-f]{32}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", "file_", default=None,
              help="file of commands in 'wr add' format whose status you want; - reads stdin")
@click.option("-i", "--identifier", default=None,
              help="report group (-i of 'wr add') whose commands you want the status of")
@click.option("-z", "--search", is_flag=True,
              help="treat -i as a substring to match against every report group")
@click.option("-y", "--internal", is_flag=True, help="treat -i as an internal job id (key)")
@click.option("-l", "--cmdline", default=None, help="a command line you want the status of")
@click.option("-c", "--cwd", default="",
              help="the working directory the -l/-f commands were added with, if they were "
                   "added with --cwd_matters")
@click.option("-j", "--mount_json", default=None,
              help="mounts the -l/-f commands were added with (JSON)")
@click.option("--mounts", default=None,
              help="mounts the -l/-f commands were added with (simple format)")
@click.option("-o", "--output", default="details", show_default=True,
              help="output format: counts|c, summary|s, details|d, plain|p or json|j")
@click.option("--limit", type=click.IntRange(min=0), default=1, show_default=True,
              help="details and json: jobs shown per group of the same state, exit code and "
                   "problem (the rest are counted); 0 shows every job")
@click.option("-b", "--buried", is_flag=True,
              help="default or -i mode only: only buried commands")
@click.option("-r", "--running", is_flag=True,
              help="default or -i mode only: only running commands")
@click.option("-s", "--state", type=click.Choice(STATES), default=None,
              help="default or -i mode only: only commands in this state (deletable: "
                   "delayed, ready, buried or dependent)")
@click.option("-e", "--env", is_flag=True,
              help="details mode (not -f): also show the environment the commands run with")
@click.option("--std/--no_std", default=True, show_default=True,
              help="details and json: fetch the stored STDOUT/STDERR of failed commands")
@click.option("--host", default="",
              help="only commands that ran on this host (name, id or IP)")
@click.option("--timeout", type=click.IntRange(1), default=120, show_default=True,
              help="seconds to wait for the manager to answer")
@deployment_option
def status(file_: str | None, identifier: str | None, search: bool, internal: bool,
           cmdline: str | None, cwd: str, mount_json: str | None, mounts: str | None,
           output: str, limit: int, buried: bool, running: bool, state: str | None,
           env: bool, std: bool, host: str, timeout: int, deployment: str | None) -> None:
    """Get the status of commands.

    With none of -f, -i or -l: every incomplete command. -i: the commands of a report
    group, complete ones included. -f/-l: exactly those commands (describe them as they
    were added: -c if they were added with --cwd_matters, and any mounts).

    Output formats (-o): "details" (the default) shows each command, grouping those with
    the same state, exit code and problem (see --limit); "summary" shows counts and the
    mean (+/- standard deviation) resource usage per report group, and the ids of buried
    commands by exit code and problem; "counts" shows how many commands are in each state;
    "plain" shows id TAB state per command (exit status 1 if any is buried); "json" dumps
    the status objects of the REST API.
    """
    fmt = FORMATS.get(output)
    if fmt is None:
        raise click.ClickException("invalid -o format specified")
    state_filter = _check_selection(file_, identifier, cmdline, search, internal,
                                    buried, running, state)
    if fmt not in ("details", "json"):
        limit, env = 0, False

    keys: list[str] | None = None
    if file_ or cmdline:
        keys = command_keys(file=file_, cmdline=cmdline, cwd=cwd,
                            mount_json=mount_json, mounts=mounts)
    config = load(deployment)

    from wr.client import Client
    from wr.errors import WrError

    try:
        with Client.for_deployment(config=config, timeout=timeout) as client:
            text, code = _report(client, fmt, keys=keys, identifier=identifier,
                                 search=search, internal=internal, state=state_filter,
                                 limit=limit, env=env, std=std, host=host,
                                 show_extra=not file_)
    except WrError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(text, nl=False)
    sys.exit(code)


def _check_selection(file_: str | None, identifier: str | None, cmdline: str | None,
                     search: bool, internal: bool, buried: bool, running: bool,
                     state: str | None) -> str | None:
    """Refuse selections that cannot go together; returns the state filter (-b, -r or -s)
    or None."""
    chosen = [flag for flag, value in (("-f", file_), ("-i", identifier), ("-l", cmdline))
              if value]
    if len(chosen) > 1:
        raise click.ClickException("-f, -i and -l are mutually exclusive; only specify one "
                                   "of them")
    if (search or internal) and not identifier:
        raise click.UsageError("-z and -y only apply to -i")
    if search and internal:
        raise click.UsageError("-z and -y are mutually exclusive")
    if internal and not _KEY.fullmatch(identifier or ""):
        raise click.UsageError(f"-y needs an internal job id (32 hex digits), not "
                               f"'{identifier}'")
    filters = [s for s, on in (("buried", buried), ("running", running), (state, state))
               if on]
    if len(filters) > 1:
        raise click.UsageError("-b, -r and -s are mutually exclusive; only specify one")
    if filters and (file_ or cmdline or internal):
        raise click.UsageError("state filters (-b, -r, -s) are only supported in default "
                               "or report group (-i) mode")
    return filters[0] if filters else None


def _report(client: Any, fmt: str, *, keys: list[str] | None, identifier: str | None,
            search: bool, internal: bool, state: str | None, limit: int, env: bool,
            std: bool, host: str, show_extra: bool) -> tuple[str, int]:
    """Fetch what the format needs and render it; returns (text, exit status)."""
    from wr.cli import render

    params: dict[str, Any] = {"search": search or None, "state": state}
    ids = identifier or ""
    by_manager = keys is None and not host and not internal
    if fmt == "counts" and by_manager:
        return render.render_counts(client.counts(ids, **params)), 0
    if fmt == "summary" and by_manager:
        return render.render_summary(client.summary(ids, **params)), 0

    params.update(limit=limit or None, env=env or None,
                  std=(std and (fmt == "json" or (fmt == "details" and show_extra))) or None)
    # -i is one name, commas and all; the client encodes it whole (issue 13).
    fetch = client.details if fmt == "details" else client.status
    if keys is None:
        jobs = fetch(ids, **params)
    else:
        jobs = []
        for start in range(0, len(keys), KEYS_PER_REQUEST):
            jobs.extend(fetch(keys[start:start + KEYS_PER_REQUEST], **params))
    if host:
        jobs = [j for j in jobs if host in (j.get("Host"), j.get("HostID"), j.get("HostIP"))]

    if fmt == "counts":
        return render.render_counts(render.count_states(jobs)), 0
    if fmt == "summary":
        return render.render_summary(render.summarize(jobs)), 0
    if fmt == "plain":
        return render.render_plain(jobs), int(any(j["State"] == "buried" for j in jobs))
    if fmt == "json":
        import orjson

        return orjson.dumps(jobs).decode() + "\n\n", 0
    return render.render_details(jobs, now=time.time(), show_extra=show_extra,
                                 show_env=env), 0
