"""The selection options shared by the commands that act on existing jobs.

``wr kill``, ``wr retry`` and ``wr remove`` (and, with ``by_command=False``, ``wr mod``) pick
jobs the same way (spec cli §1.0): ``-i`` a rep group (``-z`` as a substring of rep groups,
``-y`` as a job key), ``-f`` a file of commands in ``wr add`` format, ``-l`` one command line
(with ``-c``/``-j`` for the cwd and mounts they were added with), or ``-a`` every job.
`selection_options` declares them once and hands the command one `Selection`, checked;
``Selection.kwargs()`` is what `wr.client.Client.action` takes.

``-f`` and ``-l`` select by job key, computed here, on the client, exactly as the manager
computes it when the job is added (spec cli §3.2): so the manager needs no "find by
command" endpoint, and a 100,000-line file is one request. Unlike wr, ``-f`` reads the file
it names (wr reads stdin whatever the name; spec cli §7 quirk 1); ``-f -`` reads stdin.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from wr.errors import BadRequest

REQUIRED = "1 of -f, -i, -l or -a is required"
"""wr's words when no selection was given."""
EXCLUSIVE = "-f, -i, -l and -a are mutually exclusive; only specify one of them"
"""wr's words when more than one selection was given."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which jobs a command acts on: rep groups (or keys) in ``ids``, exact ``keys``, or
    ``all``; ``search`` makes each id a substring of rep-group names."""

    ids: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    all: bool = False
    search: bool = False

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `wr.client.Client.action` and its shortcuts."""
        return {"ids": list(self.ids), "keys": list(self.keys), "all": self.all,
                "search": self.search}

    @property
    def empty(self) -> bool:
        return not (self.ids or self.keys or self.all)


def selection_options(verb: str, *, all_help: str = "", by_command: bool = True,
                      allow_all: bool = True, required: bool = True
                      ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the selection options to a click command; it receives ``selection=Selection``.

    ``verb`` completes the help texts ("the commands you want to <verb>"); ``all_help``
    is the help of ``-a``.
    ``by_command=False`` leaves out ``-f``/``-l``/``-c``/``-j`` (``wr mod`` uses ``-l`` and
    ``-c`` for other things). ``allow_all=False`` leaves out ``-a`` (``wr status``);
    ``required=False`` lets no selection through (an empty `Selection`).
    """
    options = [
        click.option("-i", "--identifier", default=None, metavar="ID",
                     help=f"identifier (rep group) of the commands you want to {verb}"),
        click.option("-z", "--search", is_flag=True,
                     help="treat -i as a substring to match against all report groups"),
        click.option("-y", "--internal", is_flag=True,
                     help="treat -i as an internal job id (the key 'wr status' shows)"),
    ]
    if by_command:
        options += [
            click.option("-f", "--file", "file_", default=None, metavar="FILE",
                         help=f"file of the commands you want to {verb}, in 'wr add' "
                              f"format; - means read from STDIN"),
            click.option("-l", "--cmdline", default=None, metavar="CMD",
                         help=f"a command line you want to {verb}"),
            click.option("-c", "--cwd", default=None, metavar="DIR",
                         help="working dir the command(s) given by -l or -f were added "
                              "with (only needed if they were added with --cwd_matters)"),
            click.option("-j", "--mount_json", default=None, metavar="JSON",
                         help="mounts the command(s) given by -l or -f were added with "
                              "(JSON format)"),
            click.option("--mounts", default=None, metavar="SPEC",
                         help="mounts the command(s) given by -l or -f were added with "
                              "(simple format)"),
        ]
    if allow_all:
        options.append(click.option("-a", "--all", "all_", is_flag=True,
                                     help=all_help or f"{verb} every job"))

    names = ["identifier", "search", "internal"]
    if by_command:
        names += ["file_", "cmdline", "cwd", "mount_json", "mounts"]
    if allow_all:
        names.append("all_")

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            given = {name.rstrip("_"): kwargs.pop(name) for name in names}
            selection = build_selection(**given, by_command=by_command, allow_all=allow_all,
                                        required=required)
            return f(*args, selection=selection, **kwargs)

        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def build_selection(*, identifier: str | None = None, search: bool = False,
                    internal: bool = False, file: str | None = None,
                    cmdline: str | None = None, cwd: str | None = None,
                    mount_json: str | None = None, mounts: str | None = None,
                    all: bool = False, by_command: bool = True, allow_all: bool = True,
                    required: bool = True) -> Selection:
    """Check the options the way wr does and turn them into a `Selection`.

    Raises `click.ClickException` with wr's wording for a bad combination, and with the
    line number for a bad ``-f`` line.
    """
    if not by_command:
        if all and identifier:
            raise click.ClickException("-a and -i are mutually exclusive")
        if (search or internal) and not identifier:
            raise click.ClickException("-z and -y require -i")
        if required and not (all or identifier):
            raise click.ClickException("one of -i or -a is required")
    else:
        given = sum(1 for v in (file, identifier, cmdline) if v) + bool(all)
        if given > 1:
            raise click.ClickException(EXCLUSIVE if allow_all else
                                       "-f, -i and -l are mutually exclusive; only specify "
                                       "one of them")
        if required and given == 0:
            raise click.ClickException(REQUIRED if allow_all else
                                       "1 of -f, -i or -l is required")
        if (search or internal) and not identifier:
            raise click.ClickException("-z and -y require -i")
        if (cwd or mount_json or mounts) and not (file or cmdline):
            raise click.ClickException("-c, -j and --mounts only apply to commands given by "
                                       "-l or -f")
    if search and internal:
        raise click.ClickException("-z and -y are mutually exclusive; only specify one of "
                                   "them")
    if identifier:
        if internal:
            return Selection(keys=(identifier,))
        return Selection(ids=(identifier,), search=search)
    if all:
        return Selection(all=True)
    if cmdline or file:
        return Selection(keys=tuple(command_keys(file=file, cmdline=cmdline, cwd=cwd,
                                                 mount_json=mount_json, mounts=mounts)))
    return Selection()


def command_keys(*, file: str | None = None, cmdline: str | None = None,
                 cwd: str | None = None, mount_json: str | None = None,
                 mounts: str | None = None) -> list[str]:
    """The keys of the ``-l`` command or the ``-f`` file's commands, each once.

    The file is read and split exactly as ``wr add`` reads it (`wr.cli.add.parse_lines`): a
    bare command, a JSON object with ``cmd``, or a command, a TAB and a JSON object. Only
    what makes the key matters: the command, its cwd if it mattered (the line's own, else
    ``-c``, else the current directory, as ``wr add`` would), its mounts (the line's, else
    ``-j``/``--mounts``) and containers. ``-c`` means the commands were added with
    ``--cwd_matters`` in that directory.
    """
    from wr.cli.add import mounts_option, parse_lines, read_input
    from wr.submission import PROBLEM, job_from_object, parse_query_defaults

    query = {"cwd": cwd or os.getcwd()}
    if cwd:
        query["cwd_matters"] = "true"
    mount_text = mounts_option(mount_json, mounts)
    if mount_text:
        query["mounts"] = mount_text
    try:
        defaults, _ = parse_query_defaults(query)
    except BadRequest as exc:
        raise click.ClickException(exc.message) from None
    if cmdline:
        objects, numbers = [{"cmd": cmdline}], [0]
    else:
        objects, numbers, _ = parse_lines(read_input(file or "-"))
    keys: dict[str, None] = {}
    for obj, n in zip(objects, numbers, strict=True):
        # A cloud script names a file on the manager's machine; reading it here would
        # fail or be wasted, and it is not part of the key.
        obj = {k: v for k, v in obj.items() if k.lower() != "cloud_script"}
        try:
            keys[job_from_object(obj, defaults).key] = None
        except BadRequest as exc:
            problem = exc.message.removeprefix(PROBLEM)
            raise click.ClickException(f"line {n} had a problem: {problem}" if n
                                       else f"--cmdline had a problem: {problem}") from None
    return list(keys)
