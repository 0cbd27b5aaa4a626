"""Adding jobs: a POST's jobs stored in one transaction while they are read, then queued.

A big add is read and stored at once: its jobs come in parts (`wr.submission`'s
``paced_job_parts``), each handed to the store's writer (`wr.store_feed`) while the next is
converted, and the queue works out meanwhile where each will go (`Queue.stage`), so that once
they are stored they are queued with a few bulk updates. A part that raises stores nothing
and queues nothing, nor does an add that would close a dependency cycle. The event loop is
given back between slices of all this (`wr.pacing`), so other requests are answered
meanwhile (issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field

from wr.environments import EnvError, Environments
from wr.errors import BadRequest, StorageUnavailable
from wr.jobs import Job
from wr.manager.state import ManagerState, outcome_heard
from wr.pacing import Pacer
from wr.queue import Staged
from wr.store_feed import AddFeed
from wr.submission import PROBLEM

BSUB_IDS = "bsub_ids"
"""The store's counter of LSF job ids (`Queue.bsub_ids`)."""


@dataclass(slots=True)
class Added:
    """What `Manager.add_parts` did with the jobs of one add."""

    jobs: list[Job] = field(default_factory=list)
    """Every input job, in input order."""
    before: set[str] = field(default_factory=set)
    """Keys among the input that were queued before this add."""
    queued: list[Job] = field(default_factory=list)
    """The queue's copy of each input job still queued after it, in input order."""


class Adding(ManagerState):
    """The manager's part that adds jobs."""

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
            stored.add_done_callback(outcome_heard)
            raise
        feed.end()
        try:
            result = await stored
            for name, limit in limits.items():  # only now: a refused add changes nothing
                self.queue.set_limit(name, limit)
            for job in result.resurrected:
                self.queue.revive(job)
            if self.queue.bsub_ids != bsub_ids:  # LSF job ids given: never again (issue 15)
                self.store.set_counter(BSUB_IDS, self.queue.bsub_ids).add_done_callback(
                    outcome_heard)
            if result.resurrected:  # they may close a cycle no check before the store saw
                self._warn_of_cycle([*result.stored, *result.resurrected])
            placed = await self._queue_stored([*result.stored, *result.resurrected], staged,
                                              pacer)
        finally:
            self.queue.forget_pending(pending)  # queued now, or given up
        # The jobs are stored: a limit or rerun write that fails here is kept and retried.
        with contextlib.suppress(StorageUnavailable):
            await self._persist()
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
        check_envs(part, self.environments)  # (before anything is stored: issue 15)
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
        keep_out_of_collections()
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
            self._persist().add_done_callback(outcome_heard)
            keep_out_of_collections()
        placed.update(zip([j.key for j in others],
                          self.queue.add(others, now, prepared=True, staged=staged),
                          strict=True))
        return placed


def check_envs(jobs: list[Job], environments: Environments) -> None:
    """Refuse an add whose jobs name an environment the manager does not hold (a 400, so
    nothing is stored). A request's jobs share their key, so this is one set lookup for
    most parts."""
    last = ""
    for job in jobs:
        key = job.env_key
        if key and key is not last:
            try:
                environments.check(key)
            except EnvError as e:
                raise BadRequest(PROBLEM + str(e)) from None
            last = key


def keep_out_of_collections() -> None:
    """Move what lives now out of the garbage collector's sight (gc.freeze), as the
    manager does after loading its jobs at start (server.py): the jobs of a big add live
    long, and at a million of them each collection of the young generation scanned them
    all, holding the loop for 0.2-0.5 s (issue 13). Reference counting still frees them;
    only a reference cycle that is garbage at this moment is never collected, and a big
    add makes none."""
    gc.freeze()


async def _each(parts: Iterable[list[Job]] | AsyncIterable[list[Job]]
                ) -> AsyncIterator[list[Job]]:
    """The parts of an add, whether they come from a list or are converted as they go."""
    if isinstance(parts, AsyncIterable):
        async for part in parts:
            yield part
    else:
        for part in parts:
            yield part
