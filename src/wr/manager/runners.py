"""The manager's side of its runners: who is connected, what each holds, and every change a
runner reports (reserved, started, kept alive, ended, given back).

Each method that changes a job returns once the change is stored (issue 14): a runner is
told "done" only for what the database holds. A runner reports under a fixed id; the queue
refuses a report for a job that runner no longer holds, so a superseded attempt's late
report never overwrites the newer one. The keeper of a runner that died (wr.keeper) reports
under the dead runner's id; if the keeper died too, the manager reports for it from its
journal (`recover_runner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from wr.errors import StorageUnavailable
from wr.jobs import Job, State
from wr.manager.runner_batches import RunnerBatches
from wr.manager.state import gather
from wr.queue import EndReport, QueueError

log = logging.getLogger("wr.manager")


@dataclass(slots=True, eq=False)
class RunnerLink:
    """A connected runner: how to push messages to it and which jobs it holds."""

    id: str
    group: str
    send: Any  # async callable(dict) -> None
    jobs: set[str] = field(default_factory=set)
    heard: float = field(default_factory=time.monotonic)
    """When it last sent anything (monotonic clock): a runner the scheduler says has ended
    is taken for dead once it is silent too (wr.manager.deaths)."""
    post: Callable[[dict[str, Any]], None] | None = None
    """Sends a message at once, without awaiting (the batched desk answers with it,
    wr.manager.runner_batches); None: answers go through ``send``."""
    closed: bool = False
    """Its connection has closed: requests it left waiting are dropped, not served."""


@dataclass(slots=True)
class Ending:
    """One job's end as a runner reports it: the queue's report, the command's output, and
    the start when it comes with the end (a short job's, or what a keeper reports)."""

    key: str
    report: EndReport
    stdout: str = ""
    stderr: str = ""
    start: dict[str, Any] | None = None

    @classmethod
    def from_wire(cls, end: dict[str, Any]) -> Ending:
        """An end as the runner protocol carries it (wr.manager.runner_ws); KeyError,
        TypeError or ValueError if it is malformed."""
        start = end.get("start")
        return cls(str(end["key"]), EndReport.from_wire(end["report"]),
                   str(end.get("stdout", "")), str(end.get("stderr", "")),
                   start if isinstance(start, dict) else None)


class RunnerDesk(RunnerBatches):
    """The manager's part that serves runners."""

    def connect_runner(self, link: RunnerLink) -> None:
        """A runner connected: a new one, one reconnecting, or the keeper of one that died
        (which reports under its id). It takes over what that id holds."""
        old = self.runner_links.get(link.id)
        if old is not None:
            link.jobs |= old.jobs
        link.jobs |= self._gone_links.pop(link.id, set())
        self.runner_links[link.id] = link
        self.queue.runner_connected(link.id)

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
        self.queue.runner_disconnected(runner_id)
        now = time.time()
        held = {key for key in current.jobs if (job := self.queue.jobs.get(key)) is not None
                and job.reserved_by == runner_id}
        if held:
            self._gone_links[runner_id] = held
        for key in held:
            self.queue.hold_reserved(key, runner_id, now)

    async def runner_bye(self, runner_id: str) -> list[Job]:
        """A runner (or the keeper of a dead one) holds nothing it has not reported: the jobs
        reserved for it go straight back to the queue. Returns them."""
        released = self._bye_now(runner_id)
        await self._persist()
        return released

    def _bye_now(self, runner_id: str) -> list[Job]:
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
        return released

    async def release(self, key: str, runner_id: str) -> bool:
        """A runner gives back a job it reserved and will not start; False if it no longer
        held it (nothing to do)."""
        if not self._release_now(key, runner_id):
            return False
        await self._persist()
        return True

    def _release_now(self, key: str, runner_id: str) -> bool:
        job = self.queue.get(key)
        if job is None or job.reserved_by != runner_id or job.state != State.RESERVED:
            return False
        self.queue.release_unstarted(key, runner_id, time.time())
        link = self.runner_links.get(runner_id)
        if link is not None:
            link.jobs.discard(key)
        return True

    async def take_back(self, runner_id: str, keys: set[str]) -> None:
        """Jobs just reserved for a runner whose answer could not be stored (a full disk):
        they go back to ready before anything else is handed out, so nothing is handed out
        that was not stored (the runner is told to ask again). The write is kept and
        retried by the store if it fails too."""
        self._take_back_now(runner_id, keys)
        with contextlib.suppress(StorageUnavailable):
            await self._persist()

    def _take_back_now(self, runner_id: str, keys: Collection[str]) -> None:
        link = self.runner_links.get(runner_id)
        now = time.time()
        for key in keys:
            if link is not None:
                link.jobs.discard(key)
            job = self.queue.get(key)
            if job is not None and job.state == State.RESERVED and job.reserved_by == runner_id:
                self.queue.release_unstarted(key, runner_id, now)

    def held_by(self, runner_id: str) -> set[str]:
        """The jobs a connected runner holds (reserved or running)."""
        link = self.runner_links.get(runner_id)
        return set(link.jobs) if link is not None else set()

    def _forget_gone_runners(self) -> None:
        """Drop what runners that never came back held once none of it is theirs any more."""
        jobs = self.queue.jobs
        for runner_id, keys in list(self._gone_links.items()):
            if not any((j := jobs.get(k)) is not None and j.reserved_by == runner_id
                       for k in keys):
                del self._gone_links[runner_id]

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
            ends, _ = await asyncio.to_thread(
                settle, state, {}, "its runner was killed with its keeper",
                keep=frozenset(self.scheduler.runner_pids()), reap_rest=False)
        reported = 0
        for end in ends:
            key = str(end.get("key"))
            try:
                await self.ended(runner_id, [Ending.from_wire(end)])
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
                await self._persist()
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
        await self._persist()

    def _started_now(self, runner_id: str, msg: dict[str, Any], now: float) -> None:
        """A ``started`` message of the runner protocol; KeyError, TypeError or ValueError
        if it is malformed, QueueError if the runner does not hold the job."""
        at = msg.get("at")
        self.queue.start(str(msg["key"]), runner_id, pid=int(msg["pid"]), host=str(msg["host"]),
                         host_ip=str(msg.get("ip", "")), now=now,
                         at=None if at is None else float(at))

    def _start_carried(self, key: str, runner_id: str, start: dict[str, Any]) -> None:
        """Take the start an end report carries (a short job's, or one a keeper reports),
        unless the queue has it already: a report sent again (the connection dropped, the
        manager restarted, or its disk was full) finds the job running, or lost, under this
        runner. `ended` then ends the job, and stores both."""
        job = self.queue.get(key)
        if job is None or job.state != State.RESERVED or job.reserved_by != runner_id:
            return  # already started, or not this runner's: the end tells which
        at = start.get("at")
        self.queue.start(key, runner_id, pid=int(start["pid"]), host=str(start["host"]),
                         host_ip=str(start.get("ip", "")), now=time.time(),
                         at=None if at is None else float(at))

    async def touch(self, key: str, runner_id: str, peak_ram: int = 0) -> bool:
        """A keep-alive, with the most memory (MB) the job has used so far if the runner
        says; True if the runner should kill the job instead. Answered at once unless it
        changed the job's state (a lost job running again), which is stored first."""
        kill, stored = self.touch_now(key, runner_id, peak_ram)
        if stored is not None:
            await stored
        return kill

    def touch_now(self, key: str, runner_id: str, peak_ram: int = 0
                  ) -> tuple[bool, asyncio.Future[Any] | None]:
        """`touch` for a caller that cannot wait (the runner channel answers keep-alives as
        it reads them, ahead of every other request, issue 16): whether to kill the job,
        and None, or the future of the store to await before answering if the touch
        changed the job's state (a lost job running again)."""
        kill = self.queue.touch(key, runner_id, time.time(), peak_ram=peak_ram)
        return kill, (self._persist() if self.queue.has_events() else None)

    def heard(self, runner_id: str, keys: Collection[str]) -> None:
        """A runner's report naming these jobs has just been read, and may wait behind
        others before it is served: until then it counts as a keep-alive of the running
        jobs it names (issue 16: a report read in time never finds its job lost because the
        manager was slow to get to it)."""
        jobs, now = self.queue.jobs, time.time()
        for key in keys:
            job = jobs.get(key)
            if job is not None and job.state is State.RUNNING and job.reserved_by == runner_id:
                self.queue.touch(key, runner_id, now)

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

    async def ended(self, runner_id: str, ends: Sequence[Ending], *, group: str = "",
                    reserve: float | None = None, many: int = 1
                    ) -> tuple[list[Job], dict[str, str]]:
        """A runner finished jobs (and, with ``reserve``, wants up to ``many`` more of
        ``group``); an end may carry the job's start too. Returns the jobs now reserved for
        it and the ends the queue refused (key: why); if it refused them all, it raises that
        QueueError instead and nothing is reserved.

        The outcomes and the next reservations are stored in one commit before the runner is
        answered; only if no job is ready at once does it wait (``reserve`` seconds)."""
        now = time.time()
        std: list[tuple[str, str, str]] = []
        refused = self._end_now(runner_id, ends, now, std)
        nxt: list[Job] = []
        if reserve is not None and self.mode == "started":
            nxt = self._reserve_now(group, runner_id, now, many)
        futs = [self._persist()]
        futs.extend(self.store.save_std(key, out, err) for key, out, err in std)
        await gather(futs)
        if not nxt and reserve is not None and reserve > 0:
            nxt = await self.reserve(group, runner_id, reserve, many)
        return nxt, refused

    def _end_now(self, runner_id: str, ends: Sequence[Ending], now: float,
                 std: list[tuple[str, str, str]]) -> dict[str, str]:
        """The queue's part of `ended`: the ends it refused (key: why), or the QueueError
        if it refused them all; the output of failed runs to store goes into ``std``."""
        link = self.runner_links.get(runner_id)
        refused: dict[str, str] = {}
        for end in ends:
            if end.start is not None:
                self._start_carried(end.key, runner_id, end.start)
        for end in ends:
            key, report = end.key, end.report
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
                std.append((job.key, end.stdout, end.stderr))
        if ends and len(refused) == len(ends):
            raise QueueError("; ".join(refused.values()))
        return refused


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
