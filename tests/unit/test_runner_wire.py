"""The runner websocket below ASGI (wr.manager.runner_wire): handshake and RFC 6455 framing.

The wire is an asyncio protocol; here it is fed bytes directly and writes to a transport
that records them (a socket adds nothing to what is tested: the real connection, TLS and
uvicorn's hand-over are exercised by every runner test in tests/integration). Frames are
made with the websockets library's own client-side framing, so the wire is checked against
an independent implementation, not against itself.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

import pytest
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from wr.manager.runner_wire import Refusal, RunnerWire


class Transport:
    """Records what the wire writes and whether it closed the connection."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class ServerState:
    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.default_headers: list[tuple[bytes, bytes]] = [(b"server", b"test")]


class Endpoint:
    """Admits a handshake with the token "good" and an id; records messages."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.closed = 0

    def admit(self, query: Mapping[str, str], headers: Mapping[str, str]) -> Any:
        if headers.get("authorization") != "Bearer good":
            raise Refusal(401, "bad token")
        if not query.get("id"):
            raise Refusal(400, "id parameter is required")
        return query["id"]

    def open(self, ticket: Any, wire: RunnerWire) -> Any:
        endpoint = self

        class Session:
            def message(self, data: bytes) -> None:
                endpoint.messages.append(data)

            def closed(self) -> None:
                endpoint.closed += 1

        return Session()


def _head(key: str = "dGhlIHNhbXBsZSBub25jZQ==", *, path: str = "/runner_ws?id=r1",
          token: str = "good", version: str = "13") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()


def _wire(max_size: int = 1 << 20) -> tuple[RunnerWire, Transport, Endpoint]:
    endpoint, transport = Endpoint(), Transport()
    wire = RunnerWire(endpoint, gate=None, server_state=ServerState(), max_size=max_size)
    wire.connection_made(transport)
    return wire, transport, endpoint


def _open() -> tuple[RunnerWire, Transport, Endpoint]:
    wire, transport, endpoint = _wire()
    wire.handshake(_head())
    assert transport.out.startswith(b"HTTP/1.1 101 ")
    transport.out.clear()
    return wire, transport, endpoint


def _client_frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    """A frame as a client sends it: masked (websockets' own serialisation)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


def _server_frames(raw: bytes) -> list[Frame]:
    """Parse what the server wrote, as a client would (unmasked frames expected)."""
    reader = StreamReader()
    reader.feed_data(bytes(raw))
    reader.feed_eof()
    frames = []
    while True:  # all the data is there: each parse runs to its end without yielding
        try:
            next(Frame.parse(reader.read_exact, mask=False))
        except StopIteration as done:
            frames.append(done.value)
        except EOFError:
            return frames


def test_the_handshake_answers_rfc_6455s_accept_key() -> None:
    """Expected: the key of RFC 6455 §1.3's example gets its accept value."""
    wire, transport, _ = _wire()
    wire.handshake(_head())
    head = transport.out.decode()
    assert head.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert "server: test\r\n" in head and not transport.closed


@pytest.mark.parametrize(("head", "status", "words"), [
    (_head(token="bad"), 401, "bad token"),
    (_head(path="/runner_ws"), 400, "id parameter is required"),
    (_head(version="8"), 426, "websocket version '8' is not supported; use 13"),
    (_head(key="short"), 400, "Sec-WebSocket-Key 'short' is not 16 bytes in base64"),
    (_head().replace(b"GET", b"PUT", 1), 400, "a websocket handshake is a GET, not PUT"),
    (_head().replace(b"Upgrade: websocket", b"Upgrade: h2c"), 400, "'Upgrade: websocket'"),
])
def test_a_refused_handshake_gets_its_status_and_words(head: bytes, status: int,
                                                        words: str) -> None:
    wire, transport, endpoint = _wire()
    wire.handshake(head)
    answer = transport.out.decode()
    assert answer.startswith(f"HTTP/1.1 {status} ")
    assert words in answer.split("\r\n\r\n", 1)[1]
    assert transport.closed and wire.session is None


def test_messages_in_pieces_and_fragments_arrive_whole() -> None:
    """Steps: a binary message, a text message in three fragments with a ping between,
    and a 70,000-byte message, all fed one byte at a time, then in one piece.
    Expected: three whole messages each time, and a pong echoing the ping."""
    big = os.urandom(70_000)
    stream = b"".join((
        _client_frame(Opcode.BINARY, b'{"op":"reserve"}'),
        _client_frame(Opcode.TEXT, b"one ", fin=False),
        _client_frame(Opcode.CONT, b"two ", fin=False),
        _client_frame(Opcode.PING, b"are you there"),
        _client_frame(Opcode.CONT, b"three"),
        _client_frame(Opcode.BINARY, big),
    ))
    for piece in (1, len(stream)):
        wire, transport, endpoint = _open()
        for i in range(0, len(stream), piece):
            wire.data_received(stream[i:i + piece])
        assert endpoint.messages == [b'{"op":"reserve"}', b"one two three", big]
        [pong] = _server_frames(transport.out)
        assert (pong.opcode, pong.data) == (Opcode.PONG, b"are you there")


def test_an_answer_is_one_unmasked_binary_frame() -> None:
    wire, transport, _ = _open()
    for size in (3, 300, 70_000):
        wire.send_message(b"x" * size)
    frames = _server_frames(transport.out)
    assert [(f.opcode, len(f.data), f.fin) for f in frames] == [
        (Opcode.BINARY, 3, True), (Opcode.BINARY, 300, True), (Opcode.BINARY, 70_000, True)]


@pytest.mark.parametrize(("frame", "code"), [
    (Frame(Opcode.BINARY, b"x").serialize(mask=False), 1002),  # a client must mask
    (_client_frame(Opcode.CONT, b"x"), 1002),  # continues nothing
    (bytes([0x09]) + _client_frame(Opcode.PING, b"x")[1:], 1002),  # a ping without FIN
    (_client_frame(Opcode.BINARY, b"x" * 2000), 1009),  # over max_size (1,000 here)
])
def test_a_protocol_error_closes_with_its_code(frame: bytes, code: int) -> None:
    wire, transport, endpoint = _wire(max_size=1000)
    wire.handshake(_head())
    transport.out.clear()
    wire.data_received(frame)
    [close] = _server_frames(transport.out)
    assert close.opcode == Opcode.CLOSE and Close.parse(close.data).code == code
    assert transport.closed and endpoint.messages == []
    wire.data_received(_client_frame(Opcode.BINARY, b"late"))
    assert endpoint.messages == []


def test_a_close_is_echoed_and_the_session_told() -> None:
    wire, transport, endpoint = _open()
    wire.data_received(_client_frame(Opcode.CLOSE, Close(1000, "bye").serialize()))
    [close] = _server_frames(transport.out)
    assert Close.parse(close.data).code == 1000 and transport.closed
    wire.connection_lost(None)
    assert endpoint.closed == 1
    wire.send_message(b"after")  # nothing is written to a closed connection
    assert len(_server_frames(transport.out)) == 1


def test_any_key_of_16_bytes_in_base64_is_accepted() -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    wire, transport, _ = _wire()
    wire.handshake(_head(key))
    assert transport.out.startswith(b"HTTP/1.1 101 ")
