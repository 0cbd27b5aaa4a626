"""Asking the scheduler for runners: how many each scheduler group wants, and how to start one.

A scheduler only decides how many runner processes each scheduler group gets
(`wr.sched_groups`); runners then pull jobs. After any change that makes jobs ready or frees
a limit, the manager recounts on the next turn of the loop (`_request_schedule`): each
group wants as many runners as it has ready and running jobs, unless its limits are full or
its time windows closed. A group the scheduler can never run has its ready jobs buried with
the reason.
"""

from __future__ import annotations

import asyncio
import sys
import time

from wr.manager.state import ManagerState
from wr.schedulers.base import GroupRequirements, ImpossibleError, RunnerCommand


class Scheduling(ManagerState):
    """The manager's part that asks for runners."""

    _schedule_pending: bool
    _wanted: set[str]

    def _request_schedule(self) -> None:
        if self._schedule_pending or self._stopping:
            return
        self._schedule_pending = True
        asyncio.get_running_loop().call_soon(self._schedule)

    def _schedule(self) -> None:
        """Tell the scheduler how many runners each group wants: ready + running jobs."""
        self._schedule_pending = False
        if self._stopping:
            return
        q = self.queue
        groups = {g for g, n in q.ready_by_group.items() if n > 0}
        impossible: dict[str, str] = {}
        wanted: set[str] = set()
        if self.mode == "started":
            for group in groups:
                req, prio = self.groups.requirements(group)
                try:
                    self.scheduler.check(req)
                except ImpossibleError as exc:
                    impossible[group] = str(exc)
                    self.add_warning(str(exc))
                    continue
                count = q.ready_by_group[group] + q.run_by_group[group]
                if not self._limits_allow_group(group):
                    continue
                self.scheduler.want(group, req, count, prio, self._runner_command(group, req))
                wanted.add(group)
        for group in self._wanted - wanted:
            req, prio = self.groups.requirements(group)
            self.scheduler.want(group, req, 0, prio, self._runner_command(group, req))
        self._wanted = wanted
        if impossible:
            for group, why in impossible.items():
                q.bury_impossible(group, time.time(), why)
            self._persist()

    def _limits_allow_group(self, group: str) -> bool:
        _, _, limits = group.partition("~")
        if not limits:
            return True
        # Count limits with room, and time windows open now (issue 15): else no runners.
        return self.queue.limits_allow(limits.split(","), time.time())

    def _runner_host(self) -> str:
        """Where runners find the manager: loopback for a manager that only listens there
        (managerhost localhost), else the configured host, for runners on other nodes."""
        host = self.config.manager_host
        return "127.0.0.1" if host in ("localhost", "127.0.0.1") else host

    def _idle_of(self, group: str) -> float:
        """How long a runner of ``group`` waits for another job: its jobs'
        ``reserve_timeout``, else the ``runneridletimeout`` setting (issue 15, part 6)."""
        idle = self.groups.idle_of(group) if group else None
        return self.config.runner_idle_timeout if idle is None else idle

    def _runner_command(self, group: str, req: GroupRequirements) -> RunnerCommand:
        cfg = self.config
        argv = [
            sys.executable, "-m", "wr.runner",
            "--group", group,
            "--server", f"{self._runner_host()}:{self.manager_port}",
            "--domain", cfg.cert_domain,
            "--idle", f"{self._idle_of(group):g}",
            "--touch", f"{cfg.touch_interval:g}",
        ]
        env = cfg.as_environ()
        return RunnerCommand(argv=argv, env=env)
