"""Job state changes as a stream, for the web page and ``GET /rest/v1/events/``.

Every change gets the next id. The hub keeps the most recent ``history`` changes so a client
that reconnects with the last id it saw gets exactly what it missed; a client that fell
further behind is told to resynchronise (``gap``). Subscribers get their own bounded queue;
one that stops reading is dropped rather than slowing the manager down.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterable
from typing import Any, NamedTuple


class Event(NamedTuple):
    """One job's state change (``old`` is None for a job new to the queue). A named tuple,
    because a big add publishes 100,000 at once (a frozen dataclass took 1.5 µs each)."""

    id: int
    key: str
    rep_grp: str
    old: str | None
    new: str
    exitcode: int
    fail_reason: str
    time: float

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "Key": self.key, "RepGroup": self.rep_grp, "From": self.old,
                "To": self.new, "Exitcode": self.exitcode, "FailReason": self.fail_reason,
                "Time": self.time}


class Gap(Exception):
    """The events after the asked-for id are no longer kept: start again from a snapshot."""


class Subscription:
    """A subscriber's queue of events."""

    def __init__(self, hub: EventHub, size: int) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=size)
        self.dropped = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Event]:
        while True:
            event = await self.queue.get()
            if event is None:
                if self.dropped:
                    raise Gap("fell too far behind")
                return
            yield event

    def close(self) -> None:
        self._hub._subs.discard(self)


class EventHub:
    """Numbered job events with a replay window."""

    def __init__(self, history: int = 100_000, queue_size: int = 50_000) -> None:
        self.last_id = 0
        self._recent: collections.deque[Event] = collections.deque(maxlen=history)
        self._subs: set[Subscription] = set()
        self._queue_size = queue_size

    def publish(self, changes: Iterable[tuple[str, str, str | None, str, int, str, float]]
                ) -> None:
        subs = list(self._subs)
        keep = self._recent.append
        last = self.last_id  # (a local: a big add publishes 100,000 at once, issue 17)
        for key, rep_grp, old, new, exitcode, reason, when in changes:
            last += 1
            self.last_id = last
            event = Event(last, key, rep_grp, old, new, exitcode, reason, when)
            keep(event)
            for sub in subs:
                if sub.dropped:
                    continue
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    sub.dropped = True
                    self._subs.discard(sub)
                    _force_end(sub.queue)

    def subscribe(self, after: int | None = None) -> tuple[list[Event], Subscription]:
        """Events after id ``after`` still kept (raises Gap if some are gone), and a
        subscription for everything that follows."""
        backlog: list[Event] = []
        if after is not None and after < self.last_id:
            oldest = self._recent[0].id if self._recent else self.last_id + 1
            if after + 1 < oldest:
                raise Gap(f"events after {after} are no longer kept (oldest is {oldest})")
            backlog = [e for e in self._recent if e.id > after]
        sub = Subscription(self, self._queue_size)
        self._subs.add(sub)
        return backlog, sub

    def close(self) -> None:
        for sub in list(self._subs):
            _force_end(sub.queue)
        self._subs.clear()


def _force_end(queue: asyncio.Queue[Event | None]) -> None:
    while True:
        try:
            queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
