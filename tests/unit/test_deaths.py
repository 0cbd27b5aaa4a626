"""What becomes of the jobs of runners the scheduler says have ended (wr.manager.deaths).

The queue is real; the manager around it is a stand-in holding what `RunnerDeaths` uses
(the queue, the connected runners, the keep-alive interval, the persisting ``_persist``).
A runner's silence is set through its link's ``heard`` time, never by sleeping.
"""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

from wr.jobs import Job, State
from wr.manager.core import RunnerLink
from wr.manager.deaths import RunnerDeaths
from wr.queue import EndReport, Queue
from wr.schedulers.base import RunnerGone

S = State
NODE_FAIL = RunnerGone("Slurm job 7 was lost with its node n2 (NODE_FAIL)",
                       runner_ended=True)
OOM = RunnerGone("Slurm job 8 ran out of memory: ...", runner_ended=True,
                 out_of_memory_mb=443)


class StandIn:
    """The parts of a Manager that RunnerDeaths uses."""

    def __init__(self) -> None:
        self.queue = Queue(ttr=60.0, retry_delay_min=0, retry_delay_max=0,
                           rng=random.Random(1))
        self.runner_links: dict[str, RunnerLink] = {}
        self.config = SimpleNamespace(touch_interval=1.0)
        self.persisted = 0

    def _persist(self) -> None:
        self.persisted += 1


def running(m: StandIn, key: str, runner: str, *, retries: int = 1, ram: int = 100) -> Job:
    m.queue.add([Job(key=key, cmd=f"echo {key}", retries=retries, until_buried=retries + 1,
                     ram=ram, user_ram=ram)], 0)
    job = m.queue.reserve("", runner, 1)
    assert job is not None and job.key == key
    m.queue.start(key, runner, pid=42, host="n2", host_ip="198.18.0.11", now=1)
    return job


def connect(m: StandIn, runner: str, silent_for: float) -> RunnerLink:
    link = RunnerLink(runner, "", send=None)
    link.heard = time.monotonic() - silent_for
    m.runner_links[runner] = link
    return link


def test_a_disconnected_runners_jobs_end_at_once_with_the_schedulers_words() -> None:
    m = StandIn()
    running(m, "a", "r1@slurm:7")
    running(m, "b", "r2@slurm:9")
    RunnerDeaths(m).heard({"slurm:7": NODE_FAIL})
    a, b = m.queue.get("a"), m.queue.get("b")
    assert (a.state, a.fail_reason, a.attempts, a.exitcode) == (
        S.READY, "lost contact with runner: Slurm job 7 was lost with its node n2 "
        "(NODE_FAIL)", 1, -1)
    assert b.state == S.RUNNING  # another runner's job
    assert m.persisted == 1


def test_a_runner_still_heard_from_keeps_its_jobs_until_it_falls_silent() -> None:
    """Slurm may have lost the runner's node while the manager still hears it."""
    m = StandIn()
    running(m, "a", "r1@slurm:7")
    link = connect(m, "r1@slurm:7", silent_for=0.5)
    deaths = RunnerDeaths(m)
    deaths.heard({"slurm:7": NODE_FAIL})
    deaths.settle()
    assert m.queue.get("a").state == S.RUNNING and m.persisted == 0
    link.heard = time.monotonic() - deaths.silence  # two keep-alives missed
    deaths.settle()
    assert m.queue.get("a").state == S.READY
    assert "r1@slurm:7" not in m.runner_links  # its connection was a dead one
    deaths.settle()
    assert m.persisted == 1


def test_a_memory_kill_fails_the_job_for_ram_with_the_most_memory_seen() -> None:
    """Issue 13 item 10: the retry gets more memory (the queue's bump: 2 x the peak)."""
    m = StandIn()
    running(m, "a", "r1@slurm:8")
    m.queue.touch("a", "r1@slurm:8", 2, peak_ram=300)  # what the runner last said
    running(m, "b", "r2@slurm:9")
    m.queue.touch("b", "r2@slurm:9", 2, peak_ram=900)  # more than Slurm saw
    deaths = RunnerDeaths(m)
    deaths.heard({"slurm:8": OOM, "slurm:9": OOM})
    a, b = m.queue.get("a"), m.queue.get("b")
    assert (a.state, a.fail_reason, a.peak_ram) == (S.READY, "command used too much RAM", 443)
    assert a.ram == 1500  # max(2 x 443, 443 + 1000), rounded up to 100 MB
    assert (b.peak_ram, b.ram) == (900, 1900)


def test_out_of_attempts_is_buried_a_reservation_goes_back_and_a_kill_is_a_kill() -> None:
    m = StandIn()
    running(m, "last", "r1@slurm:7", retries=0)
    m.queue.add([Job(key="held", cmd="echo held", until_buried=1)], 0)
    assert m.queue.reserve("", "r1@slurm:7", 1).key == "held"
    running(m, "killed", "r1@slurm:7", retries=3)
    m.queue.kill(["killed"], 2)
    RunnerDeaths(m).heard({"slurm:7": NODE_FAIL})
    last, held, killed = (m.queue.get(k) for k in ("last", "held", "killed"))
    assert (last.state, last.until_buried) == (S.BURIED, 0)
    assert (held.state, held.attempts, held.reserved_by) == (S.READY, 0, "")
    assert (killed.state, killed.fail_reason) == (S.BURIED, "killed by user request")


def test_a_verdict_on_a_runner_without_jobs_or_after_its_jobs_ended_does_nothing() -> None:
    m = StandIn()
    running(m, "a", "r1@slurm:7")
    connect(m, "r1@slurm:7", silent_for=0)
    deaths = RunnerDeaths(m)
    deaths.heard({"slurm:7": NODE_FAIL, "slurm:99": NODE_FAIL})
    m.queue.end("a", "r1@slurm:7", EndReport("archive"), 3)  # it reported after all
    m.runner_links.clear()
    deaths.settle()
    assert "a" not in m.queue.jobs and m.persisted == 0
