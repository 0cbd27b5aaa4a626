"""wr on a 3-node Slurm: runners on other machines, node deaths, partitions, a crash (issue 16).

Each test gets a fresh cluster (tests/e2e/slurm_nodes.py: nodes n1-n3 of 2 cpus, each its
own network, hostname and processes) and a manager on the head's address, with the short
timings of tests/conftest.py (keep-alive timeout ``ttr`` 3 s, a keep-alive every 0.5 s).
Runners on the nodes reach the manager over the bridge and check its certificate, made for
the head's IP address. Every job's side effect is a line appended to a shared file when
its command has finished, so "once per successful attempt" can be counted; what the
manager did to each job is read back from its event stream (tests/e2e/job_history.py).
"""

from __future__ import annotations

import collections
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ManagerHandle, wait_for
from tests.e2e import slurm_nodes as nodes_module
from tests.e2e.job_history import job_history, moves
from tests.e2e.slurm_cluster import free_port
from tests.e2e.slurm_nodes import SLURMD_TIMEOUT, MultiNodeSlurm
from wr.client import Client

pytestmark = pytest.mark.e2e

slurm_nodes = nodes_module.slurm_nodes
"""A fresh 3-node Slurm (a fixture)."""

TTR = 3.0
"""The keep-alive timeout the managers here run with (tests/conftest.py's FAST_TIMINGS)."""


class HeadManager:
    """A manager on the cluster's head, and how to reach it as the nodes do."""

    def __init__(self, handle: ManagerHandle, head: str) -> None:
        self.handle = handle
        self.head = head

    @property
    def url(self) -> str:
        return f"https://{self.head}:{self.handle.web_port}"

    def client(self) -> Client:
        return Client(self.url, self.handle.token, ca_file=self.handle.ca, timeout=60)

    def history(self, rep_grp: str) -> dict[str, list[dict[str, Any]]]:
        with self.handle.http() as api:
            return job_history(api, self.url, rep_grp)


@pytest.fixture
def head_manager(slurm_nodes: MultiNodeSlurm, make_manager):
    """Factory: a started manager on the head address, with fixed ports (so a restarted
    one is found again by its runners). The cluster fixture comes first, so it outlives
    the manager."""
    def start() -> HeadManager:
        head = slurm_nodes.head
        m = make_manager(SLURM_CONF=str(slurm_nodes.conf), WR_MANAGERHOST=head,
                         WR_MANAGERCERTDOMAIN=head, WR_MANAGERPORT=str(free_port()),
                         WR_MANAGERWEB=str(free_port()))
        m.start("-s", "slurm")
        return HeadManager(m, head)

    return start


def jobs(record: Path, n: int, cmd: str = "sleep 8", **extra: Any) -> list[dict[str, Any]]:
    """``n`` one-cpu jobs running ``cmd``, then appending "<i> <hostname>" to ``record``."""
    return [{"cmd": f"{cmd} && echo {i} $(hostname) >> {record} # {i}", "cpus": 1,
             "memory": "100M", "retries": 2, **extra} for i in range(n)]


def running(c: Client, rep_grp: str) -> list[dict[str, Any]]:
    """The jobs whose commands run (``state=running`` also lists reserved ones)."""
    return [j for j in c.status(rep_grp, state="running") if j["State"] == "running"]


def running_on(c: Client, rep_grp: str, node: str) -> list[dict[str, Any]]:
    return [j for j in running(c, rep_grp) if j["Host"] == node]


def all_complete(c: Client, rep_grp: str, n: int) -> list[dict[str, Any]] | None:
    done = c.status(rep_grp)
    return done if len(done) == n and all(j["State"] == "complete" for j in done) else None


def recorded(record: Path) -> collections.Counter[tuple[str, str]]:
    """How often each (job number, host) line was appended."""
    return collections.Counter(tuple(line.split()) for line in record.read_text().splitlines())


def test_runners_on_every_node_reach_the_manager_over_the_network(
        slurm_nodes: MultiNodeSlurm, head_manager, tmp_path: Path) -> None:
    """Steps: add 6 one-cpu jobs (the cluster has 3 nodes of 2 cpus). Expected: they run at
    once, two on each node, each reporting its node's name and address; all complete."""
    m = head_manager()
    record = tmp_path / "done.txt"
    with m.client() as c:
        c.add(jobs(record, 6, "sleep 3"), rep_grp="spread")
        started = wait_for(lambda: len(r := running(c, "spread")) == 6 and r,
                           timeout=60, what="6 jobs running")
        done = wait_for(lambda: all_complete(c, "spread", 6), timeout=60,
                        what="all jobs complete")
    hosts = collections.Counter(j["Host"] for j in started)
    assert hosts == {"n1": 2, "n2": 2, "n3": 2}
    assert {(j["Host"], j["HostIP"]) for j in done} == {
        (n, slurm_nodes.net.addrs[n]) for n in slurm_nodes.nodes}
    assert sorted(recorded(record)) == sorted((str(i), j["Host"]) for i, j in enumerate(
        sorted(done, key=lambda j: int(j["Cmd"].rsplit("# ", 1)[1]))))


def test_a_node_that_dies_has_its_jobs_rerun_on_the_others(
        slurm_nodes: MultiNodeSlurm, head_manager, tmp_path: Path) -> None:
    """Steps: add 12 one-cpu jobs of 8 s (6 run at once); once 2 run on n2, cut n2's power
    (its link, then all its processes at once: nobody hears it die). Expected: once Slurm
    marks n2 down and fails its runner jobs (NODE_FAIL), the 2 jobs are released at once
    with that reason and rerun on n1 or n3; all 12 complete, none buried, each side effect
    appears exactly once (the killed attempts never finished); the 2 jobs' Attempts say 2,
    the others' 1, and no job that ran on a healthy node was ever lost."""
    m = head_manager()
    record = tmp_path / "done.txt"
    with m.client() as c:
        c.add(jobs(record, 12), rep_grp="death")
        victims = wait_for(lambda: len(r := running_on(c, "death", "n2")) == 2 and r,
                           timeout=60, what="2 jobs running on n2")
        died = time.time()
        slurm_nodes.kill_node("n2")
        done = wait_for(lambda: all_complete(c, "death", 12), timeout=150, interval=0.5,
                        what="all jobs complete")
    hit = {j["Key"] for j in victims}
    history = m.history("death")
    released = {key: next(e for e in history[key] if e["From"] in ("running", "lost")
                          and e["To"] in ("delayed", "ready", "buried")) for key in hit}
    recovery = max(e["Time"] for e in released.values()) - died
    print(f"\nrecovery after n2 died: {recovery:.1f} s (SlurmdTimeout {SLURMD_TIMEOUT} s)")
    for e in released.values():
        assert e["FailReason"].startswith("lost contact with runner: Slurm job "), e
        assert "was lost with its node n2 (NODE_FAIL)" in e["FailReason"], e
    assert {j["Key"]: j["Attempts"] for j in done} == {
        j["Key"]: 2 if j["Key"] in hit else 1 for j in done}
    assert all(j["Host"] != "n2" for j in done if j["Key"] in hit)
    assert [key for key, h in history.items() if key not in hit and "lost" in
            [to for _, to in moves(h)]] == []
    lines = recorded(record)
    assert sorted(int(i) for i, _ in lines) == list(range(12))
    assert set(lines.values()) == {1}


def test_a_partition_longer_than_the_keep_alive_timeout_is_survived(
        slurm_nodes: MultiNodeSlurm, head_manager, tmp_path: Path) -> None:
    """Steps: run 6 one-cpu jobs of 15 s, two per node; cut n3 off for 1 s (less than the
    keep-alive timeout), then cut n2 off until its jobs show lost (longer than the timeout,
    shorter than Slurm's SlurmdTimeout) and let it back. Expected: n2's jobs went lost,
    then running again when their runners were heard, and complete with their real
    results on n2 (Attempts 1); n3's short partition left no trace (none of its jobs was
    ever lost), nor did n1's jobs; every side effect appears exactly once."""
    m = head_manager()
    record = tmp_path / "done.txt"
    with m.client() as c:
        c.add(jobs(record, 6, "sleep 15"), rep_grp="cut")
        wait_for(lambda: all(len(running_on(c, "cut", n)) == 2 for n in slurm_nodes.nodes),
                 timeout=60, what="2 jobs running on every node")
        slurm_nodes.cut("n3")
        time.sleep(1.0)  # the partition itself: its length is the point of the test
        slurm_nodes.heal("n3")
        slurm_nodes.cut("n2")
        try:
            wait_for(lambda: len([j for j in c.status("cut", state="lost")
                                  if j["Host"] == "n2"]) == 2,
                     timeout=20, what="n2's jobs to be lost")
        finally:
            slurm_nodes.heal("n2")
        wait_for(lambda: not c.status("cut", state="lost"), timeout=30,
                 what="n2's runners to be heard again")
        done = wait_for(lambda: all_complete(c, "cut", 6), timeout=60,
                        what="all jobs complete")
    history = m.history("cut")
    by_host = collections.defaultdict(list)
    for j in done:
        by_host[j["Host"]].append(j)
        assert (j["Attempts"], j["Exitcode"]) == (1, 0), j
    assert {host: len(js) for host, js in by_host.items()} == {"n1": 2, "n2": 2, "n3": 2}
    for j in by_host["n2"]:
        assert ("running", "lost") in moves(history[j["Key"]])
        assert ("lost", "running") in moves(history[j["Key"]])
    for j in by_host["n1"] + by_host["n3"]:
        assert "lost" not in [to for _, to in moves(history[j["Key"]])], history[j["Key"]]
    assert set(recorded(record).values()) == {1}
    assert len(recorded(record)) == 6
    assert slurm_nodes.node_states()["n2"] in ("idle", "mix", "alloc"), \
        "the partition was meant to be shorter than SlurmdTimeout"


def test_a_partition_slurm_gives_up_on_reruns_the_jobs_and_the_old_attempts_cannot_interfere(
        slurm_nodes: MultiNodeSlurm, head_manager, tmp_path: Path) -> None:
    """Steps: 4 one-cpu jobs that take 2 s, except on n2 where they hang; once 2 run on n2,
    cut n2 off until Slurm marks it down (its runner jobs NODE_FAIL) and the manager has
    released them, then let n2 back while its old attempts still run. Expected: the 2 jobs
    are rerun elsewhere and complete with the new attempts' results (Attempts 2, not on
    n2); the old runners, heard again, have their keep-alives refused and are told to kill
    their commands, so the old attempts end without changing anything (a dead node and a
    long partition look alike from the head: the rerun is counted and logged)."""
    m = head_manager()
    record = tmp_path / "done.txt"
    slow_on_n2 = 'if [ "$(hostname)" = n2 ]; then sleep 600; else sleep 2; fi'
    with m.client() as c:
        c.add(jobs(record, 4, slow_on_n2), rep_grp="long")
        victims = wait_for(lambda: len(r := running_on(c, "long", "n2")) == 2 and r,
                           timeout=60, what="2 jobs running on n2")
        hit = {j["Key"] for j in victims}
        old_pids = [int(p.pid) for p in psutil.process_iter(["cmdline"])
                    if (p.info["cmdline"] or [])[-2:] == ["sleep", "600"]]
        assert len(old_pids) == 2
        slurm_nodes.cut("n2")
        try:
            wait_for(lambda: all((j := c.status(k)[0])["Attempts"] == 1 and
                                 j["State"] not in ("running", "lost") for k in hit),
                     timeout=90, interval=0.2, what="n2's jobs to be released")
        finally:
            slurm_nodes.heal("n2")
        done = wait_for(lambda: all_complete(c, "long", 4), timeout=60,
                        what="all jobs complete")
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() !=
                                 psutil.STATUS_ZOMBIE for p in old_pids),
                 timeout=90, interval=0.5, what="the old attempts to be killed")
        after = {k: c.status(k)[0] for k in hit}
    for key in hit:
        assert (after[key]["Attempts"], after[key]["State"]) == (2, "complete")
        assert after[key]["Host"] != "n2" and after[key]["Exitcode"] == 0
    assert {j["Key"]: j["Attempts"] for j in done if j["Key"] not in hit} == {
        j["Key"]: 1 for j in done if j["Key"] not in hit}
    lines = recorded(record)
    assert set(lines.values()) == {1} and len(lines) == 4
    assert all(host != "n2" for _, host in lines)
    log = m.handle.log()
    for key in hit:
        assert f"job {key} ended as 'lost contact with runner: Slurm job " in log
        assert f"touched job {key}, which it no longer holds" in log


def test_a_manager_killed_while_three_nodes_run_jobs(
        slurm_nodes: MultiNodeSlurm, head_manager, tmp_path: Path) -> None:
    """Steps: 12 one-cpu jobs of 4 s run on the 3 nodes; SIGKILL the manager while 6 run,
    start it again on the same address and ports. Expected: the runners on the nodes
    reconnect over the network and report; all 12 complete exactly once (Attempts 1, each
    side effect once), on all three nodes."""
    m = head_manager()
    record = tmp_path / "done.txt"
    with m.client() as c:
        c.add(jobs(record, 12, "sleep 4"), rep_grp="crash")
        wait_for(lambda: len(running(c, "crash")) == 6, timeout=60, what="6 jobs running")
    os.kill(m.handle.pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(m.handle.pid) or
             psutil.Process(m.handle.pid).status() == psutil.STATUS_ZOMBIE,
             what="the manager to die")
    m.handle.start("-s", "slurm")
    with m.client() as c:
        done = wait_for(lambda: all_complete(c, "crash", 12), timeout=150, interval=0.5,
                        what="all jobs complete")
    assert [j["Attempts"] for j in done] == [1] * 12
    assert {j["Host"] for j in done} == set(slurm_nodes.nodes)
    lines = recorded(record)
    assert sorted(int(i) for i, _ in lines) == list(range(12))
    assert set(lines.values()) == {1}
