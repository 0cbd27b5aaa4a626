"""docs/clients.md's examples, run exactly as written against a real manager.

The Node.js example (built-in modules only) and the curl one are taken from their fenced
blocks in the page, so the page cannot drift from what works. Each runs with HOME set to
the test manager's home (the examples read ``~/.wr_production``) and WR_URL to its address.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ManagerHandle

pytestmark = pytest.mark.integration

PAGE = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def example(heading: str, language: str) -> str:
    """The first ``language`` code block after the heading ``## heading``."""
    text = PAGE.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found, f"no {language} block under '## {heading}'"
    return found.group(1)


def run(mgr: ManagerHandle, argv: list[str], tmp_path: Path) -> str:
    env = {**mgr.env, "WR_URL": mgr.url}
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{mgr.log()}"
    return proc.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_example_adds_follows_and_reports_a_job(manager: ManagerHandle,
                                                         tmp_path: Path) -> None:
    script = tmp_path / "wr_example.mjs"
    script.write_text(example("Node.js", "js"))
    lines = run(manager, ["node", str(script)], tmp_path).splitlines()
    key = re.fullmatch(r"added ([0-9a-f]{32}): echo hello from node", lines[0])
    assert key, lines
    k = key.group(1)
    assert lines[1:] == [f"{k} (new) -> ready", f"{k} ready -> reserved",
                         f"{k} reserved -> running", f"{k} running -> complete",
                         lines[-1]]
    assert re.fullmatch(rf"{k} is complete, exit code 0, ran [0-9.e-]+s", lines[-1])


def test_the_curl_example_adds_follows_and_reports_a_job(manager: ManagerHandle,
                                                         tmp_path: Path) -> None:
    out = run(manager, ["bash", "-c", example("curl", "sh")], tmp_path)
    changes = re.findall(r'"From":(null|"\w+"),"To":"(\w+)"', out)
    assert changes[:4] == [("null", "ready"), ('"ready"', "reserved"),
                           ('"reserved"', "running"), ('"running"', "complete")], out
    assert re.search(r'^id: [0-9a-f]+-1$', out, re.M), out
    assert '"Cmd":"echo hello from curl"' in out and '"State":"complete"' in out, out
