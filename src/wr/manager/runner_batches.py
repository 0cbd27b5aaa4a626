"""Runner requests served in batches, a slice of the event loop at a time (issue 16, part 5).

Every runner request used to be served by an asyncio task of its own, which ran its queue
command, stored it (a `_persist` with writes of its own) and answered. With thousands of
runners that is a task, several futures and separate SQL statements per message, and a loop
that, woken by a commit, answered every waiting runner in one turn before it read a socket
again: keep-alives waited seconds behind that work, and jobs whose runners were touching them
became lost (docs/benchmarks.md, runner capacity).

Here the runner channel (`wr.manager.runner_ws`) answers keep-alives itself, as it reads
them, and hands every other request to the desk's inbox. The desk serves the inbox in turns
of the event loop, each at most `SLICE` seconds of work:

1. answers first: the requests of slices now stored are answered, oldest first (an answer
   lets its runner get on with its jobs);
2. then a slice of requests from the inbox: each one's queue commands run (ends with their
   carried starts, starts, reservations, give-backs), and the whole slice is stored with
   one `_persist`, one group of writes, which the store commits together with whatever
   else is waiting;
3. a request that wants a job when none is ready is parked among its group's waiters until
   one is, or its wait is over, and then reserves again.

Between two turns the loop reads its sockets, so however long the inbox, a keep-alive is
heard within a turn. A report read counts as a keep-alive of the running jobs it names at
once (`RunnerDesk.heard`), and the clock does not count the time the oldest request not yet
answered (served, stored and sent) has been waiting against anyone's keep-alive (`desk_lag`,
`Clock._catch_up`): a runner is never blamed for the manager being behind.

The guarantees are those of the one-request methods (`RunnerDesk.ended` and the others, which
the manager's own recovery of a dead runner and the tests use): nothing is answered before it
is stored, a reservation is stored before the runner hears of it, and a refused report is
answered only once what it conflicts with is stored. If the store fails, the reservations of
the slice go back to the queue and each of its requests is told to ask again (``retry``).
A request from a connection that has closed is dropped unanswered, as a task was cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from wr.errors import StorageUnavailable
from wr.jobs import Job, State
from wr.manager.state import ManagerState, outcome_heard
from wr.queue import QueueError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from wr.manager.runners import Ending, RunnerLink

log = logging.getLogger("wr.manager")

SLICE = 0.005
"""Seconds of work the desk does in one turn of the event loop before the loop reads its
sockets again."""
MAX_MANY = 64
"""Most jobs one runner request may reserve at once."""
WAVE = 32768
"""Most jobs the requests in the inbox are handed between them when each asks for many
(issue 16: 5,000 runners asking for 16 each at once made a wave of 80,000 jobs, answered
over 17-35 s, and runners asking for one waited behind it as long)."""
_COMPACT_AT = 256
"""Waiters of a group after which those already done (timed out) are cleared out."""


class RunnerRequest:
    """One runner request on its way through the desk, and what became of it."""

    __slots__ = ("link", "msg", "op", "arrived", "respond", "want", "many", "deadline",
                 "served", "jobs", "refused", "ends", "released", "error", "retry", "refusal",
                 "timer")

    def __init__(self, link: RunnerLink, msg: dict[str, Any],
                 respond: Callable[[RunnerRequest], None], arrived: float) -> None:
        self.link = link
        self.msg = msg
        self.op = msg.get("op")
        self.arrived = arrived
        """When it was read (Unix seconds)."""
        self.respond = respond
        """Sends its answer (wr.manager.runner_ws): called once, when it is stored."""
        self.want: float | None = None
        """Seconds it may wait for a job; None: it wants none."""
        self.many = 1
        self.deadline = 0.0
        """When its wait for a job is over (the loop's clock)."""
        self.served = False
        """Its report has been applied: if it comes back from waiting, it only reserves."""
        self.jobs: list[Job] = []
        self.refused: dict[str, str] = {}
        self.ends: Sequence[Ending] = ()
        self.released: list[Job] = []
        self.error: str | None = None
        self.retry = False
        self.refusal = False
        """The queue refused its report (answered once what it conflicts with is stored)."""
        self.timer: asyncio.TimerHandle | None = None


class RunnerBatches(ManagerState):
    """The manager's part that serves runner requests in batches."""

    runner_links: dict[str, RunnerLink]

    def _init_batches(self) -> None:
        self._inbox: deque[RunnerRequest] = deque()
        self._outbox: deque[RunnerRequest] = deque()
        self._storing: dict[int, float] = {}
        """Slices applied and on their way to the store, by id: when the oldest request of
        each was read (its runners wait for their answers until it is stored)."""
        self._turn_due = False

    # -- what RunnerDesk provides (one request's queue commands) --------------------------

    def _end_now(self, runner_id: str, ends: Sequence[Ending], now: float,
                 std: list[tuple[str, str, str]]) -> dict[str, str]:
        raise NotImplementedError

    def _started_now(self, runner_id: str, msg: dict[str, Any], now: float) -> None:
        raise NotImplementedError

    def _release_now(self, key: str, runner_id: str) -> bool:
        raise NotImplementedError

    def _bye_now(self, runner_id: str) -> list[Job]:
        raise NotImplementedError

    def _take_back_now(self, runner_id: str, keys: Collection[str]) -> None:
        raise NotImplementedError

    def _reserve_now(self, group: str, runner_id: str, now: float, many: int) -> list[Job]:
        raise NotImplementedError

    # -- the inbox ------------------------------------------------------------------------

    def take_request(self, req: RunnerRequest) -> None:
        """Serve a runner request (``reserve``, ``end``, ``started``, ``release`` or
        ``bye``); ``req.respond`` is called once its changes are stored (or it failed)."""
        self._inbox.append(req)
        self._turn_soon()

    def desk_lag(self, now: float) -> float:
        """Seconds the oldest request not yet answered has waited since it was read (0:
        none waits): in the inbox, on its way to the store, or answered but not yet sent.
        The clock does not count this time against keep-alives: a runner waiting for the
        answer to its ``started`` cannot be blamed for not touching yet (issue 16: with
        5,000 runners reserving 16 jobs each, the store, not the inbox, held the backlog,
        and 1,000 such jobs were marked lost)."""
        oldest = min(self._storing.values(), default=now)
        if self._inbox:
            oldest = min(oldest, self._inbox[0].arrived)
        if self._outbox:
            oldest = min(oldest, self._outbox[0].arrived)
        return max(0.0, now - oldest)

    def _turn_soon(self) -> None:
        if not self._turn_due:
            self._turn_due = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        """One turn of the desk: answers, then a slice of new requests, within `SLICE`."""
        self._turn_due = False
        clock = time.perf_counter
        until = clock() + SLICE
        try:
            out = self._outbox
            while out and clock() < until:
                self._answer(out.popleft())
            if self._inbox and clock() < until:
                self._serve_slice(until)
        finally:
            if self._inbox or self._outbox:
                self._turn_soon()

    # -- serving --------------------------------------------------------------------------

    def _serve_slice(self, until: float) -> None:
        """Apply requests from the inbox until ``until``, and store them together."""
        clock = time.perf_counter
        now, loop_now = time.time(), asyncio.get_running_loop().time()
        inbox, batch = self._inbox, []
        std: list[tuple[str, str, str]] = []
        shares: dict[str, int] | None = None
        while inbox and (not batch or clock() < until):
            req = inbox.popleft()
            if req.link.closed:
                continue  # nobody to answer: as the task of a closed connection was cancelled
            if not req.served and (req.msg.get("many") or 1) != 1 and shares is None:
                shares = Counter(link.group for link in self.runner_links.values())
            self._serve(req, now, loop_now, std, shares)
            batch.append(req)
        if not batch:
            return
        futures = [self._persist()]
        futures.extend(self.store.save_std(key, out, err) for key, out, err in std)
        if any(req.refusal for req in batch):
            # A refused report is answered once what it conflicts with is stored, kept
            # writes of a failed commit included.
            futures.append(self.store.durable())
        stored = asyncio.gather(*futures, return_exceptions=True)
        self._storing[id(batch)] = min(req.arrived for req in batch)
        stored.add_done_callback(functools.partial(self._stored, batch))

    def _serve(self, req: RunnerRequest, now: float, loop_now: float,
               std: list[tuple[str, str, str]], shares: dict[str, int] | None) -> None:
        """Run one request's queue commands; what happened stays on ``req``."""
        runner = req.link.id
        try:
            if not req.served:
                req.served = True
                self._apply(req, now, std)
                if req.error is not None:
                    return
                if req.want is not None:
                    req.deadline = loop_now + max(req.want, 0.0)
                    req.many = self._many(req, shares)
            if req.want is not None and self.mode == "started":
                req.jobs = self._reserve_now(req.link.group, runner, now, req.many)
        except QueueError as exc:
            req.error = str(exc)
            req.refusal = req.op in ("end", "started")
        except (KeyError, TypeError, ValueError) as exc:
            req.error = f"bad request: {exc!r}"
        except Exception as exc:  # tell the runner; it retries its report later
            log.exception("runner request failed")
            req.error = f"internal error: {exc}"

    def _apply(self, req: RunnerRequest, now: float, std: list[tuple[str, str, str]]) -> None:
        from wr.manager.runners import Ending

        msg, runner, op = req.msg, req.link.id, req.op
        if op == "reserve":
            req.want = float(msg.get("timeout", 0))
        elif op == "end":
            wait = msg.get("reserve")
            req.want = None if wait is None else float(wait)
            req.ends = [Ending.from_wire(end) for end in msg.get("ends", [msg])]
            req.refused = self._end_now(runner, req.ends, now, std)
        elif op == "started":
            self._started_now(runner, msg, now)
        elif op == "release":
            self._release_now(str(msg["key"]), runner)
        elif op == "bye":
            req.released = self._bye_now(runner)
        else:
            req.error = f"unknown op {op!r}"

    def _many(self, req: RunnerRequest, shares: dict[str, int] | None) -> int:
        """How many jobs to reserve for a runner that asks for ``many``: at most its fair
        share of its group's ready jobs, so the group's other runners are not left idle,
        and at most its share of a `WAVE` among the requests waiting behind it, so a
        crowd asking at once is answered in seconds, not all in one long wave."""
        many = min(int(req.msg.get("many") or 1), MAX_MANY,
                   max(1, WAVE // (len(self._inbox) + 1)))
        if many <= 1:
            return 1
        group = req.link.group
        runners = shares[group] if shares is not None else 1
        ready = self.queue.ready_by_group[group]
        return max(1, min(many, -(-ready // max(runners, 1))))

    def _stored(self, batch: list[RunnerRequest], stored: asyncio.Future[Any]) -> None:
        """A slice's writes have settled: queue its answers (or, if they could not be
        stored, give back its reservations and tell each runner to ask again)."""
        self._storing.pop(id(batch), None)
        results = [] if stored.cancelled() else stored.result()
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if stored.cancelled() or failure is not None:
            self._not_stored(batch, failure)
        self._outbox.extend(batch)
        self._turn_soon()

    def _not_stored(self, batch: list[RunnerRequest], failure: BaseException | None) -> None:
        if failure is not None and not isinstance(failure, StorageUnavailable):
            log.error("storing a batch of runner requests failed: %r", failure)
        for req in batch:
            if req.jobs:
                # Nothing is handed out that was not stored: back to the queue first.
                self._take_back_now(req.link.id, [job.key for job in req.jobs])
                req.jobs = []
            if req.error is None or req.refusal:
                req.refusal = False
                if isinstance(failure, StorageUnavailable):
                    req.error, req.retry = failure.message, True
                else:
                    req.error = f"internal error: {failure!r}"
        # Kept and retried by the store if it fails too.
        self._persist().add_done_callback(outcome_heard)

    # -- answering ------------------------------------------------------------------------

    def _answer(self, req: RunnerRequest) -> None:
        if req.link.closed:
            return
        if (req.error is None and req.want is not None and not req.jobs
                and self.mode == "started"
                and asyncio.get_running_loop().time() < req.deadline):
            self._park(req)
            return
        if req.refusal and req.op == "started":
            self._repeated_start(req)
        try:
            req.respond(req)
        except Exception:
            log.exception("could not answer runner %s", req.link.id)

    def _repeated_start(self, req: RunnerRequest) -> None:
        """A ``started`` the queue refused is fine if it repeats the start it already took
        (the runner sent it again after a dropped connection)."""
        msg, runner = req.msg, req.link.id
        job = self.queue.get(str(msg.get("key")))
        if (job is not None and job.state == State.RUNNING and job.reserved_by == runner
                and str(job.pid) == str(msg.get("pid"))):
            req.error, req.refusal = None, False
            return
        log.warning("runner %s started job %s, which it no longer held (%s)", runner,
                    msg.get("key"), req.error)

    # -- waiting for a job ----------------------------------------------------------------

    def _park(self, req: RunnerRequest) -> None:
        """Wait among the group's waiters until a job is ready or the wait is over."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters[req.link.group]
        waiters.append(fut)
        if len(waiters) > _COMPACT_AT and waiters[0].done():
            # Those that timed out stay listed until a wake-up clears them: clear them now
            # and then, not one by one (a list removal each).
            waiters[:] = [w for w in waiters if not w.done()]
        req.timer = loop.call_at(req.deadline, _wake_one, fut)
        fut.add_done_callback(functools.partial(self._unpark, req))

    def _unpark(self, req: RunnerRequest, fut: asyncio.Future[None]) -> None:
        if req.timer is not None:
            req.timer.cancel()
            req.timer = None
        if req.link.closed:
            return
        req.arrived = time.time()
        self._inbox.append(req)
        self._turn_soon()


def _wake_one(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
