"""Runners as processes on this machine, packed into its cpus and memory.

Accounting is by *requested* resources, as in wr: a group whose jobs ask for 2 cores and
3 GB takes that much of ``max_cores``/``max_ram`` for each of its runners, whatever they
really use. Groups are visited in priority order, bigger requests first, and a group that
does not fit does not block smaller ones behind it (bin packing). Jobs asking for 0 cores are
allowed up to twice the core count at once, as wr does.

A runner is a Python process that takes 100–300 ms of CPU to start and load its modules,
which was most of the time between adding a job to an idle manager and its start (issue 17).
So the scheduler keeps up to `SPARES` runners started ahead of need (``wr.runner
--standby``: loaded, waiting on stdin for a group to run), and hands a wanted runner's
group to one of them before starting a new process. Spares are not runners until then:
they take no cores or memory in the accounting, and cost some 30 MB each. They are made
when the manager starts and again whenever a runner has exited (so not while a burst of
jobs needs every core), and end when the manager stops (end of their stdin).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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

SPARES = 2
"""Most runners kept started ahead of need (no more than the cores given)."""


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

    def __init__(self, max_cores: int = 0, max_ram: int = 0, spares: int = SPARES) -> None:
        super().__init__()
        cpus = os.cpu_count() or 1
        total_mb = psutil.virtual_memory().total // (1 << 20)
        self.max_cores = max_cores if 0 < max_cores <= cpus else cpus
        self.max_ram = max_ram if 0 < max_ram <= total_mb else total_mb
        self.spares = max(0, min(spares, self.max_cores))
        """How many runners to keep started ahead of need."""
        self._spares: list[asyncio.subprocess.Process] = []
        self._spares_starting = 0
        self._spare_command: RunnerCommand | None = None
        """What spares are started with: a runner's command without its group."""
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
        return {proc.pid for proc in self._all} | {proc.pid for proc in self._spares}

    def standby(self, command: RunnerCommand) -> None:
        """Keep spare runners started with ``command`` (whose group is not used)."""
        template = _without_group(command)
        if template != self._spare_command:
            self._spare_command = template
            for proc in self._spares:  # made with other settings
                _dismiss(proc)
            self._spares.clear()
        self._top_up()

    def _top_up(self) -> None:
        if self._closing or self._spare_command is None:
            return
        self._spares = [p for p in self._spares if p.returncode is None]
        while len(self._spares) + self._spares_starting < self.spares:
            self._spares_starting += 1
            task = asyncio.ensure_future(self._start_spare(self._spare_command))
            task.add_done_callback(_log_failure)

    async def _start_spare(self, command: RunnerCommand) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *command.argv, "--standby", env={**os.environ, **command.env},
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True, close_fds=True,
                cwd="/")
        except OSError as exc:
            self.warn(f"could not start a spare runner: {exc}")
            return
        finally:
            self._spares_starting -= 1
        if self._closing or command != self._spare_command:
            _dismiss(proc)
            return
        self._spares.append(proc)

    def _take_spare(self, command: RunnerCommand, name: str, runner_id: str
                    ) -> asyncio.subprocess.Process | None:
        """A spare started with ``command``'s settings, now told to run ``name`` as
        ``runner_id``; None if there is none."""
        if _without_group(command) != self._spare_command:
            return None
        while self._spares:
            proc = self._spares.pop(0)
            if proc.returncode is not None or proc.stdin is None:
                continue
            orders = json.dumps({"group": name, "id": runner_id}) + "\n"
            try:
                proc.stdin.write(orders.encode())
                proc.stdin.close()
            except (OSError, RuntimeError):
                _dismiss(proc)
                continue
            return proc
        return None

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
        if self._spare_command is None:
            self._spare_command = _without_group(g.command)  # spares from now on
        proc = self._take_spare(g.command, name, runner_id)
        try:
            if proc is None:
                proc = await asyncio.create_subprocess_exec(
                    *g.command.argv, "--id", runner_id, env=env,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL, start_new_session=True, close_fds=True,
                    cwd="/",
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
                # be stale) and calls want(), which starts whatever now fits; then spares
                # are made good (not sooner: while a burst runs they would take its CPU).
                self.on_change()
                self._top_up()

    async def shutdown(self, grace: float) -> None:
        self._closing = True
        spares, self._spares = self._spares, []
        for proc in spares:
            _dismiss(proc)
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
        for proc in spares:  # told to go long ago (end of their stdin)
            try:
                await asyncio.wait_for(proc.wait(), timeout=2)
            except TimeoutError:
                _kill_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), timeout=2)


def _without_group(command: RunnerCommand) -> RunnerCommand:
    """``command`` without its ``--group`` (how spares are started and matched)."""
    argv = list(command.argv)
    if "--group" in argv:
        i = argv.index("--group")
        del argv[i:i + 2]
    return RunnerCommand(argv=argv, env=dict(command.env))


def _dismiss(proc: asyncio.subprocess.Process) -> None:
    """Tell a spare it is not needed: it exits at the end of its stdin."""
    with contextlib.suppress(OSError, RuntimeError, AttributeError):
        proc.stdin.close()


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        import logging

        logging.getLogger("wr.manager").error("runner task failed: %r", task.exception())
