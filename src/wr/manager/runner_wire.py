"""The runner websocket below ASGI: its handshake and RFC 6455 framing, written for it.

Five thousand runners each send a message every few hundred milliseconds. Through uvicorn's
websocket protocol and Starlette each message went through a sans-I/O parser, an ASGI
receive queue, Starlette's wrappers and a coroutine woken per message, and each answer back
through the same layers: a fifth of the event loop's time per message at 1,000 runners
(docs/benchmarks.md, runner capacity; issue 16). A runner's channel needs little of that:
binary or text messages one frame each, pings, a close. Here a message is parsed from the
bytes as they arrive and handed to the runner endpoint in the same callback, and an answer is
one write of a frame header and its payload.

How a connection gets here: uvicorn's HTTP protocol (`wr.manager.guard`) reads the upgrade
request and hands the transport to the websocket protocol class it was given (``ws=``),
replaying the request's head to it. `switching` makes that class: it looks at the request's
path, and gives the runner channel's path to a `RunnerWire`, and any other (the web page's
``/web/live``) to the class it wraps, uvicorn's, which runs the ASGI application as before.
The route table keeps ``/runner_ws`` (the ASGI path serves it where no switch is installed).

Refusals are the guarded route's: a handshake that is not a valid websocket upgrade gets 400
(426 for another protocol version), a missing or wrong token the 401 with wr's words
(`wr.manager.rest.check_token`), as the token guard of the route table answers
(`wr.manager.routing`), each as a plain-text HTTP answer before the connection closes.

Frames from a runner must be masked (RFC 6455 §5.1); control frames at most 125 bytes and
never fragmented; a message at most ``max_size`` bytes (``1009`` otherwise); anything else
is a protocol error (``1002``): the connection is closed with that code.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

try:  # websockets' C helper (it is a dependency: the runners' client side)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build of websockets without its C extension
    from websockets.utils import apply_mask

log = logging.getLogger("wr.manager")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""RFC 6455's constant for the handshake's ``Sec-WebSocket-Accept``."""

_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_CONTINUATION = 0x0


class Refusal(Exception):
    """A handshake the endpoint refuses: answered with ``status`` and ``message``."""

    def __init__(self, status: int, message: str,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Session(Protocol):
    """What the endpoint gives each connection it admits."""

    def message(self, data: bytes) -> None:
        """A whole message (text or binary) arrived."""

    def closed(self) -> None:
        """The connection has closed (after which nothing is sent)."""


class Endpoint(Protocol):
    """The runner channel, as the wire sees it (wr.manager.runner_ws.RunnerEndpoint)."""

    def admit(self, query: Mapping[str, str], headers: Mapping[str, str]) -> Any:
        """Check a handshake's query and headers: a ticket for `open`, or raise Refusal."""

    def open(self, ticket: Any, wire: RunnerWire) -> Session:
        """The handshake has been accepted: start the session."""


class RunnerWire(asyncio.Protocol):
    """One runner's websocket connection, from its handshake to its close."""

    def __init__(self, endpoint: Endpoint, *, gate: Any, server_state: Any,
                 max_size: int) -> None:
        self.endpoint = endpoint
        self.gate = gate
        self.server_state = server_state
        self.max_size = max_size
        self.transport: Any = None
        self.session: Session | None = None
        self._buf = bytearray()
        self._parts: list[bytes] | None = None
        self._parts_size = 0
        self._closing = False

    # -- asyncio's callbacks --------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.transport = transport
        self.server_state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server_state.connections.discard(self)
        if self.gate is not None:
            self.gate.closed(self.transport)
        session, self.session = self.session, None
        if session is not None:
            try:
                session.closed()
            except Exception:
                log.exception("closing a runner's session failed")

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        while not self._closing and end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            size, head = b1 & 0x7F, pos + 2
            if size == 126:
                if end - pos < 4:
                    break
                size, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), pos + 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), pos + 10
            opcode = b0 & 0x0F
            if not b1 & 0x80:
                return self.fail(1002, "a client's frames must be masked")
            if b0 & 0x70:
                return self.fail(1002, "reserved bits set without an extension")
            if opcode >= _CLOSE:
                if size > 125 or not b0 & 0x80:
                    return self.fail(1002, "control frames are short and whole")
            elif self._parts_size + size > self.max_size:
                return self.fail(1009, f"message over {self.max_size} bytes")
            if end < head + 4 + size:
                break  # the rest of the frame is still on its way
            payload = apply_mask(buf[head + 4:head + 4 + size], bytes(buf[head:head + 4]))
            pos = head + 4 + size
            self._frame(bool(b0 & 0x80), opcode, payload)
        del buf[:pos]

    # -- frames ---------------------------------------------------------------------------

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode in (_TEXT, _BINARY):
            if self._parts is not None:
                return self.fail(1002, "a new message began inside a fragmented one")
            if fin:
                return self._deliver(payload)
            self._parts, self._parts_size = [payload], len(payload)
        elif opcode == _CONTINUATION:
            if self._parts is None:
                return self.fail(1002, "a continuation frame began no message")
            self._parts.append(payload)
            self._parts_size += len(payload)
            if fin:
                data = b"".join(self._parts)
                self._parts, self._parts_size = None, 0
                self._deliver(data)
        elif opcode == _PING:
            self._write(0x80 | _PONG, payload)
        elif opcode == _CLOSE:
            # Echo its status code (RFC 6455 §5.5.1), then the server closes TCP first.
            code = payload[:2] if len(payload) >= 2 else b""
            self._write(0x80 | _CLOSE, code)
            self._close_transport()
        elif opcode != _PONG:
            self.fail(1002, f"unknown opcode {opcode}")

    def _deliver(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        try:
            session.message(data)
        except Exception:  # one bad message must not take the connection with it
            log.exception("a runner's message could not be handled")

    # -- sending --------------------------------------------------------------------------

    def send_message(self, data: bytes) -> None:
        """Send one binary message (nothing happens once the connection is closing)."""
        if not self._closing:
            self._write(0x80 | _BINARY, data)

    def _write(self, first: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((first, n))
        elif n < 1 << 16:
            head = bytes((first, 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((first, 127)) + n.to_bytes(8, "big")
        # One write: one TLS record, one system call.
        self.transport.write(head + payload)

    def fail(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (a protocol error)."""
        if self._closing:
            return
        log.warning("closing a runner's websocket (%d): %s", code, reason)
        self.close(code, reason)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and close the connection."""
        if self._closing:
            return
        self._write(0x80 | _CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])
        self._close_transport()

    def _close_transport(self) -> None:
        self._closing = True
        if not self.transport.is_closing():
            self.transport.close()  # after what is buffered has been written

    def shutdown(self) -> None:
        """uvicorn's server is stopping (the manager asked runners to stop first)."""
        self.close(1012, "the manager is stopping")

    # -- the handshake --------------------------------------------------------------------

    def handshake(self, head: bytes) -> None:
        """Answer the upgrade request ``head`` (the request line and headers)."""
        try:
            target, headers = _parse_head(head)
            accept = _accept_key(headers)
            url = urlsplit(target)
            ticket = self.endpoint.admit(dict(parse_qsl(url.query)), headers)
        except Refusal as refusal:
            self._refuse(refusal)
            return
        self.transport.write(b"".join((
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: ", accept, b"\r\n",
            *_headers(self.server_state.default_headers), b"\r\n")))
        self.session = self.endpoint.open(ticket, self)

    def _refuse(self, refusal: Refusal) -> None:
        body = (refusal.message.rstrip("\n") + "\n").encode()
        status = HTTPStatus(refusal.status)
        self.transport.write(b"".join((
            f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode(),
            b"content-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\n",
            b"content-length: %d\r\nconnection: close\r\n" % len(body),
            *_headers((*self.server_state.default_headers, *refusal.headers)), b"\r\n",
            body)))
        self._close_transport()


def _headers(pairs: Any) -> list[bytes]:
    return [b"%s: %s\r\n" % (name, value) for name, value in pairs]


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The target and the headers (names in lower case, repeats joined by commas) of an
    upgrade request as uvicorn replays it; Refusal if it is not a websocket upgrade."""
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rpartition(" ")[0]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if method != "GET":
        raise Refusal(400, f"a websocket handshake is a GET, not {method}")
    if "websocket" not in _tokens(headers.get("upgrade", "")):
        raise Refusal(400, "a websocket handshake needs 'Upgrade: websocket'")
    if "upgrade" not in _tokens(headers.get("connection", "")):
        raise Refusal(400, "a websocket handshake needs 'Connection: Upgrade'")
    if headers.get("sec-websocket-version") != "13":
        raise Refusal(426, f"websocket version {headers.get('sec-websocket-version')!r} is "
                      "not supported; use 13", ((b"Sec-WebSocket-Version", b"13"),))
    return target, headers


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _accept_key(headers: Mapping[str, str]) -> bytes:
    key = headers.get("sec-websocket-key", "")
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise Refusal(400, f"Sec-WebSocket-Key {key!r} is not 16 bytes in base64")
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())


def switching(ws_class: type[Any], path: str, endpoint: Endpoint, max_size: int
              ) -> type[Any]:
    """The websocket protocol class to give uvicorn: upgrades to ``path`` are served by a
    `RunnerWire` for ``endpoint``, all others by ``ws_class`` (uvicorn's, through ASGI)."""

    wanted = path.encode()

    class Switch:
        """Made by uvicorn for each upgrade; decides who serves it on its first bytes."""

        def __init__(self, config: Any, server_state: Any, app_state: Any) -> None:
            self.args = (config, server_state, app_state)
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            config, server_state, app_state = self.args
            target = data.split(b" ", 2)[1] if data.count(b" ") >= 2 else b""
            if target.split(b"?", 1)[0] != wanted:
                proto = ws_class(config=config, server_state=server_state,
                                 app_state=app_state)
                proto.connection_made(self.transport)
                self.transport.set_protocol(proto)
                proto.data_received(data)
                return
            wire = RunnerWire(endpoint, gate=getattr(ws_class, "gate", None),
                              server_state=server_state, max_size=max_size)
            wire.connection_made(self.transport)
            self.transport.set_protocol(wire)
            wire.handshake(data)

        def connection_lost(self, exc: Exception | None) -> None:
            gate = getattr(ws_class, "gate", None)
            if gate is not None:
                gate.closed(self.transport)

    return Switch
