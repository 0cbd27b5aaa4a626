"""What every scheduler does: keep the right number of runners alive for each scheduler group.

The manager never starts a job itself. It groups ready jobs by their resource needs
(*scheduler groups*) and tells the scheduler how many runners each group wants; the scheduler
starts runner processes (a local subprocess, an ``sbatch`` job, ...) that connect back,
reserve jobs of their group one after another, and exit when none is left. Surplus runners
need not be killed: they find nothing to reserve and leave by themselves.

A runner's id is ``<random hex>`` or ``<random hex>@<ref>``, where ``ref`` is the scheduler's
own name for the runner (``slurm:123_4``) handed to it with ``--ref``; ``runner_ref`` takes it
back out, so a scheduler can say what became of the runner of a lost job (``job_gone``).

A new scheduler is one module with a subclass of ``Scheduler``; docs/schedulers.md says how.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass


class ImpossibleError(Exception):
    """The group's requirements can never be met here: its ready jobs are buried, and the
    message (say which limit is in the way) is added to their FailReason."""


@dataclass(frozen=True, slots=True)
class GroupRequirements:
    """What one runner of a scheduler group needs: the most any job of the group needs."""

    ram_mb: int
    time_s: float
    cores: float
    disk_gb: int


@dataclass(frozen=True, slots=True)
class RunnerGone:
    """A scheduler's word that a job no longer runs (its process or its whole runner has
    ended), and why if it knows."""

    reason: str = ""
    """What the scheduler said about the runner's end ("Slurm job 12 ran out of memory: ..."),
    or "" when there is nothing to add to "lost contact with runner"."""
    runner_ended: bool = False
    """The runner itself has ended (its batch job is over), not only the job's process: a
    connection of its that still looks open is a dead one, so the manager need not wait for
    the runner to report (as it does for a runner that is only silent)."""
    out_of_memory_mb: int = 0
    """Set when the runner was killed for using more memory than it had: the most memory
    (MB) its job may have used, as the scheduler measured it (at least the runner's
    allocation). The manager then fails the job as "command used too much RAM", so its
    retry asks for more (issue 13 item 10)."""


def runner_ref(runner_id: str) -> str:
    """The scheduler's name for a runner (``slurm:12``) from its runner id; "" if none."""
    return runner_id.partition("@")[2]


@dataclass(frozen=True, slots=True)
class RunnerCommand:
    """How to start a runner for a group: argv and extra environment."""

    argv: list[str]
    env: dict[str, str]


class Scheduler(abc.ABC):
    """The interface the manager drives. Methods are called on the manager's event loop and
    must not block it."""

    name: str = ""

    def __init__(self) -> None:
        self.warn: Callable[[str], None] = lambda msg: None
        """Set by the manager: report trouble (shown at /rest/v1/warnings/)."""
        self.on_change: Callable[[], None] = lambda: None
        """Set by the manager: call when runners ended, so it recounts and calls ``want``."""
        self.on_runner_killed: Callable[[str], None] = lambda runner_id: None
        """Set by the manager: call with a runner's id when it was killed outright, keeper
        and all (wr.keeper), so that the manager reports what it can for it."""
        self.on_runners_gone: Callable[[dict[str, RunnerGone]], None] = lambda gone: None
        """Set by the manager: call, with a RunnerGone per runner ref (``runner_ref``), as
        soon as runners are known to have ended (a batch job that failed, ran out of memory
        or lost its node), so their jobs are dealt with at once instead of after the
        keep-alive timeout (see wr.manager.deaths)."""

    async def start(self) -> None:
        """Look around before the first ``check`` (a batch system's partitions and limits,
        runners left by an earlier manager). Raise ConfigError if this scheduler cannot work
        here; the manager then refuses to start. The default has nothing to look at."""
        return None

    @abc.abstractmethod
    def check(self, req: GroupRequirements) -> None:
        """Raise ImpossibleError if a runner with these needs could never start here.

        Called for every group with ready jobs on every scheduling pass: no I/O."""

    @abc.abstractmethod
    def want(self, group: str, req: GroupRequirements, count: int, priority: int,
             command: RunnerCommand) -> None:
        """Ensure about ``count`` runners of ``group`` exist (0: start no more).

        ``count`` is the group's ready plus running jobs. Return at once: start (or cancel
        not-yet-started) runners in the background. Running runners are never killed for
        want of work; they find nothing to reserve and exit."""

    @abc.abstractmethod
    def runners(self, group: str | None = None) -> int:
        """How many runners (of one group, or in all) are starting or running."""

    @abc.abstractmethod
    async def process_gone(self, pid: int, host: str) -> bool:
        """True only if the job process ``pid`` on ``host`` certainly no longer exists."""

    async def job_gone(self, pid: int, host: str, runner_id: str) -> RunnerGone | None:
        """Whether a lost job certainly no longer runs: a RunnerGone (with what the scheduler
        knows of its runner's end) if so, None if it may still be running.

        The default asks ``process_gone``; a batch scheduler can also tell from the state of
        the runner's batch job (``runner_ref(runner_id)``) why it ended."""
        return RunnerGone() if await self.process_gone(pid, host) else None

    def standby(self, command: RunnerCommand) -> None:
        """The command runners of any group start with (its ``--group`` is not used),
        given when the manager starts: a scheduler that can keep runners started ahead of
        need (LocalScheduler) does so with it. The default does nothing."""
        return None

    def runner_pids(self) -> set[int]:
        """Pids of the runner processes that are the manager's own children (none for a
        scheduler that starts runners elsewhere)."""
        return set()

    def reap_strays(self) -> list[int]:
        """Reap exited child processes of the manager that are not runners (see
        LocalScheduler); a scheduler whose runners are not the manager's children has
        none."""
        return []

    @abc.abstractmethod
    async def shutdown(self, grace: float) -> None:
        """Start no more runners; after ``grace`` seconds, end any still running."""


def local_process_gone(pid: int, host: str, this_host: str) -> bool:
    """True only if ``pid`` is certainly gone, which can be known only for a process of this
    host (a zombie counts as gone: it will never run again)."""
    if host != this_host or pid <= 0:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
