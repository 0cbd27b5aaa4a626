"""Runners that go silent: jobs become lost and come back (runners that die:
test_runner_death.py)."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def _state(client, key: str) -> dict:
    return client.status(key)[0]


def test_a_silent_runner_makes_its_job_lost_until_it_speaks_again(manager) -> None:
    """Steps: run `sleep 30`; SIGSTOP its runner; wait; SIGCONT it; then kill the job.
    Expected: lost (FailReason "lost contact with runner") after the keep-alive timeout
    while the job process lives on; running again once the runner touches; the kill
    buries it with "killed by user request"."""
    with manager.client() as c:
        key = c.add([{"cmd": "sleep 30", "cpus": 1}], rep_grp="silent")[0]["Key"]
        wait_for(lambda: _state(c, key)["State"] == "running", what="job to run")
        runners = wait_for(manager.runner_pids, what="a runner process")
        for pid in runners:
            os.kill(pid, signal.SIGSTOP)
        try:
            lost = wait_for(lambda: (j := _state(c, key))["State"] == "lost" and j,
                            timeout=20, what="job to be lost")
            assert lost["FailReason"] == "lost contact with runner"
            assert psutil.pid_exists(lost["Pid"])
        finally:
            for pid in runners:
                os.kill(pid, signal.SIGCONT)
        wait_for(lambda: _state(c, key)["State"] == "running", timeout=20,
                 what="job to run again")
        killed = c.cancel("running", key)
        assert [j["Key"] for j in killed] == [key]
        buried = wait_for(lambda: (j := _state(c, key))["State"] == "buried" and j,
                          what="killed job to be buried")
        assert buried["FailReason"] == "killed by user request"
        assert not psutil.pid_exists(buried["Pid"]) or \
            psutil.Process(buried["Pid"]).status() == psutil.STATUS_ZOMBIE
