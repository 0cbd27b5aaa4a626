"""The docs say what the code does: every setting and every endpoint is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from wr.config import SETTINGS
from wr.manager.routes import ROUTES

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("setting", [s.name for s in SETTINGS])
def test_every_setting_is_documented(setting: str) -> None:
    text = (DOCS / "configuration.md").read_text()
    assert f"| `{setting}` | `WR_{setting.upper()}` |" in text


def test_every_endpoint_is_documented() -> None:
    """Every REST path of the route table is named in rest.md."""
    text = (DOCS / "rest.md").read_text()
    paths = {p.split("{")[0].rstrip("/") for e in ROUTES for p in e.paths
             if p.startswith("/rest/")}
    assert "/rest/v1/jobs" in paths
    for path in paths:
        assert path in text, path


def test_every_module_is_in_the_architectures_module_table_once() -> None:
    """docs/architecture.md's module table names every module of src/wr exactly once, and
    names no module that does not exist (issue 14, item 7)."""
    import re

    src = DOCS.parent / "src" / "wr"
    modules = {p.relative_to(src).as_posix() for p in src.rglob("*.py")
               if p.name != "__init__.py"}
    text = (DOCS / "architecture.md").read_text()
    table = text[text.index("\n## Modules\n"):text.index("\n## Live updates\n")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = [name for row in rows for name in re.findall(r"`([\w/]+\.py)`",
                                                         row.split(" | ")[0])]
    assert "manager/core.py" in named
    assert sorted(set(named)) == sorted(named), "named twice"
    assert set(named) == modules, (set(named) ^ modules)
