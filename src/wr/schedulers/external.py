"""Runners started by someone else: the manager only serves the runners that connect.

``wr manager start -s external`` is for sites whose runners come from elsewhere: a user's
own batch jobs, a container platform, a machine wr has no scheduler for, or a load test
(bench/runners_sim.py, issue 16). The manager queues jobs, hands them to whichever runners
connect (``python -m wr.runner --group G --server host:port``), and keeps every other rule
(keep-alives, lost jobs, retries) as with any scheduler; it only never starts a runner. So
that whoever starts them knows what to start, the first time a group wants runners the log
says which group and the exact command line the local scheduler would have used.

Nothing here can be impossible (what the other machines offer is unknown), and a lost job's
process can be confirmed dead only on this machine, as with the local scheduler.
"""

from __future__ import annotations

import logging
import shlex
import socket

from wr.schedulers.base import GroupRequirements, RunnerCommand, Scheduler, local_process_gone

log = logging.getLogger("wr.manager")


class ExternalScheduler(Scheduler):
    """Start nothing; tell the log which groups want runners and how to start them."""

    name = "external"

    def __init__(self) -> None:
        super().__init__()
        self.host = socket.gethostname()
        self.wanted: dict[str, int] = {}
        """Runners each group wants now (its ready plus running jobs), for information."""

    def check(self, req: GroupRequirements) -> None:
        return None  # runners elsewhere may offer anything

    def want(self, group: str, req: GroupRequirements, count: int, priority: int,
             command: RunnerCommand) -> None:
        if count <= 0:
            self.wanted.pop(group, None)
            return
        if group not in self.wanted:
            log.info("scheduler group '%s' wants runners (%d jobs); the external scheduler "
                     "starts none: start them with %s", group, count,
                     shlex.join(command.argv))
        self.wanted[group] = count

    def runners(self, group: str | None = None) -> int:
        return 0  # it starts none; wr_runner_connections counts those that connect

    async def process_gone(self, pid: int, host: str) -> bool:
        return local_process_gone(pid, host, self.host)

    async def shutdown(self, grace: float) -> None:
        self.wanted.clear()  # nothing of ours to end: connected runners are told to stop
