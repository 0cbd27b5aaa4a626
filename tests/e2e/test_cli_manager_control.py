"""The real ``wr manager drain|pause|resume|backup`` against a real manager.

Jobs leave marker files under ``tmp_path`` so a test can tell whether (and that) they ran
even after the manager has gone.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.conftest import ManagerHandle, wait_for
from wr.manager.server import pid_alive

pytestmark = pytest.mark.e2e


def _state(m: ManagerHandle, rep_grp: str) -> dict[str, str]:
    with m.client() as client:
        return {j["Cmd"]: j["State"] for j in client.status(rep_grp)}


def _add(m: ManagerHandle, rep_grp: str, *jobs: dict) -> None:
    with m.client() as client:
        client.add(list(jobs), rep_grp=rep_grp)


def test_drain_waits_for_running_jobs_then_stops(make_manager, tmp_path: Path) -> None:
    """Steps: run `sleep 2 && touch a`; `wr manager drain`; add `touch b`; try to pause.
    Expected: drain says one job is still running and should finish within its 1h
    estimate; pause is refused ("server is being drained"); the manager stops by itself
    once `a` exists, `b` never ran, and the token file is gone."""
    m = make_manager()
    m.start()
    a, b = f"sleep 2 && touch {tmp_path}/a", f"touch {tmp_path}/b"
    _add(m, "drain", {"cmd": a, "cpus": 0, "time": "1h"})
    wait_for(lambda: _state(m, "drain").get(a) == "running", 20, 0.05, "job a to run")
    out = m.wr("manager", "drain", check=True)
    assert re.fullmatch(
        rf"info: wr manager running on port {m.port} is now draining; there is a job still "
        r"running, and it should complete in less than 59m\d+s\n", out.stderr), out.stderr
    _add(m, "drain", {"cmd": b, "cpus": 0})
    refused = m.wr("manager", "pause")
    assert (refused.returncode, refused.stderr) == (1, "Error: server is being drained\n")
    wait_for(lambda: not pid_alive(m.pid), 30, 0.05, "the drained manager to stop")
    assert (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
    assert not (m.dir / "client.token").exists()
    assert m.wr("manager", "status", check=True).stdout == "stopped\n"


def test_drain_with_nothing_running_stops_at_once(make_manager) -> None:
    m = make_manager()
    m.start()
    out = m.wr("manager", "drain", check=True)
    assert out.stderr == (f"info: wr manager running on port {m.port} is drained: there were "
                          f"no jobs still running, so the manger should stop right away.\n")
    wait_for(lambda: not pid_alive(m.pid), 20, 0.05, "the drained manager to stop")
    assert not (m.dir / "client.token").exists()
    again = m.wr("manager", "drain")
    assert again.returncode == 1 and again.stderr.startswith("Error: ")


def test_pause_then_resume(make_manager, tmp_path: Path) -> None:
    """Steps: pause an idle manager; add `touch ran`; wait a second; resume; then pause
    while `sleep 100` runs.
    Expected: "is paused"; status says paused; the job stays ready and never runs while
    paused; "has resumed", then it completes; a pause with a running job says so."""
    m = make_manager()
    m.start()
    out = m.wr("manager", "pause", check=True)
    assert out.stderr == (f"info: wr manager running on port {m.port} is paused: there were "
                          f"no jobs still running.\n")
    assert m.wr("manager", "status", check=True).stdout.splitlines()[0] == "paused"
    touch = f"touch {tmp_path}/ran"
    _add(m, "pause", {"cmd": touch, "cpus": 0})
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # nothing may start for as long as we look
        assert _state(m, "pause") == {touch: "ready"}
        time.sleep(0.1)
    assert not (tmp_path / "ran").exists()
    out = m.wr("manager", "resume", check=True)
    assert out.stderr == f"info: wr manager running on port {m.port} has resumed\n"
    wait_for(lambda: _state(m, "pause") == {touch: "complete"}, 20, 0.05, "the job to run")
    assert m.wr("manager", "status", check=True).stdout.splitlines()[0] == "started"

    _add(m, "pause2", {"cmd": "sleep 100", "cpus": 0, "time": "1h"})
    wait_for(lambda: _state(m, "pause2") == {"sleep 100": "running"}, 20, 0.05, "sleep")
    out = m.wr("manager", "pause", check=True)
    assert re.fullmatch(
        rf"info: wr manager running on port {m.port} is now paused; there is a job still "
        r"running, and it should complete in less than 59m\d+s\n", out.stderr), out.stderr
    m.wr("kill", "-i", "pause2", check=True)
    wait_for(lambda: _state(m, "pause2") == {"sleep 100": "buried"}, 20, 0.05, "the kill")
    m.wr("manager", "resume", check=True)


def test_backup_then_restore(make_manager, tmp_path: Path) -> None:
    """Steps: a completed job, two queued (held by a limit of 0); `wr manager backup -p
    FILE`; add one more; stop; put FILE in place of the db (removing db-wal and db-shm);
    start.
    Expected: FILE is private and complete; after the restore the three jobs and the limit
    are back, and the job added after the backup is not."""
    m = make_manager()
    m.start()
    held = [{"cmd": f"true # held {i}", "cpus": 0, "limit_grps": ["hold:0"]} for i in (1, 2)]
    _add(m, "bk", {"cmd": "true # done", "cpus": 0}, *held)
    wait_for(lambda: _state(m, "bk").get("true # done") == "complete", 20, 0.05, "done")
    backup = tmp_path / "wr.db.backup"
    out = m.wr("manager", "backup", "-p", str(backup), check=True)
    assert out.stderr == f"info: wr manager's database was backed up to {backup}\n"
    assert backup.stat().st_mode & 0o777 == 0o600
    assert not Path(f"{backup}.tmp").exists()
    _add(m, "bk", {"cmd": "true # after", "cpus": 0, "limit_grps": ["hold"]})
    assert len(_state(m, "bk")) == 4
    assert m.stop().returncode == 0
    db = m.dir / "db"
    db.write_bytes(backup.read_bytes())
    for extra in ("db-wal", "db-shm"):
        (m.dir / extra).unlink(missing_ok=True)
    m.start()
    assert _state(m, "bk") == {"true # done": "complete", "true # held 1": "ready",
                               "true # held 2": "ready"}
    assert m.wr("limit", check=True).stdout == "hold: 0\n"


def test_backup_bad_input(make_manager, tmp_path: Path) -> None:
    m = make_manager()
    missing = m.wr("manager", "backup")
    assert missing.returncode == 2 and "Missing option '-p' / '--path'" in missing.stderr
    m.start()
    out = m.wr("manager", "backup", "-p", str(tmp_path / "no" / "such" / "dir" / "f"))
    assert out.returncode == 1
    assert out.stderr.startswith("Error: could not write the backup to ")
    assert len(out.stderr.splitlines()) == 1
