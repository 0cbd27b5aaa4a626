"""The client's HTTP transport against a real local server (plain HTTP; TLS is covered by
every integration test, which go through it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wr.transport import Http, TransportError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, bytes, str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        _Handler.seen.append((self.command, self.path, body, self.headers["Authorization"]))
        payload = b"x" * 5000 if self.path.startswith("/big") else b'{"ok": true}'
        self.send_response(404 if self.path.endswith("/missing") else 200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if self.path.startswith("/bye"):
            self.close_connection = True

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.seen.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_requests_carry_query_body_and_headers_over_one_connection(server: str) -> None:
    http = Http(server + "/base/", headers={"Authorization": "Bearer t"})
    a = http.request("GET", "/rest/v1/jobs/", params={"rep_grp": "a b", "limit": "1"})
    conn = http._conn
    b = http.request("POST", "/rest/v1/add/", body=b"[1]")
    assert (a.status, a.content, b.status) == (200, b'{"ok": true}', 200)
    assert http._conn is conn  # kept alive
    assert _Handler.seen == [
        ("GET", "/base/rest/v1/jobs/?rep_grp=a+b&limit=1", b"", "Bearer t"),
        ("POST", "/base/rest/v1/add/", b"[1]", "Bearer t"),
    ]
    assert http.request("GET", "/missing").status == 404
    http.close()


def test_a_connection_the_server_closed_is_replaced(server: str) -> None:
    http = Http(server)
    assert http.request("GET", "/bye").status == 200
    assert http.request("GET", "/again").status == 200
    assert [p for _, p, _, _ in _Handler.seen] == ["/bye", "/again"]
    http.close()


def test_a_streamed_answer_is_read_in_pieces(server: str) -> None:
    http = Http(server)
    with http.stream("GET", "/big") as r:
        pieces = []
        while piece := r.read(1024):
            pieces.append(piece)
    assert len(pieces) == 5 and b"".join(pieces) == b"x" * 5000
    assert http.request("GET", "/after").status == 200
    http.close()


def test_an_unreachable_server_is_a_transport_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(TransportError):
            Http(f"http://127.0.0.1:{port}", timeout=2).request("GET", "/")


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http("ftp://example.org")
