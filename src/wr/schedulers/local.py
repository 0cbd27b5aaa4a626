"""Runners as processes on this machine, packed into its cpus and memory.

Accounting is by *requested* resources, as in wr: a group whose jobs ask for 2 cores and
3 GB takes that much of ``max_cores``/``max_ram`` for each of its runners, whatever they
really use. Groups are visited in priority order, bigger requests first, and a group that
does not fit does not block smaller ones behind it (bin packing). Jobs asking for 0 cores are
allowed up to twice the core count at once, as wr does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import uuid
from dataclasses import dataclass, field

import psutil

from wr.schedulers.base import (
    GroupRequirements,
    ImpossibleError,
    RunnerCommand,
    Scheduler,
    local_process_gone,
)


@dataclass(slots=True)
class _Group:
    req: GroupRequirements
    count: int
    priority: int
    command: RunnerCommand
    procs: set[asyncio.subprocess.Process] = field(default_factory=set)
    starting: int = 0

    @property
    def size(self) -> int:
        """Runners of this group that exist or are being started."""
        return len(self.procs) + self.starting


class LocalScheduler(Scheduler):
    """Start runner subprocesses within ``max_cores`` and ``max_ram``."""

    name = "local"

    def __init__(self, max_cores: int = 0, max_ram: int = 0) -> None:
        super().__init__()
        cpus = os.cpu_count() or 1
        total_mb = psutil.virtual_memory().total // (1 << 20)
        self.max_cores = max_cores if 0 < max_cores <= cpus else cpus
        self.max_ram = max_ram if 0 < max_ram <= total_mb else total_mb
        self.host = socket.gethostname()
        self._groups: dict[str, _Group] = {}
        self._used_cores = 0.0
        self._used_ram = 0
        self._zero_core = 0
        self._all: set[asyncio.subprocess.Process] = set()
        self._closing = False
        self._processing = False

    def check(self, req: GroupRequirements) -> None:
        if req.ram_mb > self.max_ram:
            raise ImpossibleError(
                f"{req.ram_mb} MB of memory is more than this machine offers ({self.max_ram} MB)")
        if math.ceil(req.cores) > self.max_cores:
            raise ImpossibleError(
                f"{req.cores:g} cores is more than this machine offers ({self.max_cores})")

    def want(self, group: str, req: GroupRequirements, count: int, priority: int,
             command: RunnerCommand) -> None:
        if self._closing:
            return
        g = self._groups.get(group)
        if g is None:
            if count <= 0:
                return
            g = self._groups[group] = _Group(req, count, priority, command)
        else:
            g.count, g.priority, g.command = count, priority, command
            if count <= 0 and not g.size:
                del self._groups[group]
                return
        self._process()

    def runners(self, group: str | None = None) -> int:
        if group is None:
            return len(self._all) + sum(g.starting for g in self._groups.values())
        g = self._groups.get(group)
        return g.size if g else 0

    async def process_gone(self, pid: int, host: str) -> bool:
        return local_process_gone(pid, host, self.host)

    def runner_pids(self) -> set[int]:
        return {proc.pid for proc in self._all}

    def reap_strays(self) -> list[int]:
        """Reap children of the manager that are not runners: it is a child subreaper, so
        what a runner killed with its keeper left behind comes to it (Manager.start)."""
        from wr.procs import reap_zombies

        return reap_zombies(self.runner_pids())

    def _process(self) -> None:
        """Start as many wanted runners as fit, best groups first."""
        if self._processing or self._closing:
            return
        self._processing = True
        try:
            order = sorted(
                self._groups.items(),
                key=lambda kv: (-kv[1].priority, -self._size(kv[1].req)),
            )
            for name, g in order:
                need = g.count - g.size
                while need > 0 and self._fits(g.req):
                    self._spawn(name, g)
                    need -= 1
        finally:
            self._processing = False

    def _size(self, req: GroupRequirements) -> float:
        return max(req.ram_mb / self.max_ram, req.cores / self.max_cores)

    def _fits(self, req: GroupRequirements) -> bool:
        if self._used_ram + req.ram_mb > self.max_ram:
            return False
        if req.cores <= 0:
            return self._zero_core < 2 * self.max_cores
        return self._used_cores + req.cores <= self.max_cores + 1e-9

    def _account(self, req: GroupRequirements, sign: int) -> None:
        self._used_ram += sign * req.ram_mb
        if req.cores <= 0:
            self._zero_core += sign
        else:
            self._used_cores += sign * req.cores

    def _spawn(self, name: str, g: _Group) -> None:
        self._account(g.req, +1)
        g.starting += 1
        task = asyncio.ensure_future(self._run(name, g))
        task.add_done_callback(_log_failure)

    async def _run(self, name: str, g: _Group) -> None:
        env = {**os.environ, **g.command.env}
        runner_id = uuid.uuid4().hex
        proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *g.command.argv, "--id", runner_id, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True, close_fds=True, cwd="/",
            )
        except OSError as exc:
            g.starting -= 1
            self._account(g.req, -1)
            self.warn(f"could not start a runner: {exc}")
            return
        g.starting -= 1
        g.procs.add(proc)
        self._all.add(proc)
        try:
            code = await proc.wait()
            if code not in (0, -signal.SIGTERM, -signal.SIGKILL) and not self._closing:
                self.warn(f"a runner for scheduler group '{name}' exited with code {code}")
            if code == -signal.SIGKILL:
                # Its keeper was killed (with the worker, or alone): see what is left to say.
                self.on_runner_killed(runner_id)
        finally:
            g.procs.discard(proc)
            self._all.discard(proc)
            self._account(g.req, -1)
            if g.count <= 0 and not g.size and self._groups.get(name) is g:
                del self._groups[name]
            if not self._closing:
                # A runner left: the manager recounts what each group wants (our counts may
                # be stale) and calls want(), which starts whatever now fits.
                self.on_change()

    async def shutdown(self, grace: float) -> None:
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._all and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for proc in list(self._all):
            _kill_group(proc.pid, signal.SIGTERM)
        deadline = loop.time() + 3
        while self._all and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for proc in list(self._all):
            _kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(p.wait() for p in list(self._all))), timeout=2)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        import logging

        logging.getLogger("wr.manager").error("runner task failed: %r", task.exception())
