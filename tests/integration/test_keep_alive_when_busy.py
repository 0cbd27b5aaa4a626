"""A kept-alive connection is not closed under a client that is still reading its answer,
or whose next request came while the server's loop was busy.

The flood test of test_runner_reports.py once saw ``Server disconnected without sending a
response`` (issue 13). uvicorn arms its keep-alive timer (5 s) when it hands an answer to
the transport, not when the client has it: 16 clients listing tens of thousands of jobs
each, from one busy Python process, took longer than that to read their answers, so the
server closed connections (after sending what it held) just as their clients finished
reading and sent the next request.

Here the real uvicorn, with the manager's own HTTP protocol (`wr.manager.guard`) on uvloop,
serves a small app in a thread: one route answers 32 MB, another holds the loop for
longer than the keep-alive timeout, as a huge request did. No manager is involved: nothing
in the manager can now hold its loop that long on purpose (the point of issue 13), and a
0.5 s keep-alive timeout keeps these tests short.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

KEEP_ALIVE = 0.5
"""The server's keep-alive timeout in seconds (uvicorn's default is 5)."""
HOLD = 2.0
"""Seconds the /hold route keeps the event loop busy: well past the keep-alive timeout."""
BIG = 32 << 20
"""Bytes the /big route answers: far more than the kernel's socket buffers hold."""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/hold":
        holding.set()
        time.sleep(HOLD)  # holds the event loop, as a huge request did
    body = b"x" * BIG if scope["path"] == "/big" else b"ok"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


holding = threading.Event()


@pytest.fixture
def server() -> Iterator[int]:
    import uvicorn

    from wr.manager.guard import guarded

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=guarded(30.0), loop="uvloop", lifespan="off",
                            log_config=None, access_log=False,
                            timeout_keep_alive=KEEP_ALIVE)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    return response.read()


@pytest.mark.parametrize("delay", [0.05, KEEP_ALIVE * 0.8])
def test_a_request_sent_while_the_loop_is_busy_is_answered(server: int, delay: float) -> None:
    """Steps: client A gets /ok on a kept-alive connection; client B asks /hold, which
    holds the server's loop for 2 s; ``delay`` seconds after A's answer (inside the 0.5 s
    keep-alive timeout, before the loop is free), A sends its next request on the same
    connection.
    Expected: A's request is answered: the keep-alive timer, overdue once the loop is
    free, must not close the connection before the request that came meanwhile is read
    (uvloop polls the sockets before it runs overdue timers; a server that counted busy
    time as idle time would fail here)."""
    holding.clear()
    a = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    b = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    try:
        assert get(a, "/ok") == b"ok"
        answered = time.monotonic()
        held = threading.Thread(target=get, args=(b, "/hold"))
        held.start()
        assert holding.wait(10), "the /hold request did not start"
        time.sleep(max(0.0, answered + delay - time.monotonic()))
        assert time.monotonic() - answered < KEEP_ALIVE
        assert get(a, "/ok") == b"ok"
        held.join(30)
    finally:
        a.close()
        b.close()


def test_a_client_still_reading_its_answer_keeps_its_connection(server: int) -> None:
    """Steps: get /big (32 MB) on a kept-alive connection, reading the first half slowly
    (1 MB every 0.1 s: 1.6 s, three keep-alive timeouts) and the rest at full speed; then
    at once get /ok on the same connection.
    Expected: /ok is answered: the keep-alive timeout counts from when the server had
    handed its answer to the kernel, not from when it began sending it."""
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    try:
        conn.request("GET", "/big")
        response = conn.getresponse()
        got = 0
        while got < BIG // 2:
            got += len(response.read(1 << 20))
            time.sleep(0.1)
        got += len(response.read())
        assert got == BIG
        assert get(conn, "/ok") == b"ok"
    finally:
        conn.close()


def test_an_idle_kept_alive_connection_is_still_closed(server: int) -> None:
    """Steps: get /ok on a kept-alive connection, then send nothing for three keep-alive
    timeouts (the loop is free all along). Expected: the server closed the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    try:
        assert get(conn, "/ok") == b"ok"
        sock = conn.sock
        time.sleep(KEEP_ALIVE * 3)
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed by the server
    finally:
        conn.close()
