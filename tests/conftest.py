"""Fixtures shared by the integration and e2e layers: a real manager in a temporary home.

Each manager gets its own HOME (so ``~/.wr_production`` is private to the test), binds port 0
for both its ports and reports what it got in ``manager.info``, and runs with short timings
(keep-alive, retry delays) so tests finish quickly. Teardown stops it and fails loudly, with
its log, if it left a process behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

FAST_TIMINGS = {
    "WR_TTR": "3",
    "WR_TOUCHINTERVAL": "0.5",
    "WR_RETRYDELAYMIN": "0.2",
    "WR_RETRYDELAYMAX": "1",
    "WR_RUNNERIDLETIMEOUT": "1",
    "WR_BACKUPINTERVAL": "1",
}


def wait_for(condition: Any, timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ManagerHandle:
    """A manager started by a test, and how to talk to it."""

    home: Path
    env: dict[str, str]
    deployment: str = "production"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.home / f".wr_{self.deployment}"

    @property
    def port(self) -> int:
        return int(self.details["port"])

    @property
    def web_port(self) -> int:
        return int(self.details["web_port"])

    @property
    def pid(self) -> int:
        return int(self.details["pid"])

    @property
    def token(self) -> str:
        return (self.dir / "client.token").read_text().strip()

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def url(self) -> str:
        return f"https://localhost:{self.web_port}"

    def log(self) -> str:
        try:
            return (self.dir / "log").read_text(errors="replace")
        except OSError:
            return "(no log)"

    def wr(self, *args: str, input: str | None = None, timeout: float = 120,
           check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the real ``wr`` command against this manager."""
        proc = subprocess.run(
            [sys.executable, "-m", "wr.cli.main", *args], env=self.env, input=input,
            capture_output=True, text=True, timeout=timeout, cwd=str(self.home),
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"wr {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}\nlog:\n{self.log()}")
        return proc

    def start(self, *extra: str) -> subprocess.CompletedProcess[str]:
        proc = self.wr("manager", "start", *extra)
        if proc.returncode != 0:
            raise AssertionError(f"manager failed to start:\n{proc.stderr}\n{self.log()}")
        self.details = orjson.loads((self.dir / "manager.info").read_bytes())
        return proc

    def stop(self) -> subprocess.CompletedProcess[str]:
        return self.wr("manager", "stop")

    def client(self) -> Any:
        from wr.client import Client

        return Client(self.url, self.token, ca_file=self.ca, timeout=60)

    def curl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real curl, trusting this manager's CA, as the seed page does."""
        return subprocess.run(
            ["curl", "-sS", "--cacert", self.ca, *args], capture_output=True, text=True,
            timeout=60, env={**self.env, "https_proxy": ""},
        )

    def ssl_context(self) -> Any:
        from wr.security import client_ssl_context

        return client_ssl_context(self.ca)

    def runner_pids(self, role: str = "wr-runner") -> list[int]:
        """Pids of this manager's runner processes: the workers (``wr-runner``, which run
        the commands and talk to the manager) or their keepers (``wr-keeper``)."""
        import psutil

        found = []
        for proc in psutil.process_iter(["pid", "name", "environ"]):
            try:
                env = proc.info["environ"] or {}
            except (psutil.Error, OSError):
                continue
            if proc.info["name"] == role and env.get("HOME") == str(self.home):
                found.append(proc.pid)
        return found

    def http(self, *, token: bool = True, timeout: Any = 60) -> Any:
        """An httpx client of this manager's REST API, trusting only its CA, sending its
        token unless ``token`` is false (close it, or use it in a ``with``)."""
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        return httpx.Client(base_url=self.url, verify=self.ssl_context(), trust_env=False,
                            headers=headers, timeout=timeout)


def _describe(pids: list[int]) -> str:
    """Who the leftover processes are, for a failure message."""
    import psutil

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out.append(f"{pid} {p.name()} (parent {p.ppid()}): {' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            out.append(f"{pid} (gone)")
    return "\n".join(out)


def _descendants_of_home(home: Path) -> list[int]:
    """Pids of processes still running with this test's HOME (runners, jobs, managers)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "environ"]):
        try:
            env = proc.info["environ"] or {}
        except (psutil.Error, OSError):
            continue
        if env.get("HOME") == str(home) and proc.pid != os.getpid():
            found.append(proc.pid)
    return found


@contextlib.contextmanager
def running_manager(home: Path, *start_args: str, **extra_env: str) -> Iterator[ManagerHandle]:
    """A started manager in ``home`` with the fast timings, stopped afterwards; fails if it
    left a process behind. For module-scoped fixtures (one manager for many tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production", **FAST_TIMINGS)
    env.update(extra_env)
    handle = ManagerHandle(home=home, env=env)
    handle.start(*start_args)
    try:
        yield handle
    finally:
        handle.stop()
        leftovers = _descendants_of_home(home)
        who = _describe(leftovers)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"processes left behind:\n{who}\n{handle.log()}"


@pytest.fixture
def make_manager(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``make_manager(**env)`` gives a ManagerHandle (not yet started)."""
    handles: list[ManagerHandle] = []

    def make(**extra_env: str) -> ManagerHandle:
        home = tmp_path / f"home{len(handles)}"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
        env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
                   WR_DEPLOYMENT="production", **FAST_TIMINGS)
        env.update(extra_env)
        handle = ManagerHandle(home=home, env=env)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        pid_file = handle.dir / "pid"
        if pid_file.exists():
            handle.stop()
        leftovers = _descendants_of_home(handle.home)
        who = _describe(leftovers)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"processes left behind:\n{who}\n{handle.log()}"


@pytest.fixture
def manager(make_manager: Any) -> ManagerHandle:
    """A started manager with the local scheduler."""
    handle = make_manager()
    handle.start()
    return handle


@pytest.fixture
def tag(request: pytest.FixtureRequest) -> str:
    """A name unique to the test, for its rep groups, dep groups and commands."""
    return re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")
