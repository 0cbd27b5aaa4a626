"""Spare runners: the local scheduler keeps runners started ahead of need (``wr.runner
--standby``), so a job added to an idle manager does not wait for Python to start and load
a runner's modules (issue 17)."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.integration


def _spares(manager: ManagerHandle) -> set[int]:
    try:
        children = psutil.Process(manager.pid).children()
    except psutil.Error:
        return set()
    found = set()
    for child in children:
        try:
            if "--standby" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def test_a_job_added_to_an_idle_manager_runs_in_a_spare(manager: ManagerHandle) -> None:
    """Steps: start a manager and wait for its spares; add one job; wait for it and for
    the runners to leave. Expected: two spares, and the job's runner is one of them (its
    keeper has a spare's pid: no new process was started for it); once the runner has
    left, there are two spares again. The fixture's teardown checks that stopping the
    manager leaves no spare behind."""
    spares = wait_for(lambda: len(s := _spares(manager)) == 2 and s, what="two spares")
    with manager.client() as c:
        key = c.add([{"cmd": "true", "cpus": 1}], rep_grp="spare")[0]["Key"]
        keepers = wait_for(lambda: manager.runner_pids("wr-keeper"), what="a runner")
        assert set(keepers) <= spares
        wait_for(lambda: c.status(key)[0]["State"] == "complete", what="the job to run")
    wait_for(lambda: not manager.runner_pids("wr-keeper"), what="the runner to leave")
    wait_for(lambda: len(_spares(manager) - spares) == 1 and len(_spares(manager)) == 2,
             what="the spare used to be replaced")


def test_a_spare_with_nothing_to_do_exits_quietly() -> None:
    """A spare whose manager goes away (the end of its input) exits 0 without trying to
    connect; one given orders it cannot read says so and exits."""
    cmd = [sys.executable, "-m", "wr.runner", "--standby", "--server", "127.0.0.1:9"]
    done = subprocess.run(cmd, input="", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    bad = subprocess.run(cmd, input="group 1\n", capture_output=True, text=True, timeout=60)
    assert bad.returncode == 0
    assert "a standby runner was given 'group 1'" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "wr.runner", "--server", "h:1"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--group is required" in missing.stderr
