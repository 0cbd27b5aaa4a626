"""Runners the scheduler says have ended, and what becomes of their jobs.

A batch scheduler often knows of a runner's end before the manager could (issue 16): Slurm
fails a runner job whose node died (NODE_FAIL) while its websocket merely falls silent, and
kills one that used more memory than it had before the runner can say why (issue 13 item
10). Waiting for the keep-alive timeout (``ttr``) and then for the lost-job check took two
minutes on a 3-node cluster; instead the scheduler calls ``on_runners_gone`` with what it
knows (a `RunnerGone` per runner ref) and `RunnerDeaths` ends those runners' jobs as soon as
that is safe:

* A runner is taken for dead only once the manager, too, no longer hears from it: its
  connection has closed, or it has sent nothing for two keep-alive intervals (a connection
  that stays open to a dead node is a dead one). A runner still heard from is left alone
  whatever the scheduler says (it may be cut off from the scheduler only); its verdict is
  kept, so its jobs end as soon as it falls silent.
* Then each job it ran ends as a failed attempt, retried after the usual delay or buried
  when out of attempts: ``command used too much RAM`` with the most memory known (what the
  runner last reported with its keep-alives, what the scheduler measured, at least the
  runner's allocation), so the retry asks for more, as after a memory kill on this
  machine; otherwise ``lost contact with runner: <what the scheduler said>``. Each rerun is
  counted in the job's Attempts and logged with its reason. A job it had reserved but not
  started goes back to ready, uncharged.
* A dead node and a long network partition look alike from here (issue 16): if the runner
  was in fact alive, whatever it reports later about the job is refused, as it no longer
  holds the job, and it is told to kill the command (wr.manager.runner_ws).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wr.jobs import RUN_STATES, FailReason, Job, State
from wr.queue import EndReport, QueueError
from wr.schedulers.base import RunnerGone, runner_ref

if TYPE_CHECKING:
    from wr.manager.core import Manager

log = logging.getLogger("wr.manager")

SILENT_KEEPALIVES = 2
"""Keep-alive intervals without a word after which a connected runner counts as silent."""
MIN_SILENCE_S = 2.0
"""Least seconds without a word for a connected runner to count as silent."""


@dataclass(slots=True)
class _Verdict:
    gone: RunnerGone
    keys: set[str]
    """The jobs the runner held when the verdict came."""


class RunnerDeaths:
    """The scheduler's verdicts on runners, kept until their jobs are dealt with."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.silence = max(SILENT_KEEPALIVES * manager.config.touch_interval, MIN_SILENCE_S)
        """Seconds without a word after which a connected runner counts as silent."""
        self._pending: dict[str, _Verdict] = {}

    def heard(self, gone: Mapping[str, RunnerGone]) -> None:
        """The scheduler says these runners (by ref) have ended: end their jobs now if the
        runners are silent too, else as soon as they are (``settle``)."""
        held: dict[str, set[str]] = defaultdict(set)
        for job in self.manager.queue.jobs.values():
            if job.reserved_by and job.state in RUN_STATES:
                ref = runner_ref(job.reserved_by)
                if ref in gone:
                    held[ref].add(job.key)
        for ref, keys in held.items():
            self._pending[ref] = _Verdict(gone[ref], keys)
        self.settle()

    def settle(self) -> None:
        """End the jobs of each runner with a verdict that has fallen silent. Called as
        verdicts come and on every tick of the manager's clock."""
        if not self._pending:
            return
        manager = self.manager
        queue = manager.queue
        now, clock = time.time(), time.monotonic()
        ended = False
        for ref, verdict in list(self._pending.items()):
            jobs = [job for key in verdict.keys if (job := queue.jobs.get(key)) is not None
                    and job.state in RUN_STATES and runner_ref(job.reserved_by) == ref]
            runners = {job.reserved_by for job in jobs}
            if any(self._heard_from(runner, clock) for runner in runners):
                continue
            del self._pending[ref]
            for runner in runners:
                manager.runner_links.pop(runner, None)  # a connection to a dead runner
            for job in jobs:
                self.end(job, verdict.gone, now)
                ended = True
        if ended:
            manager._persist()  # (deaths is a part of the manager: it may change the queue)

    def _heard_from(self, runner_id: str, clock: float) -> bool:
        link = self.manager.runner_links.get(runner_id)
        return link is not None and clock - link.heard < self.silence

    def end(self, job: Job, gone: RunnerGone, now: float) -> None:
        """End the attempt of ``job``, whose runner is dead, with what the scheduler said
        (the caller persists it with ``Manager._after``)."""
        queue = self.manager.queue
        runner = job.reserved_by
        try:
            if job.state == State.RESERVED:
                queue.release_unstarted(job.key, runner, now)
                log.info("job %s goes back to the queue: its runner %s ended before starting "
                         "it (%s)", job.key, runner, gone.reason or "no reason given")
                return
            report = _report(job, gone, now)
            queue.end(job.key, runner, report, now)
        except QueueError as exc:  # it ended meanwhile: nothing to do
            log.debug("job %s of dead runner %s: %s", job.key, runner, exc)
            return
        log.warning("job %s ended as %r after attempt %d: its runner %s has ended (%s); it "
                    "is now %s", job.key, report.fail_reason, job.attempts, runner,
                    gone.reason or "no reason given", job.state.value)


def _report(job: Job, gone: RunnerGone, now: float) -> EndReport:
    """The end a dead runner would have reported for ``job``, had it lived to."""
    if job.kill_called:
        return EndReport("bury", exitcode=-1, fail_reason=str(FailReason.KILLED), ended=now)
    if gone.out_of_memory_mb:
        return EndReport("release", exitcode=-1, fail_reason=str(FailReason.RAM),
                         peak_ram=max(job.peak_ram, gone.out_of_memory_mb),
                         peak_disk=job.peak_disk, ended=now)
    why = f"{FailReason.LOST}: {gone.reason}" if gone.reason else str(FailReason.LOST)
    return EndReport("release", exitcode=-1, fail_reason=why, ended=now)
