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


def info(message: str) -> None:
    click.echo(f"info: {message}", err=True)
