"""Connections that stall are closed: slow clients must not pile up (issue 6).

uvicorn closes a connection that idles *between* requests (its keep-alive timeout), but
nothing closes one that never finishes a request: a client that opens TLS and sends nothing,
sends its headers a byte at a time, or promises a body and stops. Each holds a socket and a
file descriptor for ever, and enough of them lock every other client out. Anyone who can
reach the port can do it: the token is only checked once the headers are in.

`guarded` gives uvicorn an HTTP protocol with one more timer, armed while the manager is
waiting for the *client*:

* from the moment the connection is up (after the TLS handshake, which `gate.py` also
  limits to ``clienttimeout``) or a request begins, until its headers are complete;
* while its body is arriving, reset by every piece of it (so a large upload that keeps
  moving is never cut off, however long it takes).

It is disarmed while the manager works on a request and after the answer (uvicorn's
keep-alive timeout takes over), and when the connection becomes a websocket (runners keep
theirs alive with their own messages). When it fires, the connection is closed.

When the manager runs behind a `gate.Gate` (issue 13: a cap on open connections), the
protocol also tells it what the connection is doing, so that the gate sheds idle and
unproven connections, never one whose request is being answered.

uvicorn's keep-alive timer (closing a connection idle between requests) starts when an
answer is handed to the transport, not when the client has it: clients still reading big
answers from a busy manager found their connections closed just as they sent their next
request ("Server disconnected without sending a response", issue 13). Here the idle time
counts from when the answer is out of the manager's hands: its transport's buffer has
drained (below its low-water mark).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on the client's part of each request."""

    client_timeout = 30.0
    """Seconds the client may take to send its headers, or pause in its body."""
    gate: Any = None
    """The `gate.Gate` counting this connection, if any."""

    _deadline: asyncio.TimerHandle | None = None
    _in_request = False
    _upgraded = False

    def _arm(self) -> None:
        self._disarm()
        if self._upgraded:  # the transport now belongs to a websocket: never time it out
            return
        self._deadline = self.loop.call_later(self.client_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm()  # we stopped reading (the app is behind), not the client
            return
        transport.close()

    def _awaiting_client(self) -> bool:
        """No request is being read or answered: the next move is the client's."""
        cycle = self.cycle
        return not self._in_request and (cycle is None or cycle.response_complete)

    # -- uvicorn's callbacks ---------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.gate is not None and not self.gate.up(self, transport):
            transport.abort()  # shed while its handshake finished, or the manager stopping
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.gate is not None:
            self.gate.closed(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Bytes that begin no request (blank lines) cancel uvicorn's keep-alive timer.
        if (self._deadline is None and self.timeout_keep_alive_task is None
                and self._awaiting_client() and not self.transport.is_closing()):
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_request = True
        self._arm()
        if self.gate is not None:
            self.gate.began(self.transport)

    def on_headers_complete(self) -> None:
        if self.gate is not None:
            self.gate.busy(self.transport)
        super().on_headers_complete()
        self._arm()  # now for the body; on_message_complete disarms it

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_request = False
        self._disarm()
        self._maybe_idle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if (self.gate is not None and self._awaiting_client() and not self._upgraded
                and not self.transport.is_closing()):
            self.gate.idle(self.transport)

    def resume_writing(self) -> None:
        super().resume_writing()
        # The transport's buffer has drained below its low mark: an answer that was
        # complete while the client was still reading it has only now left our hands.
        if self.timeout_keep_alive_task is not None and not self.transport.is_closing():
            self._keep_alive_from_now()

    def timeout_keep_alive_handler(self) -> None:
        transport = self.transport
        if not transport.is_closing() and transport.get_write_buffer_size() > 0:
            self._keep_alive_from_now()  # still sending the last answer
            return
        super().timeout_keep_alive_handler()

    def _keep_alive_from_now(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True
        self._disarm()
        self._in_request = False
        if self.gate is not None:
            self.gate.busy(self.transport)  # a websocket is never shed (runners hold one)
        super().handle_websocket_upgrade()


def guarded(client_timeout: float) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to give uvicorn (``http=``) for this ``clienttimeout``."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"client_timeout": client_timeout})
