"""The job flags of ``wr add`` and ``wr mod``, made from the job table (`wr.job_table`).

Each job-object key with a `wr.job_table.Flag` gets one option (``--cwd_matters`` also an
``--unset_cwd_matters`` in ``wr mod``), typed by its key's kind. ``wr add``'s flags are
defaults for the lines that lack their key, sent as the POST's URL query (or, for keys the
query cannot give, set on each job object: `add_defaults`); ``wr mod``'s are changes, only
those given on the command line, ``""`` clearing one (`mod_changes`). Besides the table's:
``--mounts``, the simple form of ``-j/--mount_json``, in both.

Imports stay light (the table imports nothing of wr): ``wr add`` starts with these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from wr.cli.options import Checked
from wr.job_table import KEYS, NOT_OFFERED, Key, Kind

MEMORY = Checked("memory", "parse_memory", "'{value}' was not specified correctly: {exc}")
"""A memory size with a unit (``500M``, ``3G``), checked and kept as text; ``""`` is kept
(it clears the setting in ``wr mod``)."""
DURATION = Checked("duration", "parse_duration", "'{value}' was not specified correctly: {exc}")
"""A Go-style duration (``30m``, ``1h30m``), checked and kept as typed, so the manager's
refusal of it (a negative time, issue 13) quotes what the user wrote."""
OVERRIDES = {"0": 0, "no": 0, "n": 0, "1": 1, "higher": 1, "h": 1, "2": 2, "always": 2,
             "a": 2}
"""wr's words for the override levels."""


class Override(click.ParamType):
    """wr's override levels: ``0``/``no``/``n``, ``1``/``higher``/``h``, ``2``/``always``/
    ``a``."""

    name = "[0|1|2]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if isinstance(value, int):
            return value
        level = OVERRIDES.get(str(value).lower())
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
        import orjson

        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            self.fail(f"{value!r} is not valid JSON: {exc}", param, ctx)
        if not isinstance(parsed, list):
            self.fail(f"{value!r} must be a JSON array", param, ctx)
        return parsed


# -- the options ------------------------------------------------------------------------

def offered(command: str) -> tuple[Key, ...]:
    """The keys whose flag ``command`` (``add`` or ``mod``) has, in table order."""
    if command == "add":
        return tuple(k for k in KEYS if k.flag is not None and k.flag.add is not NOT_OFFERED)
    return tuple(k for k in KEYS if k.flag is not None and k.flag.mod)


def job_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate ``wr add`` or ``wr mod`` with its job flags; each reaches the command as a
    parameter named as its key (``mounts`` for ``-j/--mount_json``; ``simple_mounts`` for
    ``--mounts``)."""
    options = [option for key in offered(command) for option in _options(key, command)]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):  # the last applied is listed first
            f = option(f)
        return f
    return decorate


def _options(key: Key, command: str) -> list[Callable[[Any], Any]]:
    flag = key.flag
    assert flag is not None
    names = [n for n in (flag.short, f"--{flag.name or key.name}") if n]
    add = command == "add"
    common: dict[str, Any] = {"help": flag.help, "hidden": flag.hidden}
    if flag.metavar:
        common["metavar"] = flag.metavar
    if key.kind is Kind.FLAG:
        options = [click.option(*names, key.name, is_flag=True, **common)]
        if not add:
            options.append(click.option(f"--unset_{key.name}", is_flag=True,
                                        help=f"unset --{key.name}"))
        return options
    default = flag.add if add else None
    options = [click.option(*names, key.name, type=_type(key, add), default=default,
                            show_default=add and flag.show_default, **common)]
    if key.kind is Kind.MOUNTS:
        options.append(click.option(
            "--mounts", "simple_mounts", default=None,
            help="S3 buckets to mount at the commands' working directory while they run, as "
                 "[c|u][r|w]:[profile@]bucket[/path],... (see 'wr mount -h')"))
    return options


def _type(key: Key, add: bool) -> Any:
    """The click type of a key's flag: ``wr add`` keeps texts the manager reads as its
    query (checked here where a bad one should be named at once), ``wr mod`` reads values."""
    kind = key.kind
    if kind is Kind.MEMORY:
        return MEMORY
    if kind is Kind.DURATION:
        return DURATION
    if kind is Kind.CPUS:
        return click.FloatRange(min=0)
    if kind is Kind.COUNT:
        return click.IntRange(min=0)
    if kind is Kind.LEVEL:
        if key.top == 2:  # override: wr's words, which wr add refuses in its own words
            return str if add else Override()
        return click.IntRange(0, key.top)
    if kind in (Kind.BEHAVIOURS, Kind.MOUNTS) and not add:
        return JSONList()
    return str


# -- wr add: flags -> the POST's query and per-job defaults ------------------------------

def add_defaults(flags: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """``wr add``'s flag values as the POST's URL query (defaults for every job) and the
    defaults the query cannot give, to set on each job object that lacks them; flags left
    at nothing are left out. A bad value is a `click.ClickException` in wr's words."""
    values = dict(flags)
    _check_add(values)
    values["mounts"] = mounts_option(values.pop("mounts"), values.pop("simple_mounts"))
    query: dict[str, str] = {}
    extra: dict[str, Any] = {}
    for key in offered("add"):
        value = values[key.name]
        if value is None or value == "" or value is False:
            continue
        if key.query:
            query[key.name] = _query_text(key, value)
        else:
            extra[key.name] = _job_value(key, value)
    return query, extra


def _check_add(values: dict[str, Any]) -> None:
    if values["override"] not in OVERRIDES:
        raise click.ClickException("invalid override value")
    values["override"] = OVERRIDES[values["override"]]
    if values["with_docker"] and values["with_singularity"]:
        raise click.ClickException("--with_docker and --with_singularity are mutually "
                                   "exclusive")
    if len(_split(values["cmd_deps"])) % 2:
        raise click.ClickException("--cmd_deps must have an even number of comma-separated "
                                   "entries")
    for key in offered("add"):
        if key.kind is Kind.BEHAVIOURS and values[key.name]:
            _check_json(f"--{key.name}", values[key.name])


def _query_text(key: Key, value: Any) -> str:
    if key.kind is Kind.FLAG:
        return "true"
    if key.kind is Kind.CPUS:
        return repr(float(value))
    return str(value)


def _job_value(key: Key, value: Any) -> Any:
    if key.kind is Kind.STRINGS:
        return _split(value)
    if key.kind is Kind.CMD_DEPS:
        return _essences(value)
    return value


def _split(text: str) -> list[str]:
    return [p for p in text.split(",") if p] if text else []


def _essences(text: str) -> list[dict[str, Any]]:
    """``cmd1,cwd1,cmd2,cwd2,...`` as cmd_deps objects (an odd count is refused)."""
    cols = text.split(",") if text else []
    if len(cols) % 2:
        raise click.ClickException("--cmd_deps must have an even number of comma-separated "
                                   "entries")
    return [{"Essence": {"Cmd": cmd, "Cwd": cwd}}
            for cmd, cwd in zip(cols[::2], cols[1::2], strict=True)]


def _check_json(flag: str, text: str) -> str:
    import orjson

    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.ClickException(f"bad {flag}: {exc}") from None
    return text


def simple_mounts(text: str) -> str:
    """``--mounts`` ([c|u][r|w]:[profile@]bucket[/path],...) as mount JSON: one mount with a
    target per entry, as wr builds it."""
    import orjson

    from wr.mounts.config import MountConfigError, parse_simple

    try:
        return orjson.dumps(parse_simple(text)).decode()
    except MountConfigError as exc:
        raise click.ClickException(exc.message) from None


def mounts_option(mount_json: str | None, mounts: str | None) -> str | None:
    """The mount JSON the -j/--mount_json or --mounts flags give (None if neither)."""
    if mount_json and mounts:
        raise click.ClickException("--mounts and --mount_json are mutually exclusive")
    if mount_json:
        import orjson

        try:
            orjson.loads(mount_json)
        except orjson.JSONDecodeError as exc:
            raise click.ClickException(f"had a problem with the provided mount JSON "
                                       f"({mount_json}): {exc}") from None
        return mount_json
    return simple_mounts(mounts) if mounts else None


# -- wr mod: flags -> changes -----------------------------------------------------------

def mod_changes(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The job properties ``wr mod`` changes: only those whose flag was given; ``""``
    clears one (an empty list, for lists)."""

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                  ParameterSource.ENVIRONMENT)

    changes: dict[str, Any] = {}
    for key in offered("mod"):
        name = key.name
        if key.kind is Kind.FLAG:
            if values[name] and values[f"unset_{name}"]:
                raise click.UsageError(f"--{name} and --unset_{name} contradict each other")
            if values[name] or values[f"unset_{name}"]:
                changes[name] = bool(values[name])
        elif given(name):
            changes[name] = _change(key, values[name])
    if given("simple_mounts"):
        if given("mounts"):
            raise click.UsageError("--mounts and --mount_json are mutually exclusive")
        changes["mounts"] = _simple_mounts_change(values["simple_mounts"])
    return changes


def _change(key: Key, value: Any) -> Any:
    if key.name == "cmd" and not value.strip():
        raise click.BadParameter("the new command line must not be empty",
                                 param_hint="--cmdline")
    if key.kind is Kind.STRINGS:
        return _split(value) or ""
    if key.kind is Kind.CMD_DEPS:
        return _essences(value) or ""
    return value


def _simple_mounts_change(text: str) -> Any:
    from wr.mounts.config import MountConfigError, parse_simple

    try:
        return parse_simple(text) if text else ""
    except MountConfigError as exc:
        raise click.BadParameter(exc.message, param_hint="--mounts") from None
