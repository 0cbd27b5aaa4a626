"""``GET /rest/v1/events/``: every job state change as server-sent events, resumable.

Format (docs/events.md has the full story, with curl examples)::

    id: 5f3a9c1e-42
    data: {"id":42,"Key":"…","RepGroup":"…","From":"reserved","To":"running",
           "Exitcode":0,"FailReason":"","Time":1718000000.25}

One change is one event (the default ``message`` type, so a browser's ``onmessage`` gets
it), sent once the change is stored. Ids are ``<epoch>-<n>``: ``n`` counts this manager's
changes from 1 and ``epoch`` names this run of the manager, so an id from before a restart
is recognised instead of being confused with a new change of the same number.

Resuming: a client that reconnects with the last id it saw (the ``Last-Event-ID`` header, as
browsers send it, or ``?after=``) gets exactly the changes after it, then the live ones: no
gap, no repeat. If those changes are no longer kept (the manager keeps the last 100,000), or
the id is from another run of the manager, the stream starts with a ``resync`` event instead
(``event: resync``): the client should fetch the state afresh (``GET /rest/v1/jobs/``) and
carry on with the events that follow, which are the changes from that moment on.

Filters: ``rep_grp`` (exact, or a substring with ``search=true``) and ``state`` (the new
state; comma-separated for several). Ids of a filtered stream skip the changes left out; so
that a quiet filtered stream's resume point does not fall behind the kept window, keep-alive
blocks (a ``: keep-alive`` comment, every ``keepalive`` seconds without an event) carry an
``id:`` line whenever changes were skipped since the last one sent. Such a block has no
data, so it is no event; it only moves the resume point (as the SSE standard says).

Theory of operation: the stream subscribes to the manager's `EventHub` while the request is
answered, so receiving the response headers means every later change will be sent. A
subscriber that falls so far behind that its queue overflows is dropped by the hub; the
stream then resubscribes from the last change it saw, which the replay window nearly always
still holds, so a slow client loses nothing (and only in the extreme gets a ``resync``).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from wr.errors import BadRequest
from wr.jobs import State
from wr.manager.core import Manager
from wr.manager.events import Event, EventHub, Gap, Subscription

KEEPALIVE = 15.0
"""Default seconds between keep-alive comments on an idle stream (``?keepalive=``)."""
KEEPALIVE_RANGE = (0.1, 3600.0)
"""The ``keepalive`` values accepted, in seconds."""
BATCH = 500
"""Events written to the socket in one go when many are waiting."""
RETRY_MS = 2000
"""The reconnection delay (ms) suggested to clients in the stream's first block."""

STATES = tuple(str(s) for s in State)
"""The values the ``state`` filter takes: every state a job can move to."""

_ID = re.compile(r"(?:([0-9a-f]{1,32})-)?([0-9]{1,18})")


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which changes a stream sends: by rep group and by new state."""

    rep_grp: str = ""
    search: bool = False
    states: frozenset[str] = frozenset()

    @classmethod
    def from_query(cls, query: Any) -> EventFilter:
        states: set[str] = set()
        for part in (query.get("state") or "").split(","):
            part = part.strip()
            if not part:
                continue
            if part not in STATES:
                raise BadRequest(f'unknown state "{part}"; use one or more (comma-separated) '
                                 f"of {', '.join(STATES)}")
            states.add(part)
        return cls(query.get("rep_grp") or "", query.get("search") == "true",
                   frozenset(states))

    def __call__(self, event: Event) -> bool:
        if self.states and event.new not in self.states:
            return False
        if self.rep_grp:
            if self.search:
                return self.rep_grp in event.rep_grp
            return event.rep_grp == self.rep_grp
        return True


class EventStream:
    """The events endpoint of one manager."""

    def __init__(self, manager: Manager, token: str, *, epoch: str | None = None) -> None:
        self.manager = manager
        self.token = token
        self.epoch = epoch or secrets.token_hex(4)
        """Names this run of the manager in event ids."""

    async def events(self, request: Request) -> Response:
        wanted = EventFilter.from_query(request.query_params)
        keepalive = _keepalive(request.query_params.get("keepalive"))
        hub = self.manager.events
        after, stale = self._resume_point(request, hub)
        first = f"retry: {RETRY_MS}\n\n"
        backlog: list[Event] = []
        if stale:
            sub, first = self._resync(hub, first, stale)
            position = hub.last_id
        else:
            try:
                backlog, sub = hub.subscribe(after)
                position = hub.last_id if after is None else min(after, hub.last_id)
            except Gap as exc:
                sub, first = self._resync(hub, first, str(exc))
                position = hub.last_id
        # Subscribed before the answer starts: a client that has the headers misses nothing.
        return _EventStreamResponse(
            self._stream(hub, sub, backlog, position, wanted, keepalive, first), sub,
            media_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _resume_point(self, request: Request, hub: EventHub) -> tuple[int | None, str]:
        """(id to resume after or None for "from now", why the client must resync or "")."""
        header = request.headers.get("last-event-id", "").strip()
        raw = header or (request.query_params.get("after") or "").strip()
        if not raw:
            return None, ""
        what = "Last-Event-ID" if header else "after"
        m = _ID.fullmatch(raw)
        if m is None:
            raise BadRequest(f"{what} value ({raw}) is not an event id like "
                             f"{self.epoch}-42 (or a number)")
        epoch, n = m.group(1), int(m.group(2))
        if epoch is not None and epoch != self.epoch:
            return None, (f"event {raw} is from another run of the manager (this run's ids "
                          f"start {self.epoch}-)")
        if n > hub.last_id:
            return None, f"event {raw} is newer than the last change ({hub.last_id})"
        return n, ""

    def _resync(self, hub: EventHub, before: str, reason: str) -> tuple[Subscription, str]:
        """Subscribe from now; the text telling the client to fetch the state afresh."""
        _, sub = hub.subscribe(None)
        data = orjson.dumps({"Reason": reason, "LastId": hub.last_id}).decode()
        return sub, f"{before}event: resync\nid: {self.epoch}-{hub.last_id}\ndata: {data}\n\n"

    async def _stream(self, hub: EventHub, sub: Subscription, backlog: list[Event],
                      position: int, wanted: EventFilter, keepalive: float, first: str
                      ) -> AsyncIterator[str]:
        """``position``: the id of the last change this stream has dealt with (sent or left
        out)."""
        cursor = _Cursor(self.epoch, wanted, position)
        try:
            for chunk in cursor.render(first, backlog):
                yield chunk
            del backlog
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), keepalive)
                except TimeoutError:
                    yield cursor.keepalive()
                    continue
                batch, stopping, broken = _take(sub, event, cursor.position)
                for chunk in cursor.render("", batch):
                    yield chunk
                if stopping:
                    return
                if broken:
                    sub, head, missed = self._catch_up(hub, sub, cursor)
                    for chunk in cursor.render(head, missed):
                        yield chunk
        finally:
            sub.close()

    def _catch_up(self, hub: EventHub, sub: Subscription,
                  cursor: _Cursor) -> tuple[Subscription, str, list[Event]]:
        """Changes were lost from ``sub``'s queue: resubscribe after the last one dealt
        with, from the window. Returns the new subscription, a resync block if the window
        no longer holds them ("" if it does), and the changes missed."""
        sub.close()
        try:
            missed, sub = hub.subscribe(cursor.position)
        except Gap as exc:
            sub, head = self._resync(hub, "", f"this stream fell behind: {exc}")
            cursor.sent = cursor.position = hub.last_id
            return sub, head, []
        return sub, "", missed


class _Cursor:
    """Where one stream is: ``position``, the id of the last change it has dealt with
    (sent or left out), and ``sent``, the last id the client was given."""

    __slots__ = ("epoch", "wanted", "position", "sent")

    def __init__(self, epoch: str, wanted: EventFilter, position: int) -> None:
        self.epoch = epoch
        self.wanted = wanted
        self.position = position
        self.sent = position

    def render(self, head: str, events: list[Event]) -> Iterator[str]:
        """``head`` and the wanted ``events`` as SSE blocks, BATCH events a chunk (``head``
        alone if there are none); moves the cursor past each event as it goes."""
        epoch = self.epoch
        for start in range(0, max(len(events), 1), BATCH):
            parts = [head]
            head = ""
            for event in events[start:start + BATCH]:
                self.position = event.id
                if self.wanted(event):
                    self.sent = event.id
                    parts.append(f"id: {epoch}-{event.id}\ndata: "
                                 f"{orjson.dumps(event.as_dict()).decode()}\n\n")
            chunk = "".join(parts)
            if chunk:
                yield chunk

    def keepalive(self) -> str:
        """A keep-alive block, carrying the position if changes were left out since the
        last id sent (so a quiet filtered stream's resume point keeps up)."""
        moved = f"id: {self.epoch}-{self.position}\n" if self.position > self.sent else ""
        self.sent = self.position
        return f": keep-alive\n{moved}\n"


def _take(sub: Subscription, event: Event | None,
          position: int) -> tuple[list[Event], bool, bool]:
    """``event`` and the consecutive changes waiting behind it in ``sub``'s queue, at most
    BATCH; with whether the hub has closed (stopping) and whether changes were lost
    (broken). Ids from the hub are consecutive; a break (or the end of a subscription the
    hub dropped because it fell behind) means changes were lost from the queue."""
    batch: list[Event] = []
    while True:
        if event is None:
            return batch, not sub.dropped, sub.dropped
        if event.id != position + len(batch) + 1:
            return batch, False, True
        batch.append(event)
        if len(batch) >= BATCH or sub.queue.empty():
            return batch, False, False
        event = sub.queue.get_nowait()


class _EventStreamResponse(StreamingResponse):
    """Ends the subscription however the answer ends, even if the client left before the
    stream's generator first ran (its own ``finally`` then never runs)."""

    def __init__(self, content: AsyncIterator[str], sub: Subscription, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._sub = sub

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._sub.close()


def _keepalive(value: str | None) -> float:
    if not value:
        return KEEPALIVE
    low, high = KEEPALIVE_RANGE
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not low <= seconds <= high:
        raise BadRequest(f"keepalive value ({value}) must be a number of seconds from "
                         f"{low:g} to {high:g}")
    return seconds
