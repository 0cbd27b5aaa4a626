"""A new user's first five minutes (issue 15, part 7): the README's Quick Start, pasted in
order into one shell, works as it says.

Every ``sh`` block of the Quick Start runs, as written, in one bash session started in the
project's directory (so `. .venv/bin/activate` finds the venv the tests run in), with a home
of its own; then its Python block runs. Only the ports are chosen here (free ones, through
the environment, as a user's config would), so the test cannot collide with a manager of
its machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import FAST_TIMINGS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MARK = "=====block====="


def quick_start() -> tuple[list[str], str]:
    """The Quick Start's sh blocks and its Python block."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quick Start"):text.index("## Web page")]
    shell = re.findall(r"```sh\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    assert shell and len(python) == 1
    return shell, python[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_quick_start_works_when_pasted_in_order(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "activate").exists():
        pytest.skip("the README activates .venv, which this checkout does not have")
    shell, python = quick_start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=str(tmp_path), WR_MANAGERPORT=str(free_port()),
               WR_MANAGERWEB=str(free_port()), **FAST_TIMINGS)
    script = "set -euo pipefail\n" + f"\necho {MARK}\n".join(shell)
    try:
        ran = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr
        outputs = ran.stdout.split(MARK + "\n")
        start, _, added, incomplete, by_group, cli = outputs
        assert "wr manager started on localhost" in ran.stderr
        assert [j["Key"] for j in orjson.loads(added)] == [
            "58cef10e7a340c3b7fa09ea304a3cb98", "ea4266bc0fc7dd493caeb2fff1963e4a"]
        [buried] = orjson.loads(incomplete)
        assert (buried["State"], buried["Exitcode"]) == ("buried", 1)
        jobs, keyed = by_group.splitlines()
        assert {j["State"] for j in orjson.loads(jobs)} == {"buried", "complete"}
        assert "mymsg" in jobs
        assert "greetings" in cli
        py = subprocess.run([sys.executable, "-c", python], env=env, capture_output=True,
                            text=True, timeout=120)
        assert py.returncode == 0, py.stderr
        assert [line.rstrip() for line in py.stdout.splitlines()] == [
            "echo problem >&2; exit 3 buried 3 problem", "echo hi complete 0"]
    finally:
        with contextlib.suppress(Exception):
            subprocess.run([str(ROOT / ".venv" / "bin" / "wr"), "manager", "stop"], env=env,
                           capture_output=True, timeout=60)
