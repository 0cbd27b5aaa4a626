"""A runner killed at any moment runs nothing twice and loses no exit (issue 13, item 3).

Every runner is a keeper and a worker (wr.keeper); these tests kill the worker with
SIGKILL at the moments that matter, for real, and look at what the jobs did (side-effect
files), what the manager stored (state, Attempts, Exitcode, FailReason) and what it logged.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.integration


def _job(c: Any, key: str) -> dict[str, Any]:
    return c.status(key)[0]


def _when(c: Any, key: str, state: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: (j := _job(c, key))["State"] == state and j, timeout=timeout,
                    what=f"job {key} to be {state}")


def _only_worker(m: ManagerHandle) -> int:
    pids = wait_for(m.runner_pids, what="a runner")
    assert len(pids) == 1, pids
    return pids[0]


def _zombie_child_of(pid: int) -> bool:
    try:
        return any(p.status() == psutil.STATUS_ZOMBIE for p in psutil.Process(pid).children())
    except psutil.Error:
        return False


def test_a_command_whose_runner_is_killed_runs_on_watched_by_its_keeper(
        manager: ManagerHandle, tmp_path: Path) -> None:
    """Steps: run `sleep 3 && echo done >> F` (retries 1); SIGKILL its runner's worker
    while it sleeps.
    Expected: the command is not killed (killing it could kill it between its last side
    effect and its exit): the keeper keeps it alive with the manager (it never becomes
    lost) and reports its real exit. The job completes at its first attempt, one line, and
    the manager's log says the runner died and its keeper reported for it."""
    record = tmp_path / "record"
    with manager.client() as c:
        key = c.add([{"cmd": f"sleep 3 && echo done >> {record}", "cpus": 1,
                      "retries": 1}], rep_grp="killed")[0]["Key"]
        running = _when(c, key, "running")
        worker = _only_worker(manager)
        os.kill(worker, signal.SIGKILL)
        assert psutil.pid_exists(running["Pid"])
        done = _when(c, key, "complete")
        assert (done["Attempts"], done["Exitcode"]) == (1, 0)
    assert record.read_text().splitlines() == ["done"]
    log = manager.log()
    assert f"killed by signal 9 (SIGKILL); its keeper reported for it: {key} (archive)" \
        in log, log
    assert f"{key}" not in "".join(line for line in log.splitlines() if "lost contact" in line)


def test_a_command_that_writes_after_its_runner_died_fails_visibly(
        manager: ManagerHandle, tmp_path: Path) -> None:
    """Steps: run `sleep 2; echo out; echo done >> F` (retries 1) and SIGKILL its worker
    during the sleep. Expected: with its runner gone nobody reads its output, so `echo out`
    gets SIGPIPE and the command dies of it: reported as a failure that says so (not as a
    success), and run again, visibly: complete at its second attempt, one line."""
    record = tmp_path / "record"
    with manager.client() as c:
        key = c.add([{"cmd": f"sleep 2; echo out; echo done >> {record}", "cpus": 1,
                      "retries": 1}], rep_grp="pipe")[0]["Key"]
        _when(c, key, "running")
        os.kill(_only_worker(manager), signal.SIGKILL)
        done = _when(c, key, "complete")
        assert done["Attempts"] == 2
    assert record.read_text().splitlines() == ["done"]
    assert "SIGPIPE" in manager.log()


def test_a_kill_reaches_a_command_its_keeper_watches(manager: ManagerHandle) -> None:
    """Steps: run `sleep 30`; SIGKILL its worker; then `wr kill` the job. Expected: the
    keeper kills the command when its keep-alive is answered with the kill, and the job is
    buried as killed by user request."""
    with manager.client() as c:
        key = c.add([{"cmd": "sleep 30", "cpus": 1}], rep_grp="kill")[0]["Key"]
        running = _when(c, key, "running")
        os.kill(_only_worker(manager), signal.SIGKILL)
        wait_for(lambda: manager.runner_pids() == [], what="the worker to be gone")
        assert [j["Key"] for j in c.cancel("running", key)] == [key]
        buried = _when(c, key, "buried")
        assert buried["FailReason"] == "killed by user request"
    assert not psutil.pid_exists(running["Pid"]) or \
        psutil.Process(running["Pid"]).status() == psutil.STATUS_ZOMBIE


def test_a_command_that_ended_as_its_runner_died_is_reported_not_rerun(
        manager: ManagerHandle, tmp_path: Path) -> None:
    """Steps: run `echo once >> F; exit 0` with retries 0 but make it wait on a file;
    freeze the worker (SIGSTOP), let the command finish (it is then an unreaped child of
    the frozen worker), SIGKILL the worker.
    Expected: the keeper reaps the command and reports its real exit: the job is complete
    at its first attempt, never buried as lost nor run again (one line)."""
    record, go = tmp_path / "record", tmp_path / "go"
    cmd = f"while [ ! -e {go} ]; do sleep 0.1; done; echo once >> {record}"
    with manager.client() as c:
        key = c.add([{"cmd": cmd, "cpus": 1, "retries": 0}], rep_grp="ended")[0]["Key"]
        _when(c, key, "running")
        worker = _only_worker(manager)
        os.kill(worker, signal.SIGSTOP)
        go.touch()
        wait_for(lambda: record.exists() and _zombie_child_of(worker),
                 what="the command to finish while its runner is frozen")
        os.kill(worker, signal.SIGKILL)
        done = _when(c, key, "complete")
        assert done["Attempts"] == 1 and done["Exitcode"] == 0
    assert record.read_text().splitlines() == ["once"]


def test_a_failure_as_its_runner_died_keeps_its_real_exit_code(manager: ManagerHandle,
                                                               tmp_path: Path) -> None:
    """As above, but the command exits 3 (retries 0). Expected: buried with Exitcode 3 and
    FailReason "command exited non-zero", as if the runner had reported it."""
    go = tmp_path / "go"
    cmd = f"while [ ! -e {go} ]; do sleep 0.1; done; exit 3"
    with manager.client() as c:
        key = c.add([{"cmd": cmd, "cpus": 1, "retries": 0}], rep_grp="failed")[0]["Key"]
        _when(c, key, "running")
        worker = _only_worker(manager)
        os.kill(worker, signal.SIGSTOP)
        go.touch()
        wait_for(lambda: _zombie_child_of(worker), what="the command to exit")
        os.kill(worker, signal.SIGKILL)
        buried = _when(c, key, "buried")
        assert (buried["Exitcode"], buried["FailReason"], buried["Attempts"]) == \
            (3, "command exited non-zero", 1)


def test_short_jobs_a_runner_ran_but_never_reported_are_not_run_again(
        manager: ManagerHandle, tmp_path: Path) -> None:
    """Steps: 60 jobs of `echo KEY >> F` (they end in milliseconds, so a runner runs them
    in batches and reports them together); freeze the worker after a few lines appear,
    wait for the commands it started to end, then SIGKILL it (every worker: there may be
    two).
    Expected: every job completes exactly once (60 distinct lines, none twice), and none
    shows more than one attempt: the keeper reported the ones the worker ran."""
    record = tmp_path / "record"
    jobs = [{"cmd": f"echo {n} >> {record}", "cpus": 1, "retries": 3} for n in range(60)]
    with manager.client() as c:
        c.add(jobs, rep_grp="short")
        wait_for(lambda: record.exists() and len(record.read_text().splitlines()) >= 5,
                 what="a few jobs to run")
        workers = wait_for(manager.runner_pids, what="a runner")
        for worker in workers:
            os.kill(worker, signal.SIGSTOP)
        wait_for(lambda: _commands_ended(workers), what="the commands in flight to end")
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        wait_for(lambda: c.counts("short")["complete"] == 60, timeout=120,
                 what="every job to complete")
        attempts = {j["Attempts"] for j in c.status("short")}
    lines = record.read_text().splitlines()
    assert sorted(lines, key=int) == [str(n) for n in range(60)]
    assert attempts <= {1, 2}
    assert attempts == {1} or "its keeper reported for it" in manager.log()


def test_a_killed_keeper_leaves_its_worker_to_finish(manager: ManagerHandle,
                                                     tmp_path: Path) -> None:
    """Steps: run `sleep 2 && echo once >> F`; SIGKILL the runner's keeper.
    Expected: nothing happens to the job: it completes at its first attempt."""
    record = tmp_path / "record"
    with manager.client() as c:
        key = c.add([{"cmd": f"sleep 2 && echo once >> {record}", "cpus": 1}],
                    rep_grp="keeper")[0]["Key"]
        _when(c, key, "running")
        keepers = wait_for(lambda: manager.runner_pids("wr-keeper"), what="the keeper")
        os.kill(keepers[0], signal.SIGKILL)
        done = _when(c, key, "complete")
        assert done["Attempts"] == 1
    assert record.read_text().splitlines() == ["once"]


def test_a_command_the_system_cannot_start_is_an_attempt(manager: ManagerHandle) -> None:
    """Issue 13, item 5. Steps: add `: aaa...` (200,000 characters, over Linux's limit for
    one argument) with retries 1. Expected: each start failure counts: buried after 2
    attempts, FailReason "command failed to start: Argument list too long: ..." saying
    what the system answered."""
    with manager.client() as c:
        key = c.add([{"cmd": ": " + "a" * 200_000, "retries": 1}], rep_grp="e2big")[0]["Key"]
        buried = _when(c, key, "buried")
    assert buried["Attempts"] == 2
    assert buried["FailReason"].startswith("command failed to start: Argument list too long")
    assert "bytes for the command itself" in buried["FailReason"]


def test_a_stop_leaves_no_working_directory_behind(make_manager: Any,
                                                   tmp_path: Path) -> None:
    """Issue 13, item 11. Steps: run `sleep 30` in a unique directory under a base cwd;
    stop the manager. Expected: the job is put back (uncharged) and its unique directory
    is gone: the base holds nothing."""
    m = make_manager()
    m.start()
    base = tmp_path / "base"
    base.mkdir()
    with m.client() as c:
        key = c.add([{"cmd": "sleep 30", "cwd": str(base)}], rep_grp="stop")[0]["Key"]
        _when(c, key, "running")
        assert any(base.iterdir())
    m.stop()
    assert list(base.iterdir()) == []


def test_a_runner_killed_with_its_keeper_leaves_nothing_running(manager: ManagerHandle,
                                                                 tmp_path: Path) -> None:
    """Steps: run `sleep 3 && echo done >> F` (retries 1); SIGKILL the runner's keeper and
    worker together (as `pkill -9 -f wr.runner` would).
    Expected: the manager, told by the scheduler that the whole runner was killed, kills
    the command at once and puts the job back, visibly: it completes at its second
    attempt with one line, and the log names it."""
    record = tmp_path / "record"
    with manager.client() as c:
        key = c.add([{"cmd": f"sleep 3 && echo done >> {record}", "cpus": 1,
                      "retries": 1}], rep_grp="both")[0]["Key"]
        running = _when(c, key, "running")
        keeper = wait_for(lambda: manager.runner_pids("wr-keeper"), what="the keeper")[0]
        worker = _only_worker(manager)
        os.kill(keeper, signal.SIGKILL)
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(running["Pid"])
                 or psutil.Process(running["Pid"]).status() == psutil.STATUS_ZOMBIE,
                 timeout=10, what="the command to be killed")
        done = _when(c, key, "complete")
        assert done["Attempts"] == 2
    assert record.read_text().splitlines() == ["done"]
    assert f"killed with its keeper; the manager reported for it from its journal: {key} " \
           "(release: its runner was killed with its keeper while this command ran; the " \
           "command was killed" in manager.log()


def test_short_jobs_of_a_runner_killed_with_its_keeper_run_once(
        manager: ManagerHandle, tmp_path: Path) -> None:
    """As the short-jobs test above, but the keepers die with the workers: the manager
    (their subreaper then) reads the exits of the commands they left. Expected: every job
    completes exactly once (60 distinct lines)."""
    record = tmp_path / "record"
    jobs = [{"cmd": f"echo {n} >> {record}", "cpus": 1, "retries": 3} for n in range(60)]
    with manager.client() as c:
        c.add(jobs, rep_grp="short2")
        wait_for(lambda: record.exists() and len(record.read_text().splitlines()) >= 5,
                 what="a few jobs to run")
        workers = wait_for(manager.runner_pids, what="a runner")
        keepers = manager.runner_pids("wr-keeper")
        for worker in workers:
            os.kill(worker, signal.SIGSTOP)
        wait_for(lambda: _commands_ended(workers), what="the commands in flight to end")
        for pid in [*keepers, *workers]:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: c.counts("short2")["complete"] == 60, timeout=120,
                 what="every job to complete")
    lines = record.read_text().splitlines()
    assert sorted(lines, key=int) == [str(n) for n in range(60)]


def _commands_ended(workers: list[int]) -> bool:
    """Whether every command the (frozen) workers started has exited: a frozen worker
    cannot reap them, so they stay as zombies."""
    for worker in workers:
        try:
            children = psutil.Process(worker).children()
        except psutil.NoSuchProcess:
            continue
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                pass
    return True
