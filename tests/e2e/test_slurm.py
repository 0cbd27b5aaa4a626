"""`wr manager start -s slurm` on a real one-node Slurm (2 cpus), driven over REST (issue 5).

The cluster starts once per session (tests/e2e/slurm_cluster.py); each test has its own
manager, whose runner jobs are told apart from other tests' by their name prefix.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.conftest import ManagerHandle, wait_for
from tests.e2e import slurm_cluster
from tests.e2e.job_history import job_history
from tests.e2e.slurm_cluster import OneNodeSlurm, free_port
from tests.integration.test_scheduler_contract import SchedulerContract
from wr.schedulers.base import Scheduler
from wr.schedulers.slurm import SlurmScheduler, name_prefix

pytestmark = pytest.mark.e2e

LIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")

slurm = slurm_cluster.slurm
"""The session's one-node Slurm (a fixture)."""


class TestSlurmScheduler(SchedulerContract):
    """The scheduler contract, with runners as Slurm jobs."""

    @pytest.fixture(autouse=True)
    def _cluster(self, slurm: OneNodeSlurm, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SLURM_CONF", str(slurm.conf))

    async def new_scheduler(self, tmp_path: Path) -> Scheduler:
        return SlurmScheduler(manager_dir=tmp_path / "manager", poll_interval=0.2)


@pytest.fixture
def start_manager(make_manager, slurm: OneNodeSlurm):
    """Factory: a started manager on the session's Slurm; arguments go to `manager start`,
    keywords to its environment (settings such as ``WR_TTR``)."""
    def start(*flags: str, **env: str) -> ManagerHandle:
        m = make_manager(SLURM_CONF=str(slurm.conf), **env)
        m.start("-s", "slurm", *flags)
        return m

    return start


def ours(slurm: OneNodeSlurm, m: ManagerHandle, *states: str) -> list[dict[str, str]]:
    """This manager's runner jobs in squeue (all states if none given)."""
    prefix = name_prefix("production", str(m.dir))
    return [j for j in slurm.jobs(*states) if j["name"].startswith(prefix)]


def state_of(client, key: str) -> dict:
    return client.status(key)[0]


def count(client, rep_grp: str, state: str) -> int:
    return sum(1 for j in client.status(rep_grp) if j["State"] == state)


def test_jobs_run_inside_slurm_jobs_with_the_cpus_and_memory_they_asked_for(
        start_manager, slurm: OneNodeSlurm) -> None:
    """Steps: add a job wanting 2 cpus and 500 MB that saves its environment, then sleeps.
    Expected: while it runs, squeue shows this manager's runner job running, and scontrol
    shows it has 2 cpus and 600 MB (the job's 500 MB plus the runner's 100); the job sees
    that Slurm job's SLURM_JOB_ID; it completes; `wr manager status` names the scheduler."""
    m = start_manager()
    env_file = m.home / "env.txt"
    with m.client() as c:
        key = c.add([{"cmd": f"env > {env_file}; sleep 3", "cpus": 2, "memory": "500M",
                      "cwd": str(m.home)}], rep_grp="env")[0]["Key"]
        wait_for(lambda: state_of(c, key)["State"] == "running", what="the job to run")
        running = wait_for(lambda: ours(slurm, m, "RUNNING"), what="a running runner job")
        assert len(running) == 1
        details = slurm.job(running[0]["id"])
        assert details["NumCPUs"] == "2"
        assert details["MinMemoryNode"] == "600M"
        assert details["JobName"].startswith("wrp_")
        done = wait_for(lambda: (j := state_of(c, key))["State"] == "complete" and j,
                        what="the job to complete")
        assert done["Exitcode"] == 0
    seen = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                if "=" in line)
    assert seen["SLURM_JOB_ID"] == running[0]["jobid"]
    assert seen["SLURM_CPUS_PER_TASK"] == "2"
    assert "Scheduler: slurm" in m.wr("manager", "status", check=True).stdout


def test_a_job_over_its_slurm_memory_fails_at_once_and_its_retry_gets_more(
        start_manager, slurm: OneNodeSlurm) -> None:
    """Issue 13 item 10. Steps: with a keep-alive timeout of a minute, add a job asking for
    100 MB that allocates 400 MB, then sleeps (1 retry). Expected: Slurm kills its runner
    job (OverMemoryKill); within seconds, long before the keep-alive timeout, the job fails
    as "command used too much RAM", never having been lost; a warning and the manager's
    log quote Slurm; its retry asks for more than twice what Slurm saw it use (wr's bump
    after a memory failure), runs in a bigger runner job, and completes."""
    m = start_manager(WR_TTR="60")
    hog = f"{sys.executable} -c 'x = bytearray(400 << 20); import time; time.sleep(2)'"
    with m.client() as c:
        key = c.add([{"cmd": hog, "memory": "100M", "retries": 1}], rep_grp="hog")[0]["Key"]
        failed = wait_for(lambda: (j := state_of(c, key))["FailReason"] ==
                          "command used too much RAM" and j, timeout=30, interval=0.01,
                          what="the job to fail for its memory")
        assert failed["Exitcode"] == -1
        done = wait_for(lambda: (j := state_of(c, key))["State"] == "complete" and j,
                        timeout=60, what="the retry to complete")
        warnings = [w["Msg"] for w in c.warnings()]
    # Slurm kills as soon as it sees the runner job over its 200 MB, so what it saw may be
    # short of the 400 MB; the peak is at least that (more if the runner saw more) and the
    # retry gets wr's bump of it: max(2 x peak, peak + 1000), rounded up to 100 MB.
    seen = max(int(said.group(1)) for w in warnings
               if (said := re.search(r"exceeded memory limit \((\d+) > 209715200\)", w)))
    peak = max(-(-seen // (1 << 20)), 200)
    assert done["ExpectedRAM"] >= -(-max(2 * peak, peak + 1000) // 100) * 100 >= 1200
    assert done["Attempts"] == 2
    with m.http() as api:
        history = job_history(api, m.url, "hog")[key]
    assert "lost" not in [e["To"] for e in history]
    assert [(e["From"], e["To"], e["FailReason"]) for e in history
            if e["From"] == "running"][0][1:] == ("delayed", "command used too much RAM")
    first, second = sorted(ours(slurm, m), key=lambda j: int(j["jobid"]))
    assert slurm.job(first["id"])["MinMemoryNode"] == "200M"
    assert slurm.job(second["id"])["MinMemoryNode"] == f"{done['ExpectedRAM'] + 100}M"
    assert any("ran out of memory" in w and "Exceeded job memory limit" in w
               for w in warnings), warnings
    assert f"job {key} ended as 'command used too much RAM' after attempt 1" in m.log()


def test_killing_a_running_job_through_the_api_kills_its_command(
        start_manager, slurm: OneNodeSlurm) -> None:
    """Steps: run `sleep 60`; DELETE it with state=running. Expected: buried as "killed by
    user request" within seconds, its process gone, and its runner job ends (no work left)."""
    m = start_manager()
    with m.client() as c:
        key = c.add([{"cmd": "sleep 60"}], rep_grp="kill")[0]["Key"]
        running = wait_for(lambda: (j := state_of(c, key))["State"] == "running" and j,
                           what="the job to run")
        assert [j["Key"] for j in c.cancel("running", key)] == [key]
        buried = wait_for(lambda: (j := state_of(c, key))["State"] == "buried" and j,
                          timeout=20, what="the killed job to be buried")
        assert buried["FailReason"] == "killed by user request"
    import psutil

    assert not psutil.pid_exists(running["Pid"]) or \
        psutil.Process(running["Pid"]).status() == psutil.STATUS_ZOMBIE
    wait_for(lambda: not ours(slurm, m, *LIVE), timeout=20, what="the runner job to end")


def test_jobs_added_while_runners_are_busy_are_picked_up_by_the_same_runners(
        start_manager, slurm: OneNodeSlurm) -> None:
    """Steps: add 2 one-cpu jobs (the node has 2 cpus) that note their SLURM_JOB_ID and
    sleep; once both run, add 4 more. Expected: all 6 complete inside the first 2 Slurm
    jobs: no other runner job was submitted."""
    m = start_manager()
    ids = m.home / "ids"

    def jobs(start: int, n: int) -> list[dict]:
        return [{"cmd": f"echo $SLURM_JOB_ID >> {ids}; sleep 1.5 # {i}", "cpus": 1,
                 "memory": "100M"} for i in range(start, start + n)]

    with m.client() as c:
        c.add(jobs(0, 2), rep_grp="busy")
        wait_for(lambda: count(c, "busy", "running") == 2, what="2 running jobs")
        c.add(jobs(2, 4), rep_grp="busy")
        wait_for(lambda: count(c, "busy", "complete") == 6, timeout=60,
                 what="all 6 jobs to complete")
    assert len(set(ids.read_text().split())) == 2
    assert len(ours(slurm, m)) == 2


def test_requirements_no_partition_can_meet_are_buried_at_once(
        start_manager, slurm: OneNodeSlurm) -> None:
    """Steps: add a job wanting 100 GB and one wanting 8 cpus (the node has 4 GB and 2).
    Expected: both buried at once with a FailReason naming the partition's limits; no Slurm
    job was submitted."""
    m = start_manager()
    with m.client() as c:
        keys = [j["Key"] for j in c.add([{"cmd": "true", "memory": "100G"},
                                          {"cmd": "true # 2", "cpus": 8}], rep_grp="big")]
        for key in keys:
            buried = wait_for(lambda key=key: (j := state_of(c, key))["State"] == "buried"
                              and j, timeout=10, what="the job to be buried")
            reason = buried["FailReason"]
            assert reason.startswith("resource requirements cannot be met: no Slurm "
                                     "partition can run a runner needing "), reason
            assert "partition debug offers at most 2 cpus and" in reason
    assert not ours(slurm, m)


def test_an_unknown_partition_buries_jobs_and_a_refused_submission_is_a_warning(
        start_manager, slurm: OneNodeSlurm) -> None:
    """Steps: start one manager with --slurm_partition nosuch and another with
    --slurm_options '--constraint=nosuch'; add a job to each. Expected: the first job is
    buried because the partition does not exist; the second is buried with sbatch's own
    words, which also appear as a warning."""
    m = start_manager("--slurm_partition", "nosuch")
    with m.client() as c:
        key = c.add([{"cmd": "true"}], rep_grp="p")[0]["Key"]
        buried = wait_for(lambda: (j := state_of(c, key))["State"] == "buried" and j,
                          timeout=10, what="the job to be buried")
    assert "Slurm partition 'nosuch' does not exist (partitions: debug)" in \
        buried["FailReason"]
    m.stop()

    m = start_manager("--slurm_options", "--constraint=nosuch")
    with m.client() as c:
        key = c.add([{"cmd": "true"}], rep_grp="r")[0]["Key"]
        buried = wait_for(lambda: (j := state_of(c, key))["State"] == "buried" and j,
                          timeout=10, what="the job to be buried")
        warnings = [w["Msg"] for w in c.warnings()]
    assert "Slurm refused runners for scheduler group" in buried["FailReason"]
    assert "Invalid feature specification" in buried["FailReason"]
    assert any("Invalid feature specification" in w for w in warnings), warnings


@pytest.mark.parametrize("how", ["drain", "stop"])
def test_draining_or_stopping_the_manager_leaves_no_slurm_job_behind(
        how: str, start_manager, slurm: OneNodeSlurm) -> None:
    """Steps: run 2 one-cpu jobs (filling the node) while a 2-cpu job's runner waits in
    Slurm's queue; drain (or stop) the manager. Expected: once the manager is gone, squeue
    lists no job of it: the pending runner was cancelled and the running ones ended (after
    their jobs, for a drain); the drained jobs completed and the rest wait in the database."""
    m = start_manager()
    with m.client() as c:
        c.add([{"cmd": f"sleep 2 # {i}", "cpus": 1, "memory": "100M"} for i in range(2)],
              rep_grp="small")
        wait_for(lambda: count(c, "small", "running") == 2, what="2 running jobs")
        c.add([{"cmd": "sleep 2", "cpus": 2, "memory": "100M"}], rep_grp="wide")
        wait_for(lambda: ours(slurm, m, "PENDING"), what="a pending runner job")
    m.wr(f"{'manager'}", how, check=True)
    wait_for(lambda: not (m.dir / "pid").exists(), timeout=60, what="the manager to stop")
    assert not ours(slurm, m, *LIVE), ours(slurm, m)
    if how == "drain":
        m.start("-s", "slurm")
        with m.client() as c:
            assert count(c, "small", "complete") == 2


def test_a_manager_that_cannot_reach_slurm_does_not_start(make_manager, tmp_path) -> None:
    """Steps: start with -s slurm where SLURM_CONF names no file, then where it names a
    cluster whose controller is not running. Expected: both starts fail, saying why."""
    m = make_manager(SLURM_CONF="/nonexistent/slurm.conf")
    out = m.wr("manager", "start", "-s", "slurm")
    assert out.returncode == 1
    assert "SLURM_CONF is /nonexistent/slurm.conf, which does not exist" in out.stderr
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=none\nSlurmctldHost=localhost(127.0.0.1)\n"
                    f"SlurmctldPort={free_port()}\nAuthType=auth/none\n"
                    "NodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost\n")
    m = make_manager(SLURM_CONF=str(conf))
    out = m.wr("manager", "start", "-s", "slurm")
    assert out.returncode == 1
    assert "Slurm does not answer" in out.stderr, out.stderr
