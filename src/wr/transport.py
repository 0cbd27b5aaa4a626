"""A small keep-alive HTTP(S) client on the standard library, for `wr.client.Client`.

Every ``wr`` command is a short process that makes one or a few requests, so its start-up
time is most of what a user waits for. httpx took 60 ms of imports (its own command line,
rich and click among them); ``http.client`` takes 10. One connection is kept open between
requests, and a request that finds it closed by the manager (an idle keep-alive timeout)
is sent again once on a new one, which is safe because the failure came before any byte
of an answer.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlencode, urlsplit

_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
          ConnectionAbortedError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
"""What a keep-alive connection the server already closed fails with (over TLS, a close
without its close-notify is an SSLEOFError)."""

TransportError = (OSError, http.client.HTTPException)
"""Failures to reach the server or to read its answer (timeouts are OSErrors)."""


class Answer:
    """A status, its reason phrase, and the body."""

    __slots__ = ("status", "reason", "content")

    def __init__(self, status: int, reason: str, content: bytes) -> None:
        self.status = status
        self.reason = reason
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Http:
    """Requests to one base URL (``https://host:port`` or ``http://...``)."""

    def __init__(self, base_url: str, *, context: ssl.SSLContext | None = None,
                 timeout: float = 120.0, headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._context = context if context is not None or not self._https \
            else ssl.create_default_context()
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                               context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        url = self._prefix + path
        return f"{url}?{urlencode(params)}" if params else url

    @contextmanager
    def _response(self, method: str, path: str, params: Mapping[str, str] | None,
                  body: bytes | None) -> Iterator[http.client.HTTPResponse]:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = self._url(path, params)
        reused = self._conn is not None
        while True:
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(method, url, body=body, headers=headers)
                response = self._conn.getresponse()
            except _STALE:
                self.close()
                if not reused:
                    raise
                reused = False  # once, on a fresh connection
                continue
            except BaseException:
                self.close()
                raise
            break
        try:
            yield response
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                body: bytes | None = None) -> Answer:
        with self._response(method, path, params, body) as r:
            return Answer(r.status, r.reason, r.read())

    @contextmanager
    def stream(self, method: str, path: str) -> Iterator[http.client.HTTPResponse]:
        """The response before its body is read (read it in pieces with ``read(n)``)."""
        with self._response(method, path, None, None) as r:
            yield r
            r.read()  # whatever is left, so the connection can be used again

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
