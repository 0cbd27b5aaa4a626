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
