"""The manager's clock: delays that end, runners that fall silent, windows that open.

The queue is pure and takes the time as an argument; this is what gives it the time. It
wakes when the queue's next deadline passes (or once a second), and a heartbeat measures
how long the event loop was held up: time the manager could not listen does not count
against runners (issue 6). Jobs that become lost are checked with the scheduler, which may
know their processes are gone; one whose runner is still connected is never released
(it may just be slow to report), and neither is one restored after a crash within
`RECOVERY_GRACE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from wr.jobs import State
from wr.manager.state import ManagerState
from wr.queue import QueueError

log = logging.getLogger("wr.manager")

RECOVERY_GRACE = 60.0
"""Seconds a job restored as running may stay lost before its gone process counts as dead:
runners retry their connection at least every few seconds, so a live one is back by then."""

BEAT = 0.1
"""Seconds between the heartbeats that measure how long the event loop was held up."""
STALL_SLACK = 0.25
"""Seconds a heartbeat may come late before the delay counts as a stall of the event loop,
which postpones keep-alive deadlines (`Queue.postpone`)."""


class Clock(ManagerState):
    """The manager's part that keeps time."""

    _tick_wakeup: asyncio.Event | None
    _tick_at: float
    _beat: float
    _owed = 0.0
    """Seconds of deadlines the heartbeat found should move on, not moved yet."""

    async def _ticker(self) -> None:
        """Wake when the queue's next deadline passes (or once a second, to re-schedule)."""
        assert self._tick_wakeup is not None
        last_lost_check = time.time()
        while True:
            now = time.time()
            wait = min(max(min(self.queue.next_deadline(), self._check_windows(now)) - now,
                           0.0), 1.0)
            self._tick_at = now + wait
            self._tick_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick_wakeup.wait(), wait)
            now = time.time()
            self._catch_up(now)
            try:
                lost = self.queue.tick(now)
                self._persist()
                if lost:
                    keys = ", ".join(j.key for j in lost[:10]) + (", ..." if len(lost) > 10
                                                                  else "")
                    log.warning("%d running jobs lost contact with their runners: %s",
                                len(lost), keys)
                for job in lost:
                    asyncio.ensure_future(
                        self._check_lost(job.key, job.pid, job.host, job.reserved_by))
                self.deaths.settle()
                if any(n > 0 for n in self.queue.ready_by_group.values()):
                    self._request_schedule()
                self._check_drained()
                if (now - last_lost_check >= max(self.config.ttr, 5.0)
                        and self.queue.counts[State.LOST]):  # no walk of every job for none
                    # A lost job's process may have ended since we last looked.
                    last_lost_check = now
                    self._forget_gone_runners()
                    self.scheduler.reap_strays()
                    for job in list(self.queue.jobs.values()):
                        if job.state == State.LOST:
                            asyncio.ensure_future(
                                self._check_lost(job.key, job.pid, job.host,
                                                 job.reserved_by))
            except Exception:  # the clock must keep going whatever one tick hit
                log.exception("tick failed")

    def _check_windows(self, now: float) -> float:
        """Wake the runners waiting for groups whose time windows just opened, and want
        runners for them; returns when the next closed window opens (issue 15)."""
        opened, next_open = self.queue.window_check(now)
        for group in opened:
            self._wake(group)
        if opened:
            self._request_schedule()
        # A clock change could put the next opening in the past: never spin on it.
        return next_open if next_open > now else now + 1.0

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(BEAT)
            self._catch_up(time.time(), settle=False)

    def _catch_up(self, now: float, *, settle: bool = True) -> None:
        """Postpone keep-alive deadlines by any stretch the manager could not listen, or
        was behind in serving what it heard, so that time does not count against runners
        (issue 6: a slow runner under load is not marked lost):

        * held up by a huge request, its loop read nothing a runner sent: the heartbeat
          notices such a stall when the loop is free again (the clock checks before each
          tick);
        * a runner request read more than `STALL_SLACK` ago is not answered yet (waiting
          to be served, stored or sent; `desk_lag`, issue 16): a runner's report may be
          among them, or a runner may wait for the answer to its start before it touches,
          so the whole time since the last look does not count. Keep-alives themselves
          never wait (they are answered as they are read), nor do the jobs a waiting
          report names (`RunnerDesk.heard`); this covers the rest.

        Moving every deadline costs a pass over the running jobs, so the heartbeat lets
        what it owes build up to a second, and the clock (``settle``) settles it before it
        looks for lost jobs."""
        since = now - self._beat
        gap = since - BEAT
        self._beat = now
        if self.desk_lag(now) > STALL_SLACK:
            self._owed += since
        elif gap > STALL_SLACK:
            self._owed += gap
            if gap >= 1.0:
                log.info("busy for %.1f s without listening; keep-alive deadlines moved on "
                         "as much", gap)
        if self._owed > 0 and (settle or self._owed >= 1.0):
            self.queue.postpone(self._owed)
            self._owed = 0.0

    async def _check_lost(self, key: str, pid: int, host: str, runner_id: str = "") -> None:
        """Release a lost job automatically when its process is certainly gone; what the
        scheduler knows of its runner's end (e.g. Slurm killed it) goes into its FailReason."""
        try:
            said = await self.scheduler.job_gone(pid, host, runner_id)
        except Exception:
            said = None
        gone = said is not None
        job = self.queue.jobs.get(key)
        if (gone and job is not None and job.recovered and job.ended is not None
                and time.time() - job.ended < RECOVERY_GRACE):
            # Restored after a crash: its runner may have finished the job and be about to
            # report it. Confirming it dead now could run it twice.
            return
        if (job is not None and job.reserved_by in self.runner_links
                and not (said is not None and said.runner_ended)):
            # Its runner is still connected, only silent (frozen, starved): the process may
            # have just finished and the runner will report it. Issue 6: never run it twice.
            # (Unless the runner itself is known to have ended, as when Slurm failed its
            # job with its node: its connection is a dead one. Issue 16.)
            return
        if gone and job is not None and job.state == State.LOST and job.pid == pid:
            if said is not None and said.runner_ended:
                self.runner_links.pop(job.reserved_by, None)
            if said is not None and said.out_of_memory_mb:
                self.deaths.end(job, said, time.time())
                self._persist()
                return
            with contextlib.suppress(QueueError):
                self.queue.confirm_dead(key, time.time(),
                                        why=said.reason if said is not None else "")
                self._persist()
