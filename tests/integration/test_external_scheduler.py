"""The external scheduler: the manager starts no runner and serves those that connect."""

from __future__ import annotations

import re
import shlex
import subprocess
import time

import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.integration


def _logged_command(m: ManagerHandle, group: str) -> list[str] | None:
    pattern = (rf"scheduler group '{re.escape(group)}' wants runners \(\d+ jobs\); the "
               r"external scheduler starts none: start them with (.+)\"$")
    for line in m.log().splitlines():
        if found := re.search(pattern, line):
            return shlex.split(found.group(1))
    return None


def test_jobs_wait_for_a_runner_started_by_hand_which_runs_them(make_manager, tag) -> None:
    """Steps: start a manager with -s external; add 3 jobs; wait; start the runner command
    its log gives for their group. Expected: no runner is started by the manager (the
    jobs stay ready, /metrics counts no runner); the log names the group and a command
    that, run by hand, completes all 3 jobs; the manager's info says external."""
    m = make_manager()
    m.start("-s", "external")
    with m.client() as c:
        assert c.info()["Scheduler"] == "external"
        c.add([{"cmd": f"echo {tag} {i}", "cpus": 1, "memory": "100M"} for i in range(3)],
              rep_grp=tag)
        argv = wait_for(lambda: _logged_command(m, "100:60:1:0"), what="the log's hint")
        # Long enough for a local scheduler to have started a runner (it takes ~0.1 s).
        time.sleep(1.0)
        assert {k: n for k, n in c.counts(tag).items() if n} == {"ready": 3}
        with m.http() as http:
            metrics = http.get("/metrics").text
        assert 'wr_runners{scheduler="external"} 0' in metrics
        assert 'wr_runner_connections{scheduler="external"} 0' in metrics
        assert argv[1:3] == ["-m", "wr.runner"]
        runner = subprocess.run(argv, env=m.env, capture_output=True, text=True,
                                timeout=120)
        assert runner.returncode == 0, runner.stderr
        assert {k: n for k, n in c.counts(tag).items() if n} == {"complete": 3}


def test_an_unknown_scheduler_is_refused_naming_the_choices(make_manager) -> None:
    """Steps: wr manager start -s lsf. Expected: exit 2, the message lists external."""
    m = make_manager()
    proc = m.wr("manager", "start", "-s", "lsf")
    assert proc.returncode == 2
    assert "'lsf' is not a scheduler wr has here; use one of local, slurm, external" in \
        proc.stderr
