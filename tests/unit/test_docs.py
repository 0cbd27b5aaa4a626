"""The docs say what the code does: every setting and every endpoint is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from wr.config import SETTINGS
from wr.manager.rest import RestAPI

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("setting", [s.name for s in SETTINGS])
def test_every_setting_is_documented(setting: str) -> None:
    text = (DOCS / "configuration.md").read_text()
    assert f"| `{setting}` | `WR_{setting.upper()}` |" in text


def test_every_endpoint_is_documented() -> None:
    text = (DOCS / "rest.md").read_text()
    api = RestAPI.__new__(RestAPI)
    paths = {r.path.split("{")[0].rstrip("/") for r in RestAPI.routes(api)}
    for path in paths:
        assert f"{path}/" in text, path
