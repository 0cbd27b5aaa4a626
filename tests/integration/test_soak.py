"""The exactly-once soak of issue 13: runners and the manager killed while 1,000 jobs run.

Steps: add 1,000 jobs of `sleep 0.05` that each append their key to one file (wr add's
default of 3 retries); while they run, SIGKILL a random runner worker 20 times at random
moments, and SIGKILL the manager twice (restarting it each time).
Expected: every job completes, none is buried, the file holds exactly 1,000 distinct lines
with none twice, and every job that took more than one attempt is named in the manager's
log with the reason (no hidden extra runs).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.integration

JOBS = 1000
RUNNER_KILLS = 20
MANAGER_KILLS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_a_worker(m: ManagerHandle, rng: random.Random) -> bool:
    workers = m.runner_pids()
    if not workers:
        return False
    try:
        os.kill(rng.choice(workers), signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _crash_and_restart(m: ManagerHandle) -> None:
    import psutil

    os.kill(m.pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(m.pid)
             or psutil.Process(m.pid).status() == psutil.STATUS_ZOMBIE,
             what="the manager to die")
    # Down for a while, as after a real crash: runners meet a refused connection and back
    # off (nothing to wait for: their attempts are not visible from here).
    time.sleep(0.5)
    m.start()


def _complete(m: ManagerHandle) -> int:
    try:
        with m.client() as c:
            return c.counts("soak")["complete"]
    except Exception:  # the manager is restarting
        return -1


def test_kills_of_runners_and_manager_run_each_job_exactly_once(
        make_manager: Any, tmp_path: Path) -> None:
    seed = int(os.environ.get("WR_SOAK_SEED", random.randrange(1 << 30)))
    print(f"soak seed {seed}")
    rng = random.Random(seed)
    # Fixed ports, as a real deployment has: runners reconnect to the restarted manager.
    m = make_manager(WR_MANAGERPORT=str(free_port()), WR_MANAGERWEB=str(free_port()))
    m.start()
    record = tmp_path / "record"
    lines = "\n".join(f"sleep 0.05 && echo {n:04d} >> {record}" for n in range(JOBS))
    m.wr("add", "-i", "soak", input=lines + "\n", check=True)

    crash_at = sorted(rng.sample(range(3, RUNNER_KILLS - 2), MANAGER_KILLS))
    kills = 0
    deadline = time.monotonic() + 300
    while kills < RUNNER_KILLS and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.6))  # kills at random moments: the soak's schedule
        if _kill_a_worker(m, rng):
            kills += 1
            if crash_at and kills == crash_at[0]:
                crash_at.pop(0)
                _crash_and_restart(m)
    assert kills == RUNNER_KILLS and not crash_at, "the jobs ended before the kills did"

    wait_for(lambda: _complete(m) == JOBS, timeout=300, interval=0.5,
             what="every job to complete")
    with m.client() as c:
        counts = c.counts("soak")
        jobs = c.status("soak")
    assert counts["buried"] == 0 and counts["complete"] == JOBS, counts

    written = record.read_text().splitlines()
    twice = [line for line, n in Counter(written).items() if n > 1]
    assert not twice, f"run twice: {twice}"
    assert sorted(written) == [f"{n:04d}" for n in range(JOBS)]

    log = m.log()
    reruns = [j for j in jobs if j["Attempts"] > 1]
    hidden = [j["Key"] for j in reruns if not re.search(j["Key"], log)]
    assert not hidden, f"run again without the log saying why: {hidden}"
    print(f"{kills} runner kills, {MANAGER_KILLS} manager kills, {len(reruns)} jobs rerun "
          "(visible)")
