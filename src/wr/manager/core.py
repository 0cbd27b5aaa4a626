"""The manager: the one owner of the queue, and the one door through which it changes.

Everything here runs on one asyncio event loop. Handlers (REST, the web page's actions, the
runner channel) never touch the queue's commands themselves: they call an awaited method
of the `Manager` that runs the queue command, stores what it changed (`_persist`: one group
commit per loop iteration), and returns only then (issue 14). The queue is pure (no I/O,
no clock); the manager gives it the time, persists its events, wakes runners waiting for
work and asks the scheduler for runners.

The manager is put together from parts, one module each: adding jobs (`adding`), serving
runners (`runners`), asking the scheduler for runners (`scheduling`) and keeping time
(`clock`); `state` says what they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from wr.config import Config
from wr.environments import Environments
from wr.jobs import RUN_STATES, Job, State
from wr.learning import DISK, RAM, TIME, Learner
from wr.manager.adding import BSUB_IDS, Added, Adding
from wr.manager.clock import RECOVERY_GRACE, Clock
from wr.manager.deaths import RunnerDeaths
from wr.manager.events import EventHub
from wr.manager.memory import MemoryTrimmer
from wr.manager.runners import RunnerDesk, RunnerLink
from wr.manager.scheduling import Scheduling
from wr.manager.state import Warning_, gather, quietly
from wr.queue import Changed, LimitChanged, Marked, Queue, Replaced
from wr.sched_groups import SchedGroups
from wr.schedulers.base import GroupRequirements, Scheduler
from wr.store import Store
from wr.windows import waiting_for

__all__ = ["Added", "Manager", "RunnerLink", "Warning_"]

log = logging.getLogger("wr.manager")


class _Batch:
    """What one batch of queue events asks for (`Manager._sort_events`): the store's
    writes, the scheduling groups to wake, and the state changes to publish once stored."""

    __slots__ = ("archives", "deletes", "futures", "published", "saves", "woke")

    def __init__(self) -> None:
        self.saves: dict[str, Job] = {}
        self.archives: list[Job] = []
        self.deletes: list[str] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.woke: set[str] = set()
        self.published: list[tuple[str, str, str | None, str, int, str, float]] = []


class Manager(Adding, RunnerDesk, Scheduling, Clock):
    """Owns the queue and everything that must stay consistent with it."""

    def __init__(self, config: Config, *, store: Store, scheduler: Scheduler,
                 manager_port: int = 0, web_port: int = 0) -> None:
        self.config = config
        self.store = store
        self.scheduler = scheduler
        self.manager_port = manager_port
        self.web_port = web_port
        self.host = config.cert_domain
        self.fqdn = socket.getfqdn()
        self.mode = "started"
        self.learner = Learner()
        self.environments = Environments(store)
        """The environments jobs run with, stored by content (issue 15)."""
        self.groups = SchedGroups()
        self.queue = Queue(
            ttr=config.ttr,
            retry_delay_min=config.retry_delay_min,
            retry_delay_max=config.retry_delay_max,
            group_of=self.groups.name_of,
            recommend=self.learner.recommend,
        )
        self._init_shared()
        self.runner_links: dict[str, RunnerLink] = {}
        self._init_batches()
        self._gone_links: dict[str, set[str]] = {}
        """Jobs held by runners whose connection closed, by runner id, until the runner (or
        its keeper, wr.keeper) connects again under that id."""
        self._recovering = asyncio.Lock()
        self.events = EventHub()
        self.trimmer = MemoryTrimmer()
        self._wanted: set[str] = set()
        self._schedule_pending = False
        self._tick_wakeup: asyncio.Event | None = None
        self._tick_at = 0.0
        """When the clock next looks by itself (``_persist`` wakes it if sooner is needed)."""
        self._stopping = False
        self._beat = 0.0
        self.on_drained: Any = lambda: None
        self.watchers: list[Any] = []
        """Callables ``(events, now)`` given each batch of queue events as ``_persist``
        stores it (wr.manager.metrics counts with one); they must be quick and must not
        raise."""
        self.deaths = RunnerDeaths(self)
        scheduler.warn = self.add_warning
        scheduler.on_change = self._request_schedule
        scheduler.on_runner_killed = lambda runner_id: self._spawn(
            self.recover_runner(runner_id))
        scheduler.on_runners_gone = self.deaths.heard

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the store knows and start the clock. The manager makes itself a child
        subreaper: what a local runner killed with its keeper leaves comes to it, so that
        `recover_runner` can still read how those commands ended."""
        from wr.procs import become_subreaper

        become_subreaper()
        self.learner = Learner(await self.store.samples())
        self.queue.recommend = self.learner.recommend
        self.queue.limits.update(await self.store.limits())
        await self.environments.load()
        jobs = await self.store.live_jobs()
        self.queue.bsub_ids = max(await self.store.counter(BSUB_IDS),
                                  max((j.bsub_id for j in jobs), default=0))
        now = time.time()
        jobs.sort(key=lambda j: (j.seq, j.added))
        self.queue.restore(jobs, now, grace=RECOVERY_GRACE)
        # Nothing to store or announce: these jobs came from the store as they are now.
        self.queue.drain()
        if jobs:
            log.info("recovered %d incomplete jobs from the database", len(jobs))
        self._persist()
        self._tick_wakeup = asyncio.Event()
        self._tasks.append(asyncio.ensure_future(self._ticker()))
        self._beat = time.time()
        self._tasks.append(asyncio.ensure_future(self._heartbeat()))
        # Runners started ahead of need, so the first job added starts at once (issue 17).
        self.scheduler.standby(self._runner_command("", GroupRequirements(0, 0.0, 0, 0)))
        self._request_schedule()

    async def shutdown(self, grace: float = 15.0) -> None:
        """Stop gracefully: runners put their jobs back in the queue, then everything ends."""
        self._stopping = True
        self.trimmer.close()
        self.mode = "stopping"
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)
        for link in list(self.runner_links.values()):
            with contextlib.suppress(Exception):
                await link.send({"op": "stop"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.runner_links and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self.scheduler.shutdown(grace=max(0.0, deadline - loop.time()))
        for task in self._tasks:
            task.cancel()
        self.events.close()
        await self._flush()

    async def _flush(self) -> None:
        with contextlib.suppress(Exception):
            await self.store.save([])

    # -- storing what changed -----------------------------------------------------------------

    def _persist(self) -> asyncio.Future[Any]:
        """Store what the last queue commands changed and react to it: a future that
        resolves once it is stored, when (and only when) the change is published to
        watchers. Every method that changes the queue awaits it before it returns: nothing
        is answered that the database does not hold (issue 14)."""
        events = self.queue.drain()
        if not events:
            return self.store.save([])
        now = time.time()
        for watch in self.watchers:
            watch(events, now)
        batch = self._sort_events(events, now)
        futures = self._write(batch)
        self._react(batch.woke)
        done = (asyncio.ensure_future(gather(futures)) if futures
                else self.store.save([]))
        if batch.published:
            published = batch.published

            # Watchers hear of a change only once it is stored, like every other client.
            def tell(f: asyncio.Future[Any]) -> None:
                if not f.cancelled() and f.exception() is None:
                    self.events.publish(published)

            done.add_done_callback(tell)
        return done

    def _sort_events(self, events: list[Changed | LimitChanged | Marked | Replaced],
                     now: float) -> _Batch:
        """What one batch of queue events asks of the store, whom it wakes and what it
        tells watchers. A job's last event wins: one changed twice is saved once, one
        completed or deleted is not saved at all. Limits and re-keyings are handed to the
        store here, in event order, ahead of the saves that may depend on them."""
        batch = _Batch()
        saves, ready = batch.saves, State.READY
        for ev in events:
            if type(ev) is not Changed:
                if isinstance(ev, LimitChanged):
                    batch.futures.append(self.store.set_limit(ev.name, ev.limit))
                    batch.woke.update(self._waiters)
                elif isinstance(ev, Replaced):
                    saves.pop(ev.old_key, None)
                    batch.futures.append(self.store.rekey(ev.old_key, ev.job, ev.old_rep_grp))
                elif isinstance(ev, Marked) and ev.job.key in self.queue.jobs:
                    saves[ev.job.key] = ev.job
                continue
            job, old, new = ev
            ran = job.results
            if old is None and new is ready:  # a new job: a big add makes 100,000 at once
                batch.published.append((job.key, job.rep_grp, None, "ready", ran.exitcode,
                                        ran.fail_reason, now))
                batch.woke.add(job.sched_group)
                continue
            batch.published.append((job.key, job.rep_grp, old and old.value, new.value,
                                    ran.exitcode, ran.fail_reason, now))
            if ev.new == State.COMPLETE:
                saves.pop(job.key, None)
                batch.archives.append(job)
            elif ev.new == State.DELETED:
                saves.pop(job.key, None)
                batch.deletes.append(job.key)
            elif ev.old is not None:
                saves[job.key] = job
            if ev.new == State.READY:
                batch.woke.add(job.sched_group)
            if ev.old in RUN_STATES and ev.new not in RUN_STATES:
                batch.woke.update(job.limit_grps and self._waiters or ())
        return batch

    def _write(self, batch: _Batch) -> list[asyncio.Future[Any]]:
        """Hand the batch's writes to the store (its writer thread commits them together)
        and learn from the jobs that completed."""
        futures = batch.futures
        if batch.saves:
            futures.append(self.store.save(list(batch.saves.values())))
        if batch.archives:
            futures.append(self.store.archive(batch.archives))
            self._learn(batch.archives)
        if batch.deletes:
            futures.append(self.store.delete(batch.deletes))
        return futures

    def _react(self, woke: set[str]) -> None:
        """Wake the runners waiting for work in the groups that gained some, ask the
        scheduler to look again, and wake the clock if it must look sooner than planned."""
        for group in woke:
            self._wake(group)
        if woke:
            self._request_schedule()
        if self._tick_wakeup is not None and (self.mode == "draining" or
                                              self.queue.next_deadline() < self._tick_at):
            # Only when the clock must look sooner than it planned (issue 16: waking it
            # after every batch of a busy manager added a pass of the clock to each batch).
            self._tick_wakeup.set()

    def _learn(self, jobs: list[Job]) -> None:
        for job in jobs:
            if not job.req_grp:
                continue
            self.learner.add(job.req_grp, RAM, job.peak_ram)
            self.learner.add(job.req_grp, DISK, job.peak_disk)
            if job.started is not None and job.ended is not None:
                self.learner.add(job.req_grp, TIME, math.ceil(job.ended - job.started))

    # -- what people change -------------------------------------------------------------------

    async def kill(self, keys: Sequence[str]) -> list[Job]:
        """Kill running (and reserved) jobs: their runners are told at once, and the jobs
        are buried as killed when their runners report. Lost ones are confirmed dead at
        once. Returns the jobs affected."""
        jobs = self.queue.kill(keys, time.time())
        await self._persist()
        for job in jobs:
            link = self.runner_links.get(job.reserved_by)
            if link is not None and job.state in (State.RUNNING, State.RESERVED):
                self._spawn(quietly(link.send({"op": "kill", "key": job.key})))
        return jobs

    async def delete(self, keys: Sequence[str]) -> list[Job]:
        """Remove deletable jobs (spec §4.9: not those other jobs wait for, unless they go
        too). Returns what was removed."""
        deleted = self.queue.delete(keys, time.time())
        await self._persist()
        self.trimmer.note(len(deleted))
        return deleted

    async def kick(self, keys: Sequence[str]) -> list[Job]:
        """Retry buried jobs with all their attempts back. Returns those kicked."""
        kicked = self.queue.kick(keys, time.time())
        await self._persist()
        return kicked

    async def set_limit(self, name: str, limit: int | None) -> int:
        """Set (None: remove) a limit group's count limit; returns it as stored (-1: none).
        A name or limit the store cannot hold is a ValueError (checked by callers)."""
        self.queue.set_limit(name, limit)
        await self._persist()
        return self.queue.limits.get(name, -1)

    async def modify(self, jobs: Sequence[Job], changes: dict[str, Any]) -> dict[str, str]:
        """Replace queued, not running jobs by versions with ``changes`` (``wr mod``,
        checked by `wr.modification.check_changes`). A job whose new key belongs to another
        queued or completed job is skipped; the whole set is refused if it would make jobs
        wait for each other in a cycle (`wr.cycles.DependencyCycle`). ``name:N`` in the new
        limit groups sets the limit, as in an add. Returns {old key: new key}."""
        from wr.modification import modified
        from wr.queue import QueueError

        now = time.time()
        versions = [(job.key, modified(job, changes, now)) for job in jobs]
        new_keys = [new.key for old, new in versions if new.key != old]
        taken = ({j.key for j in await self.store.complete_jobs(new_keys)} if new_keys
                 else set())
        q = self.queue
        limits: dict[str, int | None] = {}
        for _, new in versions:
            q.prepare(new, limits)
        # Checked after the last await, so nothing changes between the check and the changes.
        q.check_replacements({old: new for old, new in versions if new.key not in taken})
        out: dict[str, str] = {}
        for old_key, new in versions:
            current = q.get(old_key)
            if current is None or current.state in RUN_STATES:
                continue
            if new.key != old_key and (new.key in taken or new.key in q.jobs):
                continue
            with contextlib.suppress(QueueError):
                q.replace(old_key, new, time.time())
                out[old_key] = new.key
        if out:
            for name, limit in limits.items():
                q.set_limit(name, limit)
        await self._persist()
        return out

    def pause(self) -> None:
        """Hand out no more jobs; running ones carry on. ``resume`` undoes it."""
        if self.mode == "started":
            self.mode = "paused"

    def resume(self) -> None:
        if self.mode == "paused":
            self.mode = "started"
            self._request_schedule()

    def drain(self) -> None:
        """Hand out no more jobs, and stop the manager once the running ones are done."""
        if self.mode in ("started", "paused"):
            self.mode = "draining"
        self._check_drained()

    def _check_drained(self) -> None:
        if self.mode == "draining" and not any(
                self.queue.counts[s] for s in RUN_STATES):
            self.on_drained()

    # -- information ------------------------------------------------------------------------

    def add_warning(self, msg: str) -> None:
        now = time.time()
        w = self.warnings.get(msg)
        if w is None:
            self.warnings[msg] = Warning_(msg, now, now)
            log.warning("scheduler: %s", msg)
        else:
            w.last = now
            w.count += 1
        shown = self.page_warnings.get(msg)
        if shown is None:
            self.page_warnings[msg] = Warning_(msg, now, now)
        else:
            shown.last = now
            shown.count += 1

    def take_warnings(self) -> list[Warning_]:
        out = list(self.warnings.values())
        self.warnings.clear()
        return out

    def dismiss_warnings(self, msg: str | None = None) -> None:
        """Forget one warning (None: all of them) on the web page."""
        if msg is None:
            self.page_warnings.clear()
        else:
            self.page_warnings.pop(msg, None)

    def run_stats(self) -> dict[str, Any]:
        """Mode, running jobs and the seconds until they should all be done."""
        now = time.time()
        running = [j for j in self.queue.jobs.values() if j.state in RUN_STATES]
        etc = max((j.started + j.time - now for j in running if j.started), default=0.0)
        return {"Mode": self.mode, "Running": len(running), "ETC": max(int(etc), 0)}

    def waiting_for(self, job: Job, now: float) -> str:
        """What keeps a ready job from starting ("" if nothing): a closed time window or a
        full limit group (issue 15: ``wr status`` and the web page say so)."""
        if job.state != State.READY or not job.limit_grps:
            return ""
        q = self.queue
        return waiting_for(job.limit_grps, q.limits, q.limit_counts, now)

    def info(self) -> dict[str, Any]:
        return {
            "Addr": f"{self.host}:{self.manager_port}",
            "Host": self.host,
            "FQDN": self.fqdn,
            "Port": str(self.manager_port),
            "WebPort": str(self.web_port),
            "PID": os.getpid(),
            "Deployment": self.config.deployment,
            "Scheduler": self.scheduler.name,
            "Mode": self.mode,
        }
