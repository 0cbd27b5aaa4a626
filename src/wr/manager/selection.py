"""Which jobs a request names: the one place ids, ``search`` and ``state`` are read.

REST (``GET``/``DELETE /rest/v1/jobs/``), the summaries (counts, summary, details), the web
page and the management actions all select jobs the same way (issue 14): no ids means every
incomplete job; an id of 32 characters that is a job's key (queued, or in the history) is
that job; any other id is a rep group, or with ``search`` every rep group whose name
contains it. A rep group's jobs are its queued ones and, unless the state asked for rules
them out (or the caller wants queued jobs only), its completed ones in the history, which
callers read as they need them: as jobs (`history_of`), or as figures over SQL aggregates
(the summaries), so that a rep group of 100,000 completed jobs is never loaded to be
counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from wr.jobs import Job
from wr.pacing import Pacer
from wr.queue import Queue
from wr.status import matches_state
from wr.store import Store


@dataclass(slots=True)
class Picked:
    """One part of a selection."""

    name: str | None
    """The rep group these jobs were selected as, or None for jobs named by key (or for
    every job, when no ids were given)."""
    jobs: list[Job] = field(default_factory=list)
    """The queued jobs picked (filtered by state), or the jobs named by key."""
    history: bool = False
    """Whether the rep group's completed jobs belong to the selection too (not in
    ``jobs``: the caller reads them from the store, leaving out ``queued``)."""
    queued: frozenset[str] = frozenset()
    """The keys of the rep group's queued jobs, whatever their state: none of them is
    taken from the history."""


async def select_jobs(queue: Queue, store: Store, ids: Sequence[str] | None, *,
                      search: bool = False, state: str = "", history: bool = True,
                      keys: bool = True, pacer: Pacer | None = None) -> list[Picked]:
    """The jobs ``ids`` name (see the module docstring), filtered by ``state`` (a state
    filter as `wr.status.parse_state_filter` gives it; "" for any). ``history``: False to
    pick queued jobs only (the actions, which change queued jobs). ``keys``: False when the
    ids are rep group names only (the web page's). Long filtering gives the event loop back
    through ``pacer`` (issue 13)."""
    if ids is None:
        # A snapshot first (a C-speed copy), filtered a slice at a time: with a million
        # jobs queued the filtering alone held the loop.
        jobs = list(queue.jobs.values())
        if state:
            pacer = pacer if pacer is not None else Pacer()
            everything, jobs = jobs, []
            async for chunk in pacer.steps(everything):
                jobs.extend([j for j in chunk if matches_state(j.state, state)])
        return [Picked(None, jobs)]
    picked: list[Picked] = []
    for ident in ids:
        if keys and len(ident) == 32:
            job = queue.get(ident)
            if job is None and history:
                found = await store.complete_jobs([ident])
                job = found[0] if found else None
            if job is not None:  # (the state filter does not apply to jobs named by key)
                picked.append(Picked(None, [job]))
                continue
        names = ([ident] if not search
                 else await rep_groups_matching(queue, store, ident, history=history))
        for name in names:
            live = queue.in_rep_grp(name)
            queued = queue.rep_grp_keys(name)
            if state:
                live = [j for j in live if matches_state(j.state, state)]
            picked.append(Picked(name, live, history and state in ("", "complete"), queued))
    return picked


async def rep_groups_matching(queue: Queue, store: Store, text: str, *,
                              history: bool = True) -> list[str]:
    """The rep groups, queued (and with ``history`` completed), whose names contain
    ``text``, sorted."""
    names = {n for n in queue.rep_grp_names() if text in n}
    if history:
        names |= set(await store.rep_grps(text))
    return sorted(names)


async def history_of(store: Store, picked: Picked) -> list[Job]:
    """The completed jobs of a picked rep group that belong to the selection."""
    if not picked.history or picked.name is None:
        return []
    return await store.complete_in_rep_grp(picked.name, exclude=picked.queued)
