"""The gate's arithmetic and its order of shedding (issue 13, item 7).

The order is driven through the gate's own entry points: ``accept`` with real sockets (one
end of a socket pair; the other end shows whether the gate closed it) and the reports the
HTTP protocol makes (``up``, ``busy``, ``idle``, ``closed``) with stand-in transports that
record an ``abort``. tests/integration/test_flood.py floods a real manager.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest

from wr.manager.gate import AUTO_CAP_MAX, Gate, connection_cap


@pytest.mark.parametrize(("setting", "limit", "cap", "warned"), [
    (0, 20_000, 18_976, False),         # automatic: the limit less 1,024 for files
    (0, 1_024, 768, False),             # a low limit keeps a quarter back
    (0, 1_048_576, AUTO_CAP_MAX, False),  # and a huge one is capped for memory's sake
    (200, 20_000, 200, False),
    (20_000, 20_000, 18_976, True),     # more than the limit allows: lowered, and said
])
def test_connection_cap(setting: int, limit: int, cap: int, warned: bool) -> None:
    got, warning = connection_cap(setting, limit)
    assert got == cap
    assert (warning is not None) == warned
    if warning:
        assert str(setting) in warning and str(limit) in warning and str(cap) in warning


class FakeTransport:
    """Stands in for a TLS transport: records whether the gate aborted it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


def closed(peer: socket.socket) -> bool:
    """Whether the gate closed the other end of ``peer``'s pair."""
    peer.setblocking(False)
    try:
        return peer.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Let the loop run until ``condition()`` holds, for at most ``timeout`` seconds (the
    caller's assertions then say what did not happen)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.005)


async def scenario() -> dict[str, Any]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # no handshake ever completes here
    gate = Gate(3, context, handshake_timeout=600)
    protocols: dict[str, object] = {}
    peers: dict[str, socket.socket] = {}

    def connect(name: str) -> None:
        mine, theirs = socket.socketpair()
        mine.setblocking(False)
        peers[name] = theirs
        gate.accept(mine, lambda: protocols.setdefault(name, object()))

    t = {name: FakeTransport(name) for name in "ABCDEFG"}
    out: dict[str, Any] = {}
    try:
        for name in "ABC":
            connect(name)
            await asyncio.sleep(0)  # each handshake begins: a transport takes the socket
        assert gate.up(protocols["A"], t["A"])       # fresh: TLS up, nothing asked yet
        assert gate.up(protocols["B"], t["B"])
        gate.busy(t["B"])                             # headers complete: never shed ...
        gate.idle(t["B"])                             # ... until answered and idle again
        out["open"] = gate.open
        connect("D")                                  # over the cap: C, in its handshake
        await until(lambda: closed(peers["C"]) or closed(peers["D"]))
        out["after D"] = {n: closed(peers[n]) for n in "CD"}
        assert gate.up(protocols["D"], t["D"])
        connect("E")                                  # no handshake to shed: oldest fresh
        out["after E"] = (t["A"].aborted, t["D"].aborted, t["B"].aborted)
        assert gate.up(protocols["E"], t["E"])
        gate.busy(t["D"])
        gate.busy(t["E"])
        connect("F")                                  # nothing fresh: the idle one
        out["after F"] = t["B"].aborted
        assert gate.up(protocols["F"], t["F"])
        gate.busy(t["F"])
        connect("G")                                  # all busy: the newcomer is refused
        await until(lambda: closed(peers["G"]))
        out["after G"] = (closed(peers["G"]), gate.refused, gate.shed, gate.open)
        out["up after shed"] = gate.up(protocols["C"], t["G"])  # C's handshake "finished"
        gate.closed(t["D"])
        out["after close"] = gate.open
    finally:
        gate.close()
        for peer in peers.values():
            peer.close()
        # The handshakes the gate cancelled end before the loop closes.
        await until(lambda: len(asyncio.all_tasks()) == 1)
    return out


def test_shedding_goes_handshake_then_fresh_then_idle_and_never_busy() -> None:
    out = asyncio.run(scenario())
    assert out["open"] == 3
    assert out["after D"] == {"C": True, "D": False}
    assert out["after E"] == (True, False, False)
    assert out["after F"] is True
    assert out["after G"] == (True, 1, 3, 3)
    assert out["up after shed"] is False
    assert out["after close"] == 2
