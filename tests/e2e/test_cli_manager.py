"""The real ``wr`` command's manager verbs and version."""

from __future__ import annotations

import re

import pytest

from wr import __version__

pytestmark = pytest.mark.e2e


def test_version(make_manager) -> None:
    m = make_manager()
    out = m.wr("version", check=True)
    assert out.stdout.strip() == __version__


def test_every_command_has_help(make_manager) -> None:
    m = make_manager()
    for args in (["--help"], ["manager", "--help"], ["manager", "start", "--help"],
                 ["manager", "stop", "--help"], ["manager", "status", "--help"],
                 ["version", "--help"]):
        out = m.wr(*args, check=True)
        assert "Usage: wr" in out.stdout and len(out.stdout.splitlines()) > 3


def test_start_status_stop_cycle(make_manager) -> None:
    """Steps: status before start; start; start again; status; stop; stop again; status.
    Expected: "stopped"; started; an "already running" error; the live status; a clean stop
    that removes the token; an error saying it is not running; "stopped"."""
    m = make_manager()
    assert m.wr("manager", "status", check=True).stdout.strip() == "stopped"
    m.start()
    again = m.wr("manager", "start")
    assert again.returncode == 1
    assert f"is already running (pid {m.pid})" in again.stderr
    status = m.wr("manager", "status", check=True).stdout.splitlines()
    assert status[0] == "started"
    assert status[2] == f"Status website: https://localhost:{m.web_port}/?token={m.token}"
    assert status[3] == "Scheduler: local"
    assert status[4] == f"Version: {__version__}"
    assert re.fullmatch(rf"Host: localhost:{m.port}; PID: {m.pid}", status[5])
    stopped = m.stop()
    assert stopped.returncode == 0
    assert stopped.stderr.strip() == (
        f"info: wr manager running on port {m.port} was gracefully shut down")
    assert not (m.dir / "client.token").exists()
    assert not (m.dir / "pid").exists()
    again = m.stop()
    assert again.returncode == 1 and "does not seem to be running" in again.stderr
    assert m.wr("manager", "status", check=True).stdout.strip() == "stopped"


def test_token_file_is_private_and_token_survives_in_log_never(manager) -> None:
    assert (manager.dir / "client.token").stat().st_mode & 0o777 == 0o600
    assert manager.token not in manager.log()


def test_bad_scheduler_is_refused(make_manager) -> None:
    m = make_manager()
    out = m.wr("manager", "start", "-s", "nonsense")
    assert out.returncode == 2 and "nonsense" in out.stderr
