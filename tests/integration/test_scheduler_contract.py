"""The scheduler contract: what every scheduler does, whatever starts its runners.

``SchedulerContract`` is run once per scheduler by overriding one factory, ``new_scheduler``
(here for the local scheduler; tests/e2e/test_slurm.py runs it on a real Slurm). The
"runner" is a stand-in that records its pid in a directory and sleeps, so the contract is
about the scheduler alone: starting what is wanted and no more, counting, refusing the
impossible, and ending everything on shutdown.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from wr.schedulers.base import GroupRequirements, ImpossibleError, RunnerCommand, Scheduler
from wr.schedulers.local import LocalScheduler

pytestmark = pytest.mark.integration

SMALL = GroupRequirements(ram_mb=100, time_s=1800.0, cores=1, disk_gb=0)

STAND_IN = ("import os, sys, time, pathlib; "
            "'--standby' in sys.argv and not sys.stdin.readline().strip() and sys.exit(); "
            "pathlib.Path(sys.argv[1], str(os.getpid())).touch(); "
            "time.sleep(float(sys.argv[2]))")
"""A runner stand-in: ``python -c STAND_IN <dir> <seconds>`` (extra arguments ignored). With
``--standby`` (a local scheduler's spare) it first waits for its orders on stdin, and exits
unmarked at the end of its input, as wr.runner does."""


def stand_in(marks: Path, seconds: float) -> RunnerCommand:
    marks.mkdir(parents=True, exist_ok=True)
    return RunnerCommand(argv=[sys.executable, "-c", STAND_IN, str(marks), f"{seconds:g}"],
                         env={})


async def until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``condition`` on the loop until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class SchedulerContract:
    """Every scheduler passes these; a subclass says how to make one."""

    async def new_scheduler(self, tmp_path: Path) -> Scheduler:
        raise NotImplementedError

    def run(self, tmp_path: Path,
            scenario: Callable[[Scheduler, Path], Awaitable[None]]) -> None:
        async def main() -> None:
            scheduler = await self.new_scheduler(tmp_path)
            await scheduler.start()
            try:
                await scenario(scheduler, tmp_path / "marks")
            finally:
                await scheduler.shutdown(grace=0)

        asyncio.run(main())

    def test_wanted_runners_start_are_counted_and_end_by_themselves(self, tmp_path) -> None:
        """Steps: want 2 runners that live 2 s. Expected: both start and are counted while
        they run; once they exit nothing is counted and the manager was told (on_change)."""
        async def scenario(s: Scheduler, marks: Path) -> None:
            changes = []
            s.on_change = lambda: changes.append(1)
            s.want("g", SMALL, 2, 0, stand_in(marks, 2))
            await until(lambda: len(list(marks.iterdir())) == 2, what="2 runners")
            assert s.runners("g") == 2 and s.runners() == 2
            await until(lambda: s.runners() == 0, what="the runners to end")
            assert changes
            assert len(list(marks.iterdir())) == 2

        self.run(tmp_path, scenario)

    def test_asking_again_starts_no_more_than_wanted(self, tmp_path) -> None:
        """Steps: want 1 runner twice at once, and once more when one is counted.
        Expected: one runner."""
        async def scenario(s: Scheduler, marks: Path) -> None:
            for _ in range(2):
                s.want("g", SMALL, 1, 0, stand_in(marks, 1))
            await until(lambda: s.runners("g") == 1, what="a runner counted")
            s.want("g", SMALL, 1, 0, stand_in(marks, 1))
            await until(lambda: list(marks.iterdir()), what="a runner")
            await until(lambda: s.runners() == 0, what="the runner to end")
            assert len(list(marks.iterdir())) == 1

        self.run(tmp_path, scenario)

    def test_wanting_none_starts_none(self, tmp_path) -> None:
        async def scenario(s: Scheduler, marks: Path) -> None:
            s.want("g", SMALL, 0, 0, stand_in(marks, 1))
            # No condition to wait for: nothing must happen. Give a runner that was wrongly
            # started time to show up (a stand-in marks itself within a second).
            await asyncio.sleep(1.5)
            assert s.runners() == 0 and not list(marks.iterdir())

        self.run(tmp_path, scenario)

    def test_requirements_that_can_never_be_met_are_impossible(self, tmp_path) -> None:
        async def scenario(s: Scheduler, marks: Path) -> None:
            s.check(SMALL)
            for huge in (GroupRequirements(100_000_000, 1800.0, 1, 0),
                         GroupRequirements(100, 1800.0, 100_000, 0)):
                with pytest.raises(ImpossibleError):
                    s.check(huge)

        self.run(tmp_path, scenario)

    def test_shutdown_ends_runners_that_would_not_end(self, tmp_path) -> None:
        """Steps: want a runner that sleeps 60 s; shut down with no grace. Expected: no
        runner counted and its process gone."""
        async def scenario(s: Scheduler, marks: Path) -> None:
            s.want("g", SMALL, 1, 0, stand_in(marks, 60))
            pid = int((await until(lambda: list(marks.iterdir()), what="a runner"))[0].name)
            await s.shutdown(grace=0)
            assert s.runners() == 0
            await until(lambda: not psutil.pid_exists(pid) or
                        psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                        timeout=15, what="the runner process to end")

        self.run(tmp_path, scenario)


class TestLocalScheduler(SchedulerContract):
    async def new_scheduler(self, tmp_path: Path) -> Scheduler:
        return LocalScheduler(max_cores=2, max_ram=4096)

    def test_spares_become_runners_and_end_with_the_scheduler(self, tmp_path) -> None:
        """Steps: standby (the manager's start); wait for the spares; want one runner;
        shut down. Expected: 2 spares, not counted as runners and marking nothing until
        wanted; the runner wanted is one of them (no new process); after the shutdown
        every spare process is gone, the unused one without ever having run (issue 17)."""
        async def scenario(s: Scheduler, marks: Path) -> None:
            command = stand_in(marks, 60)
            s.standby(command)
            spares = await until(lambda: len(s.runner_pids()) == 2 and s.runner_pids(),
                                 what="2 spares")
            await asyncio.sleep(0.5)
            assert s.runners() == 0 and not list(marks.iterdir())
            s.want("g", SMALL, 1, 0, command)
            mark = await until(lambda: list(marks.iterdir()), what="a runner")
            assert int(mark[0].name) in spares
            assert s.runners("g") == 1 and s.runners() == 1
            await s.shutdown(grace=0)
            await until(lambda: not any(_alive(pid) for pid in spares), timeout=15,
                        what="the spares to end")
            assert len(list(marks.iterdir())) == 1

        self.run(tmp_path, scenario)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
