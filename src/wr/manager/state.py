"""What every part of the manager shares: the queue, the store, the scheduler, the runners.

`wr.manager.core.Manager` is put together from a few parts, each a module of its own (adding,
runners, scheduling, clock); this base says what they all read and write, so each can be
read alone. Only the manager changes the queue, and only through its own methods, each of
which returns once the change is stored (`_persist`): handlers ask the manager (issue 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wr.config import Config
    from wr.environments import Environments
    from wr.learning import Learner
    from wr.manager.events import EventHub
    from wr.manager.memory import MemoryTrimmer
    from wr.queue import Queue
    from wr.sched_groups import SchedGroups
    from wr.schedulers.base import Scheduler
    from wr.store import Store

log = logging.getLogger("wr.manager")


@dataclass(slots=True)
class Warning_:
    """A scheduler warning, counted until someone reads it (GET /rest/v1/warnings/)."""

    msg: str
    first: float
    last: float
    count: int = 1


class ManagerState:
    """The state the manager's parts share (set up by `Manager.__init__`)."""

    config: Config
    store: Store
    scheduler: Scheduler
    queue: Queue
    groups: SchedGroups
    learner: Learner
    environments: Environments
    events: EventHub
    trimmer: MemoryTrimmer
    mode: str
    manager_port: int
    runner_links: dict[str, Any]
    _stopping: bool

    def _init_shared(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = defaultdict(list)
        """Runners waiting for a job of their group, woken when one is ready."""
        self._tasks: list[asyncio.Task[Any]] = []
        self.warnings: dict[str, Warning_] = {}
        self.page_warnings: dict[str, Warning_] = {}
        """The web page's copy of the warnings, kept until dismissed there (reading
        GET /rest/v1/warnings/ clears only ``warnings``)."""

    def _persist(self) -> asyncio.Future[Any]:  # (core.Manager)
        raise NotImplementedError

    def _request_schedule(self) -> None:  # (scheduling.Scheduling)
        raise NotImplementedError

    def add_warning(self, msg: str) -> None:  # (core.Manager)
        raise NotImplementedError

    def desk_lag(self, now: float) -> float:  # (runner_batches.RunnerBatches)
        raise NotImplementedError

    def _wake(self, group: str) -> None:
        for fut in self._waiters.pop(group, ()):
            if not fut.done():
                fut.set_result(None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(log_task_failure)


def log_task_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed: %r", task.exception())


def outcome_heard(future: asyncio.Future[Any]) -> None:
    """Nobody awaits this write: take its outcome, so asyncio does not log it as lost (a
    failed write is kept by the store and retried)."""
    if not future.cancelled():
        future.exception()


async def gather(futures: list[asyncio.Future[Any]]) -> None:
    await asyncio.gather(*futures)


async def quietly(coro: Any) -> None:
    with contextlib.suppress(Exception):
        await coro
