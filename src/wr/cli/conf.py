"""``wr conf``: what each setting is, and what set it (spec cli §1.5).

wr prints a table of every setting with its value and source. Named settings are printed
alone, one value per line, so that a shell can use them (``URL=https://localhost:$(wr conf
managerweb)``); wr has no such form (docs/compatibility.md).
"""

from __future__ import annotations

import click

from wr.cli.options import deployment_option, load
from wr.config import SETTINGS, SETTINGS_BY_NAME, Config


def _value(config: Config, name: str) -> str:
    value = getattr(config, SETTINGS_BY_NAME[name].attr)
    if isinstance(value, bool):
        return str(value).lower()
    if name == "managerumask" and isinstance(value, int):
        return f"{value:03o}"
    return str(value)


@click.command()
@click.argument("names", nargs=-1)
@deployment_option
def conf(names: tuple[str, ...], deployment: str | None) -> None:
    """Show the settings: each one's value and where it came from (its default, an
    environment variable WR_<NAME>, or a config file). Give setting names to print just
    their values, one per line (e.g. wr conf managerweb)."""
    unknown = [n for n in names if n not in SETTINGS_BY_NAME]
    if unknown:
        raise click.UsageError(f"unknown setting {unknown[0]!r}; the settings are: "
                               + ", ".join(s.name for s in SETTINGS))
    config = load(deployment)
    if names:
        for name in names:
            click.echo(_value(config, name))
        return
    rows = [("Config", "Value", "Source")]
    rows += [(s.name, _value(config, s.name), config.sources.get(s.name, "default"))
             for s in SETTINGS]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, value, source in rows:
        click.echo(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source}")
