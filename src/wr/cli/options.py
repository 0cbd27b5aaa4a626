"""Options shared by many commands, declared once (STYLE.md "CLI")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from wr.config import DEPLOYMENTS, Config, load_config_from_process
from wr.errors import WrError


def deployment_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--deployment", type=click.Choice(DEPLOYMENTS), default=None,
        help="use the production or development manager (default: $WR_DEPLOYMENT, else "
             "production)",
    )(f)


def load(deployment: str | None) -> Config:
    try:
        return load_config_from_process(deployment)
    except WrError as exc:
        raise click.ClickException(exc.message) from exc


class Checked(click.ParamType):
    """A flag value checked with one of wr.jobs' unit parsers (``parse_memory``,
    ``parse_duration``). ``""`` (unset) and an already parsed float pass as they are; a
    bad value fails with ``refusal`` (formatted with ``value`` and ``exc``); a good one is
    kept as text, or with ``parsed`` given as the parser's result."""

    def __init__(self, name: str, parser: str, refusal: str, *, parsed: bool = False) -> None:
        self.name = name
        self._parser = parser
        self._refusal = refusal
        self._parsed = parsed

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        if isinstance(value, float) or value == "" or value is None:
            return value
        from wr import jobs

        try:
            result = getattr(jobs, self._parser)(str(value))
        except ValueError as exc:
            self.fail(self._refusal.format(value=value, exc=exc), param, ctx)
        return result if self._parsed else str(value)


def info(message: str) -> None:
    click.echo(f"info: {message}", err=True)
