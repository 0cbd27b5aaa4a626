"""The ``wr`` command: one group, one module per verb group (STYLE.md).

A verb's module is imported only when that verb runs (or help lists them all): every
``wr`` is a new Python process, and importing every verb's module (rich, the add parser,
the action verbs) cost ``wr status`` a third of its start-up.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from wr import __version__

_VERBS = {
    "add": "wr.cli.add",
    "conf": "wr.cli.conf",
    "kill": "wr.cli.actions",
    "limit": "wr.cli.limit",
    "lsf": "wr.cli.lsf",
    "manager": "wr.cli.manager",
    "mod": "wr.cli.actions",
    "mount": "wr.cli.mount",
    "remove": "wr.cli.actions",
    "retry": "wr.cli.actions",
    "status": "wr.cli.status",
}
"""Each verb and the module that defines it (as a function of the same name)."""


class _Verbs(click.Group):
    """A group that imports a verb's module when the verb is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_VERBS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = _VERBS.get(name)
        if module is None:
            return super().get_command(ctx, name)
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_Verbs, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """wr runs your shell commands as jobs: reliably, in order, and as fast as the machine
    allows. Start a manager with 'wr manager start', then add jobs."""


@cli.command()
def version() -> None:
    """Print wr's version."""
    click.echo(__version__)


def main() -> None:
    name = os.path.basename(sys.argv[0])
    if name in ("bsub", "bjobs", "bkill"):  # links to wr: LSF emulation (wr.cli.lsf)
        from wr.cli.lsf import emulate

        sys.exit(emulate(name, sys.argv[1:]))
    sys.exit(cli.main(prog_name="wr", standalone_mode=True))


if __name__ == "__main__":
    main()
