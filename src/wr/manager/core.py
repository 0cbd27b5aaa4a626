"""The manager's shell around the pure queue: persistence, runners, scheduling, time.

Everything here runs on one asyncio event loop. A request (REST or runner message) calls a
queue command, then ``_after()`` drains the queue's events into store writes (one group
commit per loop iteration), wakes runners waiting for work and asks the scheduler for
runners. Whatever a client is told has been committed first: adds and job ends await their
store write before they are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import math
import os
import socket
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wr.config import Config
from wr.errors import StorageUnavailable
from wr.jobs import RUN_STATES, FailReason, Job, State
from wr.learning import DISK, RAM, TIME, Learner
from wr.manager.deaths import RunnerDeaths
from wr.manager.events import EventHub
from wr.manager.memory import MemoryTrimmer
from wr.pacing import Pacer
from wr.queue import Changed, EndReport, LimitChanged, Queue, QueueError, Replaced, Staged
from wr.schedulers.base import GroupRequirements, ImpossibleError, RunnerCommand, Scheduler
from wr.store import Store
from wr.store_feed import AddFeed
from wr.windows import waiting_for

log = logging.getLogger("wr.manager")

RECOVERY_GRACE = 60.0
"""Seconds a job restored as running may stay lost before its gone process counts as dead:
runners retry their connection at least every few seconds, so a live one is back by then."""

BSUB_IDS = "bsub_ids"
"""The store's counter of LSF job ids (`Queue.bsub_ids`)."""

BEAT = 0.1
"""Seconds between the heartbeats that measure how long the event loop was held up."""
STALL_SLACK = 0.25
"""Seconds a heartbeat may come late before the delay counts as a stall of the event loop,
which postpones keep-alive deadlines (`Queue.postpone`)."""


@dataclass(slots=True)
class Added:
    """What `Manager.add_parts` did with the jobs of one add."""

    jobs: list[Job] = field(default_factory=list)
    """Every input job, in input order."""
    before: set[str] = field(default_factory=set)
    """Keys among the input that were queued before this add."""
    queued: list[Job] = field(default_factory=list)
    """The queue's copy of each input job still queued after it, in input order."""


@dataclass(slots=True)
class Warning_:
    """A scheduler warning, counted until someone reads it (GET /rest/v1/warnings/)."""

    msg: str
    first: float
    last: float
    count: int = 1


@dataclass(slots=True)
class RunnerLink:
    """A connected runner: how to push messages to it and which jobs it holds."""

    id: str
    group: str
    send: Any  # async callable(dict) -> None
    jobs: set[str] = field(default_factory=set)
    heard: float = field(default_factory=time.monotonic)
    """When it last sent anything (monotonic clock): a runner the scheduler says has ended
    is taken for dead once it is silent too (wr.manager.deaths)."""


class Manager:
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
        self.queue = Queue(
            ttr=config.ttr,
            retry_delay_min=config.retry_delay_min,
            retry_delay_max=config.retry_delay_max,
            group_of=self._group_of,
            recommend=self.learner.recommend,
        )
        self.runner_links: dict[str, RunnerLink] = {}
        self._gone_links: dict[str, set[str]] = {}
        self._recovering = asyncio.Lock()
        """Jobs held by runners whose connection closed, by runner id, until the runner (or
        its keeper, wr.keeper) connects again under that id."""
        self.queue.connected = self.runner_links.__contains__
        self.warnings: dict[str, Warning_] = {}
        self.page_warnings: dict[str, Warning_] = {}
        """The web page's copy of the warnings, kept until dismissed there (reading
        GET /rest/v1/warnings/ clears only ``warnings``)."""
        self.events = EventHub()
        self.trimmer = MemoryTrimmer()
        self._group_reqs: dict[str, tuple[GroupRequirements, int]] = {}
        self._group_names: dict[tuple[Any, ...], str] = {}
        self._wanted: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = defaultdict(list)
        self._schedule_pending = False
        self._tick_wakeup: asyncio.Event | None = None
        self._tick_at = 0.0
        """When the clock next looks by itself (``_after`` wakes it if sooner is needed)."""
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._beat = 0.0
        self.on_drained: Any = lambda: None
        self.watchers: list[Any] = []
        """Callables ``(events, now)`` given each batch of queue events as ``_after`` persists
        it (wr.manager.metrics counts with one); they must be quick and must not raise."""
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
        self._after()
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

    # -- events -----------------------------------------------------------------------------

    def _after(self) -> asyncio.Future[Any]:
        """Persist what the last queue commands changed and react to it."""
        events = self.queue.drain()
        if not events:
            return self.store.save([])
        saves: dict[str, Job] = {}
        archives: list[Job] = []
        deletes: list[str] = []
        futures: list[asyncio.Future[Any]] = []
        woke: set[str] = set()
        published = []
        now = time.time()
        for watch in self.watchers:
            watch(events, now)
        for ev in events:
            if type(ev) is not Changed:
                if isinstance(ev, LimitChanged):
                    futures.append(self.store.set_limit(ev.name, ev.limit))
                    woke.update(self._waiters)
                elif isinstance(ev, Replaced):
                    saves.pop(ev.old_key, None)
                    futures.append(self.store.rekey(ev.old_key, ev.job, ev.old_rep_grp))
                continue
            job = ev.job
            ran = job.results
            published.append((job.key, job.rep_grp, ev.old and ev.old.value, ev.new.value,
                              ran.exitcode, ran.fail_reason, now))
            if ev.new == State.COMPLETE:
                saves.pop(job.key, None)
                archives.append(job)
            elif ev.new == State.DELETED:
                saves.pop(job.key, None)
                deletes.append(job.key)
            elif ev.old is not None:
                saves[job.key] = job
            if ev.new == State.READY:
                woke.add(job.sched_group)
            if ev.old in RUN_STATES and ev.new not in RUN_STATES:
                woke.update(job.limit_grps and self._waiters or ())
        if saves:
            futures.append(self.store.save(list(saves.values())))
        if archives:
            futures.append(self.store.archive(archives))
            self._learn(archives)
        if deletes:
            futures.append(self.store.delete(deletes))
        for group in woke:
            self._wake(group)
        if woke:
            self._request_schedule()
        if self._tick_wakeup is not None and (self.mode == "draining" or
                                              self.queue.next_deadline() < self._tick_at):
            # Only when the clock must look sooner than it planned (issue 16: waking it
            # after every batch of a busy manager added a pass of the clock to each batch).
            self._tick_wakeup.set()
        done = (asyncio.ensure_future(_gather(futures)) if futures
                else self.store.save([]))
        if published:
            # Watchers hear of a change only once it is stored, like every other client.
            def tell(f: asyncio.Future[Any]) -> None:
                if not f.cancelled() and f.exception() is None:
                    self.events.publish(published)

            done.add_done_callback(tell)
        return done

    def _learn(self, jobs: list[Job]) -> None:
        for job in jobs:
            if not job.req_grp:
                continue
            self.learner.add(job.req_grp, RAM, job.peak_ram)
            self.learner.add(job.req_grp, DISK, job.peak_disk)
            if job.started is not None and job.ended is not None:
                self.learner.add(job.req_grp, TIME, math.ceil(job.ended - job.started))

    def _wake(self, group: str) -> None:
        for fut in self._waiters.pop(group, ()):
            if not fut.done():
                fut.set_result(None)

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

    # -- adding -----------------------------------------------------------------------------

    async def add(self, jobs: list[Job], *, rerun: bool = False) -> list[Job]:
        """Store then queue new jobs; return the queue's copy of each input still queued."""
        return (await self.add_parts([jobs], rerun=rerun)).queued

    async def add_parts(self, parts: Iterable[list[Job]] | AsyncIterable[list[Job]], *,
                        rerun: bool = False, pacer: Pacer | None = None) -> Added:
        """Store then queue new jobs that come in parts (`wr.submission`'s
        ``paced_job_parts`` converts them as they are taken): the store writes each part
        while the next is converted (see `wr.store_feed`). A part that raises stores
        nothing and queues nothing; nor does an add that would close a dependency cycle
        (`wr.cycles.DependencyCycle`, checked once every part is read, issue 13).

        A million jobs take seconds of work here; ``pacer`` gives the event loop back
        between slices of it, so other requests are answered meanwhile (issue 13). The
        add stays one transaction; other writes wait for it."""
        if self._stopping:
            raise StorageUnavailable("the manager is shutting down")
        pacer = pacer if pacer is not None else Pacer()
        added = Added()
        limits: dict[str, int | None] = {}
        bsub_ids = self.queue.bsub_ids
        feed, stored = self.store.add_feed(rerun=rerun)
        staged = Staged()
        pending = None
        try:
            async for part in _each(parts):
                await self._take_part(part, feed, added, limits, staged, pacer)
            # Counted by later checks until queued, so two adds being stored at once
            # cannot each pass and together close a cycle.
            pending = self.queue.check_add(added.jobs)
        except BaseException:
            feed.abort()
            stored.add_done_callback(_outcome_heard)
            raise
        feed.end()
        try:
            result = await stored
            for name, limit in limits.items():  # only now: a refused add changes nothing
                self.queue.set_limit(name, limit)
            for job in result.resurrected:
                _reset_for_rerun(job)
                self.queue.prepare(job)
            if self.queue.bsub_ids != bsub_ids:  # LSF job ids given: never again (issue 15)
                self.store.set_counter(BSUB_IDS, self.queue.bsub_ids).add_done_callback(
                    _outcome_heard)
            if result.resurrected:  # they may close a cycle no check before the store saw
                self._warn_of_cycle([*result.stored, *result.resurrected])
            placed = await self._queue_stored([*result.stored, *result.resurrected], staged,
                                              pacer)
        finally:
            self.queue.forget_pending(pending)  # queued now, or given up
        # The jobs are stored: a limit or rerun write that fails here is kept and retried.
        with contextlib.suppress(StorageUnavailable):
            await self._after()
        self.trimmer.note(len(added.jobs))
        jobs = self.queue.jobs
        async for chunk in pacer.steps(added.jobs):
            added.queued.extend([q for j in chunk
                                 if (q := placed.get(j.key) or jobs.get(j.key)) is not None])
        return added

    def _warn_of_cycle(self, jobs: list[Job]) -> None:
        cycle = self.queue.cycle_among(jobs)
        if cycle is not None:
            self.add_warning(f"an add brought back completed jobs to run after its jobs "
                             f"that joined their dep groups (as wr does), and {cycle}")

    async def _take_part(self, part: list[Job], feed: AddFeed, added: Added,
                         limits: dict[str, int | None], staged: Staged, pacer: Pacer) -> None:
        """One part of an add: its places in line, to the writer, then (while the writer
        writes it) where it will go in the queue."""
        queue = self.queue
        queued: set[str] = set()
        records: list[bytes] = []
        async for chunk in pacer.steps(part):
            for job in chunk:
                queue.prepare(job, limits)
                if job.key in queue.jobs:
                    queued.add(job.key)
            records.extend([job.record_bytes() for job in chunk])
        first = not added.jobs
        added.jobs.extend(part)
        added.before.update(queued)
        feed.put(part, queued, records)
        _keep_out_of_collections()
        if first:
            await asyncio.sleep(0)  # the writer starts on this part now
        async for chunk in pacer.steps(part):
            more = queue.stage(chunk)
            # The first job of a key stays staged, as in one call of stage for them all.
            for key in more.jobs.keys() & staged.jobs.keys():
                del more.jobs[key]
            staged.jobs.update(more.jobs)
            for name, recommendation in more.recommendations.items():
                staged.recommendations.setdefault(name, recommendation)

    async def _queue_stored(self, fresh: list[Job], staged: Staged, pacer: Pacer
                            ) -> dict[str, Job]:
        """Queue the jobs an add stored; the queue's job for each key. Those `Queue.stage`
        worked out (no dependencies either way) go in slices, each slice's events handed
        on at once; the others together, as they may depend on each other."""
        held = staged.jobs
        placed: dict[str, Job] = {}
        others: list[Job] = []
        now = time.time()
        async for chunk in pacer.steps(fresh):
            alone = [j for j in chunk if held.get(j.key) is j]
            if len(alone) < len(chunk):
                others.extend(j for j in chunk if held.get(j.key) is not j)
            placed.update(zip([j.key for j in alone],
                              self.queue.add(alone, now, prepared=True, staged=staged),
                              strict=True))
            self._after().add_done_callback(_outcome_heard)
            _keep_out_of_collections()
        placed.update(zip([j.key for j in others],
                          self.queue.add(others, now, prepared=True, staged=staged),
                          strict=True))
        return placed

    # -- scheduling -------------------------------------------------------------------------

    def _group_of(self, job: Job) -> str:
        """wr's scheduler group: jobs that can share a runner (spec cli §5.2)."""
        if job.other:
            return self._make_group(job)
        # Jobs come in their thousands with the same requirements: name each set once.
        given = (job.ram, job.time, job.cores, job.disk, tuple(job.limit_grps))
        name = self._group_names.get(given)
        if name is None:
            if len(self._group_names) >= 10_000:
                self._group_names.clear()
            name = self._group_names[given] = self._make_group(job)
        return name

    def _make_group(self, job: Job) -> str:
        minutes = max(30, math.ceil(job.time / 1800) * 30)
        cores = f"{job.cores:g}"
        name = f"{job.ram}:{minutes}:{cores}:{job.disk}"
        if job.other:
            text = "".join(f":{k}={job.other[k]}" for k in sorted(job.other))
            name += ":" + hashlib.md5(text.encode()).hexdigest()
        if job.limit_grps:
            name += "~" + ",".join(job.limit_grps)
        if name not in self._group_reqs:
            req = GroupRequirements(job.ram, minutes * 60.0, job.cores, job.disk)
            self._group_reqs[name] = (req, job.priority)
        return name

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
                req, prio = self._group_reqs[group]
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
            req, prio = self._group_reqs[group]
            self.scheduler.want(group, req, 0, prio, self._runner_command(group, req))
        self._wanted = wanted
        if impossible:
            for group, why in impossible.items():
                for job in q.bury_impossible(group, time.time()):
                    job.fail_reason = f"{FailReason.IMPOSSIBLE}: {why}"
            self._after()

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

    def _runner_command(self, group: str, req: GroupRequirements) -> RunnerCommand:
        cfg = self.config
        argv = [
            sys.executable, "-m", "wr.runner",
            "--group", group,
            "--server", f"{self._runner_host()}:{self.manager_port}",
            "--domain", cfg.cert_domain,
            "--idle", f"{cfg.runner_idle_timeout:g}",
            "--touch", f"{cfg.touch_interval:g}",
        ]
        env = cfg.as_environ()
        return RunnerCommand(argv=argv, env=env)

    # -- runners ----------------------------------------------------------------------------

    def connect_runner(self, link: RunnerLink) -> None:
        """A runner connected: a new one, one reconnecting, or the keeper of one that died
        (which reports under its id). It takes over what that id holds."""
        old = self.runner_links.get(link.id)
        if old is not None:
            link.jobs |= old.jobs
        link.jobs |= self._gone_links.pop(link.id, set())
        self.runner_links[link.id] = link

    def disconnect_runner(self, runner_id: str, link: RunnerLink | None = None) -> None:
        """A runner's connection closed. Everything it holds stays its own for now: a runner
        may just be reconnecting, and one that reports a short job's start together with its
        end (wr.runner) may have started a job it still calls reserved, so handing that job
        to another runner could run it twice. A reconnected runner reports what it ran and
        gives back what it did not; so does the keeper of a runner that died (``bye``); if
        neither comes, its reserved jobs go back to the queue ``ttr`` seconds from now and its
        running ones become lost after ``ttr`` seconds without a keep-alive.

        ``link``: the connection that closed; if a newer connection of the same runner has
        replaced it meanwhile, that one keeps everything."""
        current = self.runner_links.get(runner_id)
        if current is None or (link is not None and current is not link):
            return
        del self.runner_links[runner_id]
        now = time.time()
        held = {key for key in current.jobs if (job := self.queue.jobs.get(key)) is not None
                and job.reserved_by == runner_id}
        if held:
            self._gone_links[runner_id] = held
        for key in held:
            self.queue.hold_reserved(key, runner_id, now)

    async def recover_runner(self, runner_id: str) -> int:
        """Report for a runner of this host whose keeper was killed too (``kill -9`` of the
        whole runner), from its journal (wr.journal): ends it made, exits it journalled, and
        commands it left running, which are killed here. If its worker lives on (only the
        keeper died), this waits for the worker to end. Returns how many jobs were
        reported."""
        from wr.journal import journal_path, read_journal
        from wr.keeper import settle

        path = journal_path(runner_id)
        state = read_journal(path)
        while state.worker_pid and _is_worker(state.worker_pid):
            # Only its keeper died (or the worker is still dying): the worker finishes what
            # it holds and leaves; its journal then says whether it did so cleanly.
            await asyncio.sleep(0.2)
            state = read_journal(path)
        async with self._recovering:  # one at a time: each looks at every exited child
            ends = await asyncio.to_thread(
                settle, state, {}, "its runner was killed with its keeper",
                keep=frozenset(self.scheduler.runner_pids()), reap_rest=False)
        reported = 0
        for end in ends:
            key = str(end["key"])
            try:
                if end.get("start") is not None:
                    self.start_carried(key, runner_id, end["start"])
                report = EndReport.from_wire(end["report"])
                await self.ended(runner_id, [(key, report, str(end.get("stdout", "")),
                                              str(end.get("stderr", "")))])
                reported += 1
            except (QueueError, KeyError, TypeError, ValueError) as exc:
                log.info("job %s of killed runner %s: %s", key, runner_id, exc)
        await self.runner_bye(runner_id)
        if ends:
            log.warning("runner %s was killed with its keeper; the manager reported for it "
                        "from its journal: %s", runner_id,
                        "; ".join(_said(e) for e in ends))
        from wr.keeper import forget_journal

        forget_journal(path)
        return reported

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(_log_task_failure)

    def _forget_gone_runners(self) -> None:
        """Drop what runners that never came back held once none of it is theirs any more."""
        jobs = self.queue.jobs
        for runner_id, keys in list(self._gone_links.items()):
            if not any((j := jobs.get(k)) is not None and j.reserved_by == runner_id
                       for k in keys):
                del self._gone_links[runner_id]

    async def runner_bye(self, runner_id: str) -> list[Job]:
        """A runner (or the keeper of a dead one) holds nothing it has not reported: the jobs
        reserved for it go straight back to the queue. Returns them."""
        link = self.runner_links.get(runner_id)
        keys = set(link.jobs) if link is not None else set()
        keys |= self._gone_links.pop(runner_id, set())
        now = time.time()
        released = []
        for key in keys:
            job = self.queue.jobs.get(key)
            if job is not None and job.state == State.RESERVED and job.reserved_by == runner_id:
                released.append(self.queue.release_unstarted(key, runner_id, now))
        if link is not None:
            link.jobs.clear()
        await self._after()
        return released

    async def reserve(self, group: str, runner_id: str, timeout: float, many: int = 1
                      ) -> list[Job]:
        """Up to ``many`` of the best ready jobs of ``group``, waiting up to ``timeout``
        seconds for the first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.mode != "started":
                return []
            jobs = self._reserve_now(group, runner_id, time.time(), many)
            if jobs:
                # Stored before the runner hears of them: after a crash they are known to
                # be this runner's, so none can ever be handed to a second runner.
                await self._after()
                return jobs
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters[group].append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(group)
                if waiters and fut in waiters:
                    waiters.remove(fut)

    async def started(self, key: str, runner_id: str, *, pid: int, host: str,
                      host_ip: str, at: float | None = None) -> None:
        self.queue.start(key, runner_id, pid=pid, host=host, host_ip=host_ip, now=time.time(),
                         at=at)
        await self._after()

    def start_carried(self, key: str, runner_id: str, start: dict[str, Any]) -> None:
        """Take the start an end report carries (a short job's, or one a keeper reports),
        unless the queue has it already: a report sent again (the connection dropped, the
        manager restarted, or its disk was full) finds the job running, or lost, under this
        runner. The caller then ends the job, which commits both."""
        job = self.queue.get(key)
        if job is None or job.state != State.RESERVED or job.reserved_by != runner_id:
            return  # already started, or not this runner's: the end tells which
        at = start.get("at")
        self.queue.start(key, runner_id, pid=int(start["pid"]), host=str(start["host"]),
                         host_ip=str(start.get("ip", "")), now=time.time(),
                         at=None if at is None else float(at))

    def touch(self, key: str, runner_id: str, peak_ram: int = 0) -> bool:
        """A keep-alive, with the most memory (MB) the job has used so far if the runner
        says; True if the runner should kill the job instead."""
        kill = self.queue.touch(key, runner_id, time.time(), peak_ram=peak_ram)
        self._after()
        return kill

    def _reserve_now(self, group: str, runner_id: str, now: float, many: int) -> list[Job]:
        link = self.runner_links.get(runner_id)
        jobs: list[Job] = []
        while len(jobs) < many:
            job = self.queue.reserve(group, runner_id, now)
            if job is None:
                break
            jobs.append(job)
            if link is not None:
                link.jobs.add(job.key)
        return jobs

    async def ended(self, runner_id: str, ends: Sequence[tuple[str, EndReport, str, str]], *,
                    group: str = "", reserve: float | None = None, many: int = 1
                    ) -> tuple[list[Job], dict[str, str]]:
        """A runner finished jobs (and, with ``reserve``, wants up to ``many`` more of
        ``group``): ``ends`` holds (key, report, stdout, stderr) for each. Returns the jobs
        now reserved for it and the ends the queue refused (key: why); if it refused them
        all, it raises that QueueError instead and nothing is reserved.

        The outcomes and the next reservations are stored in one commit before the runner is
        answered; only if no job is ready at once does it wait (``reserve`` seconds)."""
        now = time.time()
        link = self.runner_links.get(runner_id)
        refused: dict[str, str] = {}
        std: list[tuple[str, str, str]] = []
        for key, report, stdout, stderr in ends:
            try:
                job = self.queue.end(key, runner_id, report, now)
            except QueueError as exc:
                if len(ends) == 1:
                    raise
                refused[key] = str(exc)
                continue
            if link is not None:
                link.jobs.discard(key)
            if report.outcome in ("release", "bury") or report.exitcode != 0:
                std.append((job.key, stdout, stderr))
        if ends and len(refused) == len(ends):
            raise QueueError("; ".join(refused.values()))
        nxt: list[Job] = []
        if reserve is not None and self.mode == "started":
            nxt = self._reserve_now(group, runner_id, now, many)
        futs = [self._after()]
        futs.extend(self.store.save_std(key, out, err) for key, out, err in std)
        await _gather(futs)
        if not nxt and reserve is not None and reserve > 0:
            nxt = await self.reserve(group, runner_id, reserve, many)
        return nxt, refused

    # -- user actions -----------------------------------------------------------------------

    def kill(self, keys: Sequence[str]) -> list[Job]:
        jobs = self.queue.kill(keys, time.time())
        for job in jobs:
            link = self.runner_links.get(job.reserved_by)
            if link is not None and job.state in (State.RUNNING, State.RESERVED):
                asyncio.ensure_future(_quietly(link.send({"op": "kill", "key": job.key})))
        return jobs

    def delete(self, keys: Sequence[str]) -> list[Job]:
        deleted = self.queue.delete(keys, time.time())
        self.trimmer.note(len(deleted))
        return deleted

    def kick(self, keys: Sequence[str]) -> list[Job]:
        return self.queue.kick(keys, time.time())

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

    # -- the clock --------------------------------------------------------------------------

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
                self._after()
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
            self._catch_up(time.time())

    def _catch_up(self, now: float) -> None:
        """Postpone keep-alive deadlines by any stretch the loop could not listen: held up
        by a huge request, nothing a runner sent could be heard, so that time does not count
        against it (issue 6: a slow runner under load is not marked lost). The heartbeat
        notices a stall when the loop is free again; the clock checks before each tick."""
        gap = now - self._beat - BEAT
        self._beat = now
        if gap > STALL_SLACK:
            if gap >= 1.0:
                log.info("busy for %.1f s without listening; keep-alive deadlines moved on "
                         "as much", gap)
            self.queue.postpone(gap)

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
                self._after()
                return
            with contextlib.suppress(QueueError):
                self.queue.confirm_dead(key, time.time())
                if said is not None and said.reason:
                    job.fail_reason = f"{FailReason.LOST}: {said.reason}"
                self._after()

    # -- information ------------------------------------------------------------------------

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


def _reset_for_rerun(job: Job) -> None:
    """A completed job brought back by a live dependency runs afresh."""
    job.state = State.READY
    job.until_buried = job.retries + 1
    job.exited = False
    job.exitcode = 0
    job.fail_reason = ""
    job.pid = 0
    job.started = None
    job.ended = None
    job.reserved_by = ""
    job.seq = 0


def _said(end: dict[str, Any]) -> str:
    """One job of a recovery, for the log: its key, outcome and, if not a success, why."""
    outcome = end["report"].get("outcome")
    if outcome == "archive":
        return f"{end['key']} (archive)"
    return f"{end['key']} ({outcome}: {end.get('stderr', '')})"


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is a live runner's worker (wr.keeper names it)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.name() == "wr-runner" and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed: %r", task.exception())


def _keep_out_of_collections() -> None:
    """Move what lives now out of the garbage collector's sight (gc.freeze), as the
    manager does after loading its jobs at start (server.py): the jobs of a big add live
    long, and at a million of them each collection of the young generation scanned them
    all, holding the loop for 0.2-0.5 s (issue 13). Reference counting still frees them;
    only a reference cycle that is garbage at this moment is never collected, and a big
    add makes none."""
    gc.freeze()


def _outcome_heard(future: asyncio.Future[Any]) -> None:
    """For a future nobody awaits (an aborted add's write; the events of a big add's
    slices, handed on before its last, awaited, ones): take its error, so asyncio does not
    log it as lost."""
    if not future.cancelled():
        future.exception()


async def _each(parts: Iterable[list[Job]] | AsyncIterable[list[Job]]
                ) -> AsyncIterator[list[Job]]:
    """The parts of an add, whether they come from a list or are converted as they go."""
    if isinstance(parts, AsyncIterable):
        async for part in parts:
            yield part
    else:
        for part in parts:
            yield part


async def _gather(futures: list[asyncio.Future[Any]]) -> None:
    await asyncio.gather(*futures)


async def _quietly(coro: Any) -> None:
    with contextlib.suppress(Exception):
        await coro
