"""What every scheduler does: keep the right number of runners alive for each scheduler group.

The manager never starts a job itself. It groups ready jobs by their resource needs
(*scheduler groups*) and tells the scheduler how many runners each group wants; the scheduler
starts runner processes (a local subprocess, an ``sbatch`` job, ...) that connect back,
reserve jobs of their group one after another, and exit when none is left. Surplus runners
need not be killed: they find nothing to reserve and leave by themselves.

A new scheduler is one module with a subclass of ``Scheduler``; docs/schedulers.md says how.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass


class ImpossibleError(Exception):
    """The group's requirements can never be met here (its jobs are buried)."""


@dataclass(frozen=True, slots=True)
class GroupRequirements:
    """What one runner of a scheduler group needs: the most any job of the group needs."""

    ram_mb: int
    time_s: float
    cores: float
    disk_gb: int


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
        self.on_change: Callable[[], None] = lambda: None

    @abc.abstractmethod
    def check(self, req: GroupRequirements) -> None:
        """Raise ImpossibleError if a runner with these needs could never start here."""

    @abc.abstractmethod
    def want(self, group: str, req: GroupRequirements, count: int, priority: int,
             command: RunnerCommand) -> None:
        """Ensure about ``count`` runners of ``group`` exist (0: start no more)."""

    @abc.abstractmethod
    def runners(self, group: str | None = None) -> int:
        """How many runners (of one group, or in all) are starting or running."""

    @abc.abstractmethod
    async def process_gone(self, pid: int, host: str) -> bool:
        """True only if the job process ``pid`` on ``host`` certainly no longer exists."""

    @abc.abstractmethod
    async def shutdown(self, grace: float) -> None:
        """Start no more runners; after ``grace`` seconds, end any still running."""
