"""Admission: how many connections the manager holds, and which go first (issue 13, item 7).

21,000 idle TCP connections to the web port (no TLS, no token) once took every one of the
manager's 20,000 file descriptors: for 19 s every request failed, and the scheduled backup
failed with "unable to open database file". Each connection costs a descriptor from the
moment it is accepted, long before anyone can tell a runner from an attacker: the TLS
handshake comes first, and the token is only read with the headers.

So the gate accepts every connection of both ports itself and keeps their number at or
below ``cap``, well below the descriptor limit (up to `RESERVE_MAX` descriptors stay for
SQLite's db, WAL and backups, the log, uploads and starting runners). When a new connection
would go over the cap, the gate sheds one that has proved nothing, oldest first:

1. still in its TLS handshake;
2. TLS up, but no request's headers complete yet (*fresh*);
3. idle between requests (a keep-alive connection; its client reconnects).

A connection whose request is being answered, and a websocket (every runner holds one), is
never shed. Only when nothing can be shed is the new connection refused, so a flood of idle
or half-open connections can no longer lock out runners and clients: each newcomer
displaces the oldest idler.

How: the listening sockets are the gate's (`Listener`), each accepted socket gets its TLS
from ``loop.connect_accepted_socket`` (asyncio's TLS for sockets accepted outside asyncio,
so nothing is read before TLS owns the socket), and then uvicorn's HTTP protocol runs it as
on a socket uvicorn accepted. That protocol (`guard.py`) and `GatedWebSocketProtocol` tell
the gate what each connection is doing: up, a request begun, headers complete, answered,
upgraded, closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger("wr.manager")

AUTO_CAP_MAX = 32_768
"""The most connections an automatic cap allows, however high the descriptor limit: each
costs memory too (5,000 runners and thousands of clients fit well below it)."""
RESERVE_MAX = 1_024
"""Descriptors kept back from connections for files, at most (a quarter of a low limit)."""
ACCEPT_BATCH = 64
"""Connections accepted per wake-up of a listening socket, so others get their turn."""
ACCEPT_PAUSE = 0.1
"""Seconds accepting waits after the system refused a descriptor (EMFILE and the like)."""
WARN_EVERY = 10.0
"""Seconds between log lines about shed and refused connections."""


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_cap(setting: int, limit: int) -> tuple[int, str | None]:
    """The cap for a ``maxconnections`` setting (0: automatic) under a descriptor limit,
    and a warning when the setting had to be lowered."""
    reserve = min(RESERVE_MAX, limit // 4)
    most = max(limit - reserve, 1)
    if setting == 0:
        return min(most, AUTO_CAP_MAX), None
    if setting > most:
        return most, (f"maxconnections {setting} leaves too few of the {limit} file "
                      f"descriptors this process may open for its files; using {most} "
                      f"(raise the limit with ulimit -n, or lower maxconnections)")
    return setting, None


class _Pending:
    """A connection accepted and in its TLS handshake."""

    __slots__ = ("sock", "protocol", "task")

    def __init__(self, sock: socket.socket, protocol: Any) -> None:
        self.sock = sock
        self.protocol = protocol
        self.task: asyncio.Task[Any] | None = None

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()  # its transport, if made yet, is closed as the task ends
        self.sock.close()  # closes the descriptor unless a transport has taken it


class Gate:
    """Every open connection of the manager's ports, by what it is doing."""

    def __init__(self, cap: int, context: ssl.SSLContext, handshake_timeout: float) -> None:
        self.cap = cap
        self.context = context
        self.handshake_timeout = handshake_timeout
        # Insertion-ordered: the first is the oldest (for idle ones: idle the longest).
        self._handshaking: dict[Any, _Pending] = {}  # by uvicorn's protocol
        self._fresh: dict[Any, None] = {}  # by TLS transport, as the rest
        self._idle: dict[Any, None] = {}
        self._live: set[Any] = set()
        self._listeners: list[Listener] = []
        self._closing = False
        self.shed = 0
        self.refused = 0
        self._reported = (0, 0)
        self._next_report = 0.0

    @property
    def open(self) -> int:
        """Connections holding a descriptor: in their handshake, or up."""
        return len(self._handshaking) + len(self._live)

    def serve(self, sockets: list[socket.socket], factory: Callable[[], Any]) -> None:
        """Accept on ``sockets``; ``factory`` makes uvicorn's protocol for a connection."""
        for sock in sockets:
            listener = Listener(self, sock, factory)
            listener.start()
            self._listeners.append(listener)

    def close(self) -> None:
        """Stopping: stop listening, and abort connections still in their handshake."""
        self._closing = True
        for listener in self._listeners:
            listener.close()
        for pending in list(self._handshaking.values()):
            pending.abort()
        self._handshaking.clear()

    # -- accepting ------------------------------------------------------------------------

    def accept(self, sock: socket.socket, factory: Callable[[], Any]) -> None:
        """Take a just-accepted socket: count it (shedding another if over the cap, or
        refusing it) and start its TLS handshake."""
        if self._closing:
            sock.close()
            return
        pending = _Pending(sock, factory())
        self._handshaking[pending.protocol] = pending
        while self.open > self.cap:
            victim = self._oldest_idler(besides=pending)
            if victim is None:
                del self._handshaking[pending.protocol]
                sock.close()
                self.refused += 1
                self._report()
                return
            self._shed(victim)
        pending.task = asyncio.get_running_loop().create_task(self._handshake(pending))

    async def _handshake(self, pending: _Pending) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: pending.protocol, pending.sock, ssl=self.context,
                ssl_handshake_timeout=self.handshake_timeout)
        except asyncio.CancelledError:
            raise  # shed, or stopping: already uncounted
        except Exception as exc:
            # A failed or abandoned handshake (plain HTTP, a port scan, a timeout, gone):
            # no answer, and the descriptor goes now.
            if self._handshaking.get(pending.protocol) is pending:
                del self._handshaking[pending.protocol]
            pending.sock.close()
            if not isinstance(exc, OSError | EOFError):
                log.warning("a TLS handshake failed unexpectedly", exc_info=True)
        finally:
            pending.task = None

    def _oldest_idler(self, besides: _Pending) -> Any:
        """The connection to shed first: in its handshake the longest (a real client's
        takes milliseconds), else fresh the longest, else idle the longest."""
        for pending in self._handshaking.values():
            if pending is not besides:
                return pending
        for group in (self._fresh, self._idle):
            for transport in group:
                return transport
        return None

    def _shed(self, victim: Any) -> None:
        self.shed += 1
        if isinstance(victim, _Pending):
            del self._handshaking[victim.protocol]
        else:
            self.closed(victim)
        victim.abort()  # a TLS transport's abort sends no close_notify: the descriptor goes
        self._report()

    def _report(self) -> None:
        now = time.monotonic()
        if now < self._next_report:
            return
        shed, refused = self.shed - self._reported[0], self.refused - self._reported[1]
        self._reported = (self.shed, self.refused)
        self._next_report = now + WARN_EVERY
        log.warning("connection limit reached (maxconnections %d, %d open): closed %d idle "
                    "or unfinished connections and refused %d new ones since the last "
                    "report", self.cap, self.open, shed, refused)

    # -- what a connection is doing (reported by the protocols) ---------------------------

    def up(self, protocol: Any, transport: Any) -> bool:
        """TLS is up: from now on ``transport`` stands for the connection. False if it was
        shed or the gate closed meanwhile (the caller closes it)."""
        if self._handshaking.pop(protocol, None) is None or self._closing:
            return False
        self._live.add(transport)
        self._fresh[transport] = None
        return True

    def began(self, transport: Any) -> None:
        """A request began: a connection that answered requests before is busy now; a
        fresh one has proved nothing until its headers are complete."""
        self._idle.pop(transport, None)

    def busy(self, transport: Any) -> None:
        """Headers complete (or upgraded to a websocket): never shed from now on."""
        self._fresh.pop(transport, None)
        self._idle.pop(transport, None)

    def idle(self, transport: Any) -> None:
        """Answered, and waiting for the client's next request."""
        if transport in self._live and transport not in self._fresh:
            self._idle.pop(transport, None)
            self._idle[transport] = None

    def closed(self, transport: Any) -> None:
        self._live.discard(transport)
        self._fresh.pop(transport, None)
        self._idle.pop(transport, None)


class Listener:
    """Accepts connections on one listening socket and hands them to the gate."""

    def __init__(self, gate: Gate, sock: socket.socket, factory: Callable[[], Any]) -> None:
        self.gate = gate
        self.sock = sock
        self.factory = factory
        self._loop = asyncio.get_running_loop()
        self._paused: asyncio.TimerHandle | None = None
        self._closed = False
        self._failures = 0
        self._next_report = 0.0

    def start(self) -> None:
        self._paused = None
        if not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        self._closed = True
        if self._paused is not None:
            self._paused.cancel()
        else:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
                # connection waits in the backlog; try again shortly instead of spinning.
                self._failures += 1
                if time.monotonic() >= self._next_report:
                    self._next_report = time.monotonic() + WARN_EVERY
                    log.warning("could not accept a connection: %s (%d times since the "
                                "last report)", exc.strerror, self._failures)
                    self._failures = 0
                self._loop.remove_reader(self.sock.fileno())
                self._paused = self._loop.call_later(ACCEPT_PAUSE, self.start)
                return
            conn.setblocking(False)
            # (A small exchange on loopback without it waits for delayed ACKs: DESIGN.md.)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.gate.accept(conn, self.factory)


class GatedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol, telling the gate when the connection closes."""

    gate: Gate

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.closed(self.transport)
        super().connection_lost(exc)


def gated_protocols(gate: Gate, http_class: type[Any]) -> tuple[type[Any], type[Any]]:
    """The classes to give uvicorn (``http=``, ``ws=``) so that ``gate`` hears what every
    connection does; ``http_class`` is guard.py's protocol."""
    http = type(http_class.__name__, (http_class,), {"gate": gate})
    ws = type("GatedWebSocketProtocol", (GatedWebSocketProtocol,), {"gate": gate})
    return http, ws

