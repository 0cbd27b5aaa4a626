"""The ``wr`` command: one group, one module per verb group (STYLE.md)."""

from __future__ import annotations

import sys

import click

from wr import __version__
from wr.cli.actions import kill, mod, remove, retry
from wr.cli.add import add
from wr.cli.limit import limit
from wr.cli.manager import manager
from wr.cli.status import status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """wr runs your shell commands as jobs: reliably, in order, and as fast as the machine
    allows. Start a manager with 'wr manager start', then add jobs."""


@cli.command()
def version() -> None:
    """Print wr's version."""
    click.echo(__version__)


cli.add_command(manager)
cli.add_command(kill)
cli.add_command(retry)
cli.add_command(remove)
cli.add_command(mod)
cli.add_command(limit)
cli.add_command(add)
cli.add_command(status)


def main() -> None:
    sys.exit(cli.main(prog_name="wr", standalone_mode=True))


if __name__ == "__main__":
    main()
