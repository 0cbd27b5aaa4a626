"""A runner's journal: what it started and how each command ended, on its own host, written
before the manager is told, so that a runner killed at any moment loses nothing (issue 13).

A runner (wr.runner) appends one line per event to a file of its own, with plain
``os.write`` on an ``O_APPEND`` descriptor: no fsync, because the journal only has to survive
the runner's process, not its machine (the page cache outlives a ``kill -9``). The lines,
each a JSON object with one of these tags:

``{"w": pid, "id": runner_id, "comm": name}``
    the worker process that owns the journal (first line), and the name its commands have
    (wr.procs.shell_link).
``{"s": key, "tok": token, "bt": seconds_since_boot}``
    the runner is about to start job ``key``'s command; ``token`` is its
    ``WR_EXECUTION_ID`` (wr.execute), by which every process of the command can be found;
    ``bt`` is ``CLOCK_BOOTTIME``, the clock the kernel gives process start times in.
``{"p": key, "pid": pid, "at": unix_time, "dir": unique_dir, "base": cwd}``
    the command was spawned: ``pid`` leads its process group and session; ``dir`` is its
    unique working directory ("" when its cwd matters), made under ``base``.
``{"x": key, "code": exit_code, "sig": signal}``
    the command exited (read from the kernel *before* the runner reaps it, so the exit is
    journalled even if the runner dies in the next instant).
``{"c": key, "all": whole}``
    the command is over and the runner is removing its unique directory (``whole``, a
    cleanup behaviour) or only its ``tmp/`` in the background (wr.workdirs.Sweeper); it
    reports the end only once that is done.
``{"e": end}``
    the full end report (with the start, for a short job) as it will be sent to the manager.

The runner empties the file whenever nothing it holds is unreported. If it dies, its keeper
(wr.keeper) reads the journal with `read_journal` and reports for it. A torn last line (the
runner died mid-write) is ignored.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


def journal_dir() -> Path:
    """Where this user's runners keep their journals on this host (made private)."""
    path = Path(tempfile.gettempdir()) / f"wr_runners_{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def command_name(runner_id: str) -> str:
    """The name (``comm``, 15 characters) a runner's commands have (wr.procs.shell_link)."""
    return "wrj" + "".join(c for c in runner_id if c.isalnum())[:12]


def journal_path(runner_id: str) -> Path:
    """The journal of runner ``runner_id`` on this host."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in runner_id)
    return journal_dir() / f"{safe}.journal"


class Journal:
    """The writing end, held by the worker. Every method is one ``write`` system call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def _put(self, record: dict[str, Any]) -> None:
        os.write(self._fd, orjson.dumps(record) + b"\n")

    def worker(self, pid: int, runner_id: str, comm: str = "") -> None:
        self._put({"w": pid, "id": runner_id, "comm": comm})

    def starting(self, key: str, token: str) -> None:
        self._put({"s": key, "tok": token, "bt": time.clock_gettime(time.CLOCK_BOOTTIME)})

    def spawned(self, key: str, pid: int, at: float, unique: str = "", base: str = "") -> None:
        self._put({"p": key, "pid": pid, "at": at, "dir": unique, "base": base})

    def exited(self, key: str, code: int, sig: int) -> None:
        self._put({"x": key, "code": code, "sig": sig})

    def sweeping(self, key: str, whole: bool) -> None:
        self._put({"c": key, "all": whole})

    def ended(self, end: dict[str, Any]) -> None:
        self._put({"e": end})

    def clear(self, worker_pid: int, runner_id: str, comm: str = "") -> None:
        """Forget everything: the manager has stored every end the runner sent."""
        os.ftruncate(self._fd, 0)
        self.worker(worker_pid, runner_id, comm)

    def close(self, *, remove: bool) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


@dataclass(slots=True)
class Started:
    """One command the journal says the runner started (or was about to)."""

    key: str
    token: str
    bt: float = 0.0
    """When the runner was about to start it, in seconds since the machine booted."""
    pid: int = 0
    at: float = 0.0
    unique: str = ""
    """Its unique working directory ("" if none), under ``base``."""
    base: str = ""
    code: int | None = None
    """Its exit code, if it exited by itself (``sig`` 0) or was killed (``sig`` set)."""
    sig: int = 0
    end: dict[str, Any] | None = None
    """The end report the runner made of it, if it got that far."""
    removing: str = ""
    """What of its unique directory the runner was removing when the journal ends: "all",
    "tmp", or "" (nothing)."""


@dataclass(slots=True)
class JournalState:
    """What a journal says, in the order the runner started its commands."""

    worker_pid: int = 0
    runner_id: str = ""
    comm: str = ""
    """The name the kernel gives the runner's commands ("": their shell's)."""
    started: dict[str, Started] = field(default_factory=dict)
    ends: list[dict[str, Any]] = field(default_factory=list)
    """End reports of jobs the journal has no start for (killed before they started)."""


def read_journal(path: Path) -> JournalState:
    """Everything a journal holds; an empty state if there is none."""
    state = JournalState()
    try:
        data = path.read_bytes()
    except OSError:
        return state
    for line in data.split(b"\n"):
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line, or an empty one
        if not isinstance(rec, dict):
            continue
        _apply(state, rec)
    return state


def _apply(state: JournalState, rec: dict[str, Any]) -> None:
    if "w" in rec:
        state.worker_pid = int(rec["w"])
        state.runner_id = str(rec.get("id", ""))
        state.comm = str(rec.get("comm", ""))
    elif "s" in rec:
        key = str(rec["s"])
        state.started.pop(key, None)  # a new attempt of the same key replaces the old
        state.started[key] = Started(key, str(rec.get("tok", "")), float(rec.get("bt", 0.0)))
    elif "p" in rec:
        started = state.started.get(str(rec["p"]))
        if started is not None:
            started.pid = int(rec.get("pid", 0))
            started.at = float(rec.get("at", 0.0))
            started.unique = str(rec.get("dir", ""))
            started.base = str(rec.get("base", ""))
    elif "x" in rec:
        started = state.started.get(str(rec["x"]))
        if started is not None:
            started.code = int(rec.get("code", 0))
            started.sig = int(rec.get("sig", 0))
    elif "c" in rec:
        started = state.started.get(str(rec["c"]))
        if started is not None:
            started.removing = "all" if rec.get("all") else "tmp"
    elif "e" in rec and isinstance(rec["e"], dict):
        end = rec["e"]
        started = state.started.get(str(end.get("key")))
        if started is not None:
            started.end = end
        else:
            state.ends.append(end)
