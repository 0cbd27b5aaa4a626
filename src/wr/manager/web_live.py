"""The web page's live feed: per rep group job counts, pushed over a websocket.

``wss://<host>:<webport>/web/live?token=<token>``; a connection without the right token is
refused at the handshake (HTTP 401, by the route table's guard: routes.py). The page sends
nothing; the server sends JSON text:

* ``{"t": "snapshot", "states": [...], "groups": {rep_grp: row}, "warnings": [...],
  "manager": {...}, "time": t}``: everything, first on each connection and again whenever
  the server had to start over (the event stream had a gap).
* ``{"t": "update", "groups": {rep_grp: row | null}, "time": t}`` with ``warnings`` and
  ``manager`` only when those changed: the rep groups that changed since the last message
  (null: the group has no jobs any more).
* ``{"t": "tick", "time": t}`` after 15 quiet seconds, so the page can tell a live
  connection from a dead one.

A row is the counts in the order of ``states`` (delayed, dependent, ready, running, lost,
buried, complete; reserved counts as running, as in wr) followed by the time of the group's
last change (Unix seconds).

Theory of operation. The event hub (`wr.manager.events`) says which rep groups changed,
once each change is stored. Rather than adding up deltas, the overview *recounts* the groups
that changed: their queued jobs from the queue and their completed jobs from the store (an
indexed count). A recount cannot drift, so a gap in the events, events out of order or a
manager restart cost at most one extra recount, never a wrong number. Recounts are
coalesced: the first change is sent at once, then at most one message every ``interval``
seconds, the interval growing with what a recount costs (at most ~5% of the event loop, and
a quarter of a store reader thread), so 100,000 jobs finishing make a few messages a second,
not 100,000. Each client has a mailbox where pending changes merge by rep group and one
sender, so a slow browser gets fewer, larger messages and never a backlog.

Groups stay in the overview while they have queued jobs, and once finished for as long as
the overview runs (at most ``keep_finished`` of them; at start it takes the groups finished
in the last day from the store). The overview runs while a page is connected and stops a
little after the last one leaves. When the manager stops, every page is told (close code
1012) and reconnects with back-off to a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from wr import __version__
from wr.jobs import State
from wr.manager.core import Manager
from wr.manager.events import Gap

log = logging.getLogger("wr.manager")

STATES = ("delayed", "dependent", "ready", "running", "lost", "buried", "complete")
"""The counts of a row, in order; reserved jobs count as running."""
_SLOT = {State.DELAYED: 0, State.DEPENDENT: 1, State.READY: 2, State.RESERVED: 3,
         State.RUNNING: 3, State.LOST: 4, State.BURIED: 5}
_COMPLETE = 6
_NSTATES = len(STATES)

MIN_INTERVAL = 0.3
"""Seconds between two messages to a page, at least."""
MAX_INTERVAL = 10.0
"""... and at most, however costly recounting is."""
LOOP_SHARE = 0.05
"""Share of the event loop's time that recounting queued jobs may take."""
READER_SHARE = 0.25
"""Share of a store reader thread's time that counting completed jobs may take."""
HEARTBEAT = 15.0
"""Seconds of quiet after which a page gets a ``tick``."""
LINGER = 30.0
"""Seconds the overview keeps running after the last page left (a reload is free)."""
KEEP_FINISHED = 1000
"""Finished rep groups kept in the overview; the least recently changed go first."""
RECENT = 86400.0
"""At start, groups that finished this many seconds ago or less are shown."""
SEND_TIMEOUT = 30.0
"""A page that takes longer than this to take one message is closed (it will resync)."""


def _row(live: list[int] | None, complete: int, changed: float) -> list[Any]:
    row: list[Any] = list(live) if live is not None else [0] * (_NSTATES - 1)
    row.append(complete)
    row.append(int(changed))
    return row


def _empty(row: list[Any]) -> bool:
    return not any(row[:_NSTATES])


def _finished(row: list[Any]) -> bool:
    return not any(row[:_COMPLETE])


class _Client:
    """One connected page: its pending changes and the task that sends them."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.snapshot = True
        self.groups: dict[str, list[Any] | None] = {}
        self.extra: dict[str, Any] = {}
        self.wake = asyncio.Event()
        self.wake.set()  # the snapshot goes out as soon as the overview is ready
        self.last_sent = 0.0
        self.closing: int | None = None

    def post(self, groups: dict[str, list[Any] | None], extra: dict[str, Any],
             full: bool) -> None:
        if full:
            self.snapshot = True
            self.groups.clear()
            self.extra.clear()
        elif not self.snapshot:
            self.groups.update(groups)
            self.extra.update(extra)
        self.wake.set()

    def close(self, code: int) -> None:
        self.closing = code
        self.wake.set()

    async def run(self, overview: Overview) -> None:
        """Send what is pending whenever there is something; close when asked to."""
        await overview.ready.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), HEARTBEAT)
            self.wake.clear()
            if self.closing is not None:
                with contextlib.suppress(Exception):
                    await self.ws.close(code=self.closing)
                return
            now = time.time()
            if self.snapshot:
                self.snapshot = False
                self.groups.clear()
                self.extra.clear()
                msg = overview.snapshot()
            elif self.groups or self.extra:
                msg = {"t": "update", "groups": self.groups, **self.extra, "time": now}
                self.groups, self.extra = {}, {}
            elif now - self.last_sent >= HEARTBEAT - 0.5:
                msg = {"t": "tick", "time": now}
            else:
                continue
            await asyncio.wait_for(self.ws.send_text(orjson.dumps(msg).decode()),
                                   SEND_TIMEOUT)
            self.last_sent = time.time()


class Overview:
    """Per rep group counts for every connected page, kept by recounting what changed."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.rows: dict[str, list[Any]] = {}
        self.clients: set[_Client] = set()
        self.ready = asyncio.Event()
        self.interval = MIN_INTERVAL
        self.recounts = 0
        """Recounts done (for tests and the bench)."""
        self._dirty: set[str] = set()
        self._dirty_complete: set[str] = set()
        self._resync = True
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._idle_since: float | None = None
        self._warnings: list[dict[str, Any]] = []
        self._manager_info: dict[str, Any] = {}

    # -- clients ----------------------------------------------------------------------------

    def join(self, client: _Client) -> None:
        self.clients.add(client)
        self._idle_since = None
        if not self._tasks:
            self._resync = True
            self.ready.clear()
            self._tasks = [asyncio.ensure_future(self._consume()),
                           asyncio.ensure_future(self._flush_loop())]

    def leave(self, client: _Client) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._idle_since = time.monotonic()

    def poke(self) -> None:
        """Look for changed warnings and mode now rather than within a second."""
        self._wake.set()

    def snapshot(self) -> dict[str, Any]:
        return {"t": "snapshot", "states": STATES, "groups": self.rows,
                "warnings": self._warnings, "manager": self._manager_info,
                "time": time.time()}

    def _broadcast(self, groups: dict[str, list[Any] | None], extra: dict[str, Any],
                   full: bool) -> None:
        for client in list(self.clients):
            client.post(groups, extra, full)

    def stop(self, code: int = 1012) -> None:
        """Close every page (they reconnect) and stop counting."""
        for client in list(self.clients):
            client.close(code)
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.ready.set()  # a page still waiting for its snapshot goes on to close

    # -- events -----------------------------------------------------------------------------

    async def _consume(self) -> None:
        """Note which groups changed; on a gap start over with a full recount."""
        hub = self.manager.events
        while True:
            if self.manager.mode == "stopping":  # the hub is closed or about to be
                self.stop(1012)
                return
            _, sub = hub.subscribe()
            self._resync = True
            self._wake.set()
            try:
                async for ev in sub:
                    self._dirty.add(ev.rep_grp)
                    if ev.old is None or ev.new == "complete":
                        self._dirty_complete.add(ev.rep_grp)
                    self._wake.set()
            except Gap:
                log.info("web page feed fell behind the job events; recounting everything")
                continue
            finally:
                sub.close()
            # The hub closed: the manager is stopping.
            self.stop(1012)
            return

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            if (self._idle_since is not None
                    and time.monotonic() - self._idle_since > LINGER):
                # Nobody is watching: stop reading events until a page comes back.
                for task in self._tasks:
                    if task is not asyncio.current_task():
                        task.cancel()
                self._tasks = []
                self.ready.clear()
                return
            pause = self.interval
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # the feed must outlive one bad recount (a store outage)
                log.exception("web page feed: recount failed; starting over")
                self._resync = True
                pause = max(pause, 5.0)
            await asyncio.sleep(pause)

    async def _flush(self) -> None:
        extra = self._check_extras()
        if self._resync:
            await self._recount_all()
            return
        if not self._dirty:
            if extra:
                self._broadcast({}, extra, False)
            return
        dirty, self._dirty = self._dirty, set()
        dirty_complete, self._dirty_complete = self._dirty_complete, set()
        t0 = time.perf_counter()
        try:
            done = (await self.manager.store.complete_counts(sorted(dirty_complete))
                    if dirty_complete else {})
        except Exception:
            self._dirty |= dirty
            self._dirty_complete |= dirty_complete
            raise
        t1 = time.perf_counter()
        live = self._count(dirty)
        now = time.time()
        changes: dict[str, list[Any] | None] = {}
        for name in dirty:
            old = self.rows.get(name)
            complete = done.get(name, 0) if name in dirty_complete else (
                old[_COMPLETE] if old is not None else 0)
            # Sent even when the counts are back where they were (a retried job failed
            # again within one interval): its jobs changed, and an open drill-down reloads.
            row = _row(live.get(name), complete, now)
            if _empty(row):
                if old is not None:
                    del self.rows[name]
                    changes[name] = None
                continue
            self.rows[name] = row
            changes[name] = row
        changes.update(self._prune())
        self._cost(time.perf_counter() - t1, t1 - t0)
        if changes or extra:
            self._broadcast(changes, extra, False)

    async def _recount_all(self) -> None:
        self._resync = False
        self._dirty.clear()
        self._dirty_complete.clear()
        store = self.manager.store
        t0 = time.perf_counter()
        if not self.ready.is_set() and not self.rows:
            since = time.time() - RECENT
            recent = dict(await store.recent_rep_grps(since, KEEP_FINISHED))
        else:
            recent = {name: row[_NSTATES] for name, row in self.rows.items()
                      if _finished(row)}
        names = set(self.manager.queue.rep_grp_names()) | set(recent)
        done = await store.complete_counts(sorted(names))
        t1 = time.perf_counter()
        live = self._count(None)
        now = time.time()
        rows: dict[str, list[Any]] = {}
        for name in names | set(live):
            old = self.rows.get(name)
            row = _row(live.get(name), done.get(name, 0), now)
            if old is not None and old[:_NSTATES] == row[:_NSTATES]:
                row[_NSTATES] = old[_NSTATES]
            elif name in recent and _finished(row):
                row[_NSTATES] = int(recent[name])
            if not _empty(row):
                rows[name] = row
        self.rows = rows
        self._prune()
        self._check_extras()
        self._cost(time.perf_counter() - t1, t1 - t0)
        self.ready.set()
        self._broadcast({}, {}, True)

    def _count(self, names: Iterable[str] | None) -> dict[str, list[int]]:
        """Queued jobs by state of the given rep groups (None: all of them)."""
        q = self.manager.queue
        out: dict[str, list[int]] = {}
        if names is None:
            jobs: Iterable[Any] = q.jobs.values()
        else:
            wanted = list(names)
            jobs = [j for name in wanted for j in q.in_rep_grp(name)]
        for job in jobs:
            slot = _SLOT.get(job.state)
            if slot is None:
                continue
            row = out.get(job.rep_grp)
            if row is None:
                row = out[job.rep_grp] = [0] * (_NSTATES - 1)
            row[slot] += 1
        return out

    def _prune(self) -> dict[str, None]:
        finished = [(row[_NSTATES], name) for name, row in self.rows.items()
                    if _finished(row)]
        if len(finished) <= KEEP_FINISHED:
            return {}
        finished.sort()
        gone = {name: None for _, name in finished[:len(finished) - KEEP_FINISHED]}
        for name in gone:
            del self.rows[name]
        return gone

    def _cost(self, loop_s: float, store_s: float) -> None:
        self.recounts += 1
        wanted = max(loop_s / LOOP_SHARE, store_s / READER_SHARE)
        self.interval = min(max(wanted, MIN_INTERVAL), MAX_INTERVAL)

    def _check_extras(self) -> dict[str, Any]:
        """Warnings and the manager's mode, when they changed."""
        extra: dict[str, Any] = {}
        warnings = [{"Msg": w.msg, "FirstDate": int(w.first), "LastDate": int(w.last),
                     "Count": w.count}
                    for w in self.manager.page_warnings.values()]
        if warnings != self._warnings:
            self._warnings = warnings
            extra["warnings"] = warnings
        info = manager_summary(self.manager)
        if info != self._manager_info:
            self._manager_info = info
            extra["manager"] = info
        return extra


def manager_summary(manager: Manager) -> dict[str, Any]:
    """What the page's header shows about the manager."""
    info = manager.info()
    return {"Host": info["Host"], "WebPort": info["WebPort"],
            "Deployment": info["Deployment"], "Scheduler": info["Scheduler"],
            "Mode": info["Mode"], "PID": info["PID"], "Version": __version__}


class LiveFeed:
    """The websocket endpoint, bound to one manager and its token."""

    def __init__(self, manager: Manager, token: str) -> None:
        self.manager = manager
        self.token = token
        self._overview: Overview | None = None

    @property
    def overview(self) -> Overview:
        if self._overview is None:
            self._overview = Overview(self.manager)
        return self._overview

    async def __call__(self, ws: WebSocket) -> None:
        if self.manager.mode == "stopping":
            await ws.close(code=1013)
            return
        await ws.accept()
        overview = self.overview
        client = _Client(ws)
        overview.join(client)
        sender = asyncio.ensure_future(client.run(overview))
        receiver = asyncio.ensure_future(_drain(ws))
        try:
            await asyncio.wait([sender, receiver], return_when=asyncio.FIRST_COMPLETED)
            if sender.done() and not sender.cancelled():
                exc = sender.exception()
                if exc is not None and not isinstance(exc, (WebSocketDisconnect, OSError,
                                                             TimeoutError)):
                    log.warning("web page feed: sending to a page failed: %r", exc)
        finally:
            overview.leave(client)
            for task in (sender, receiver):
                task.cancel()
            for task in (sender, receiver):
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await ws.close()


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the page sends, until it goes."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
