"""The event stream's generator against an in-memory hub: overflow and the replay window.

A real manager's subscriber queues hold 50,000 changes, too many to overflow in a test, so
these drive `EventStream._stream` directly with a tiny hub.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from wr.manager.events import EventHub
from wr.manager.stream import EventFilter, EventStream


def changes(first: int, n: int) -> list[tuple[str, str, str | None, str, int, str, float]]:
    return [(f"{i:032x}", "g", None, "ready", 0, "", 0.0) for i in range(first, first + n)]


def parse(chunks: list[str]) -> list[dict[str, Any]]:
    out = []
    for block in "".join(chunks).split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n")
                      if ": " in line and not line.startswith(":"))
        if "data" in fields:
            out.append({"event": fields.get("event", "message"), "sse_id": fields.get("id"),
                        **orjson.loads(fields["data"])})
    return out


async def run(hub: EventHub, feed: Any, after: int | None = None) -> list[dict[str, Any]]:
    """Subscribe as the endpoint does, publish with ``feed(hub, settled)`` while the
    generator runs, and collect what it sends until the hub closes. ``settled()`` waits
    until the stream has dealt with every change published so far."""
    stream = EventStream(SimpleNamespace(events=hub), "t", epoch="e")  # type: ignore[arg-type]
    backlog, sub = hub.subscribe(after)
    position = hub.last_id if after is None else after
    gen = stream._stream(hub, sub, backlog, position, EventFilter(), 60.0, "")
    chunks: list[str] = []

    async def read() -> None:
        async for chunk in gen:
            chunks.append(chunk)

    async def settled() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not caught_up(parse(chunks), hub.last_id):
            if loop.time() > deadline:
                raise AssertionError(f"the stream sent {parse(chunks)}, not up to "
                                     f"{hub.last_id}")
            await asyncio.sleep(0.001)

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0)  # the reader starts: it waits for the first change
    await feed(hub, settled)
    await settled()
    hub.close()
    await asyncio.wait_for(reader, 5)
    return parse(chunks)


def caught_up(got: list[dict[str, Any]], last_id: int) -> bool:
    """Whether the last thing sent is change ``last_id``, or a resync up to it."""
    return bool(got) and last_id in (got[-1].get("id"), got[-1].get("LastId"))


def test_a_stream_that_overflows_its_queue_misses_nothing() -> None:
    """The hub drops a subscriber whose queue overflows (here: 10 changes at once into a
    queue of 4); the stream picks up from the replay window, every change once."""
    async def feed(hub: EventHub, settled: Any) -> None:
        hub.publish(changes(1, 10))
        await settled()
        hub.publish(changes(11, 3))

    got = asyncio.run(run(EventHub(history=100, queue_size=4), feed))
    assert [e["id"] for e in got] == list(range(1, 14))
    assert [e["sse_id"] for e in got] == [f"e-{n}" for n in range(1, 14)]
    assert all(e["event"] == "message" for e in got)


def test_a_stream_that_falls_out_of_the_window_is_told_to_resync() -> None:
    """When even the window no longer holds what was missed, a resync event comes, with the
    position from which the stream goes on."""
    async def feed(hub: EventHub, settled: Any) -> None:
        hub.publish(changes(1, 10))
        await settled()
        hub.publish(changes(11, 2))

    got = asyncio.run(run(EventHub(history=5, queue_size=4), feed))
    kinds = [e["event"] for e in got]
    assert "resync" in kinds
    resync = got[kinds.index("resync")]
    assert resync["sse_id"] == f"e-{resync['LastId']}"
    after = [e["id"] for e in got[kinds.index("resync") + 1:]]
    assert after == list(range(resync["LastId"] + 1, 13))


def test_resuming_replays_exactly_what_came_after() -> None:
    hub = EventHub()
    hub.publish(changes(1, 5))

    async def feed(hub: EventHub, settled: Any) -> None:
        hub.publish(changes(6, 2))

    got = asyncio.run(run(hub, feed, after=3))
    assert [e["id"] for e in got] == [4, 5, 6, 7]
