"""A manager killed with SIGKILL loses nothing and runs nothing twice."""

from __future__ import annotations

import collections
import os
import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kill_9_of_the_manager_while_jobs_run(make_manager, tmp_path: Path) -> None:
    """Steps: run 12 jobs of 2 s (4 at once) that each append their number to a file when
    they finish; SIGKILL the manager while they run; start it again on the same ports.
    Expected: the runners keep their jobs running through the outage and report them to
    the new manager (same token); every job ends complete, recorded exactly once."""
    m = make_manager(WR_MANAGERPORT=str(_free_port()), WR_MANAGERWEB=str(_free_port()))
    m.start()
    token = m.token
    record = tmp_path / "done.txt"
    with m.client() as c:
        c.add([{"cmd": f"sleep 2 && echo {i} >> {record}", "cpus": 0} for i in range(12)],
              rep_grp="crash")
        wait_for(lambda: len(c.status("crash", state="running")) >= 2, what="jobs running")
    os.kill(m.pid, signal.SIGKILL)
    wait_for(lambda: not _alive(m.pid), what="the manager to die")
    m.start()
    assert m.token == token, "the token must survive a crash"
    with m.client() as c:
        final = wait_for(lambda: (js := c.status("crash")) and
                         all(j["State"] == "complete" for j in js) and js,
                         timeout=120, interval=0.5, what="all jobs complete")
    assert len(final) == 12
    counts = collections.Counter(record.read_text().split())
    assert sorted(map(int, counts)) == list(range(12))
    assert [n for n, k in counts.items() if k != 1] == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
