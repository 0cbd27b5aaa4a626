"""Hostile clients: oversized and malformed requests, path tricks, slow and half-open
connections, and secrets left lying around.

The body-level bad input of ``POST /rest/v1/jobs/`` (malformed UTF-8, deep nesting, huge
numbers, NUL bytes) is covered case by case in test_rest_bad_input.py; this module sends what
a well-behaved HTTP library would never send (raw bytes over TLS), attacks the other entry
points, and checks that while it happens other clients are served as fast as ever.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from tests.conftest import FAST_TIMINGS, ManagerHandle, _descendants_of_home, wait_for

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT = 2.0
"""The manager's ``clienttimeout`` in this module: how long a client may take to send a
request's headers, or pause in its body, before its connection is closed."""


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production", WR_MAXBODYSIZE="100000",
               WR_CLIENTTIMEOUT=f"{CLIENT_TIMEOUT:g}", **FAST_TIMINGS)
    handle = ManagerHandle(home=home, env=env)
    handle.start()
    yield handle
    handle.stop()
    # Whatever was thrown at it, nothing reached the catch-all handler.
    assert "unexpected error" not in handle.log(), handle.log()
    assert "Traceback" not in handle.log(), handle.log()
    leftovers = _descendants_of_home(home)
    for pid in leftovers:
        psutil.Process(pid).kill()
    assert not leftovers, f"processes left behind: {leftovers}\n{handle.log()}"


@pytest.fixture(scope="module")
def api(mgr: ManagerHandle) -> Iterator[httpx.Client]:
    with mgr.http(timeout=30) as c:
        yield c


# -- raw connections ------------------------------------------------------------------------

def tls(mgr: ManagerHandle, timeout: float = 10) -> ssl.SSLSocket:
    """An open TLS connection to the REST port, nothing sent yet."""
    raw = socket.create_connection(("127.0.0.1", mgr.web_port), timeout=timeout)
    return mgr.ssl_context().wrap_socket(raw, server_hostname="localhost")


def exchange(mgr: ManagerHandle, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """Send raw bytes as one request; return the status and body of the answer."""
    with contextlib.closing(tls(mgr, timeout)) as s:
        s.sendall(request)
        return read_response(s)


def read_response(s: ssl.SSLSocket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
    length = int(headers.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def request(method: str, target: str | bytes, token: str, body: bytes = b"",
            headers: bytes = b"") -> bytes:
    if isinstance(target, str):
        target = target.encode()
    return (method.encode() + b" " + target + b" HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n" + headers
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def is_closed(s: ssl.SSLSocket) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    s.settimeout(0.05)
    try:
        return s.recv(1) == b""
    except (TimeoutError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


# -- sizes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/rest/v1/jobs/"), ("PUT", "/rest/v1/upload/?path=~/huge"),
    ("POST", "/rest/v1/actions/remove"), ("POST", "/rest/v1/add/"),
])
def test_a_declared_huge_body_is_refused_before_it_is_sent(mgr: ManagerHandle, method: str,
                                                           path: str) -> None:
    """A Content-Length of 10 GB gets its 413 at once: the manager reads none of it."""
    head = (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
            f"{mgr.token}\r\nContent-Length: 10000000000\r\n\r\n").encode()
    started = time.monotonic()
    status, body = exchange(mgr, head + b"[" * 1000)
    assert status == 413, body
    assert b"over the limit" in body
    assert time.monotonic() - started < 5
    assert not (mgr.home / "huge").exists()


# -- bytes no library would send ------------------------------------------------------------

WEIRD_TARGETS = [
    "/rest/v1/jobs/%ff%fe", "/rest/v1/jobs/%00", "/rest/v1/jobs/?state=%ff",
    "/rest/v1/jobs/?limit=99999999999999999999999999", "/rest/v1/jobs/?limit=-1",
    "/rest/v1/jobs/?state=running%00", "/rest/v1/jobs/..%2f..%2fetc%2fpasswd",
    "/rest/v1/jobs/" + "a," * 20000, "/rest/v1/jobs/?search=true&rep_grp=" + "%ff" * 100,
    "/rest/v1/counts/%ff", "/rest/v1/summary/%00?state=%ff", "/rest/v1/details/%c0%80",
    "/rest/v1/limits/%ff", "/rest/v1/limits/%00", "/rest/v1/jobs/?" + "x=1&" * 5000,
]


@pytest.mark.parametrize("target", WEIRD_TARGETS, ids=range(len(WEIRD_TARGETS)))
def test_weird_bytes_in_the_target_get_an_answer_not_a_crash(mgr: ManagerHandle,
                                                             target: str) -> None:
    status, body = exchange(mgr, request("GET", target, mgr.token))
    assert status < 500, body


WEIRD_BODIES = {
    "invalid UTF-8": b'{"keys": ["\xff\xfe"]}',
    "NUL": b'{"keys": ["a\x00b"]}',
    "deep arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
    "huge number": b'{"limit": 1' + b"0" * 5000 + b"}",
    "huge exponent": b'{"keys": 1e999999}',
    "not an object": b"[1, 2, 3]",
    "UTF-16": '{"keys": []}'.encode("utf-16"),
}


@pytest.mark.parametrize("body", WEIRD_BODIES.values(), ids=list(WEIRD_BODIES))
@pytest.mark.parametrize("path", ["/rest/v1/actions/remove", "/rest/v1/actions/modify",
                                  "/rest/v1/add/", "/rest/v1/jobs/"])
def test_malformed_bodies_on_every_entry_point(mgr: ManagerHandle, api: httpx.Client,
                                               path: str, body: bytes) -> None:
    before = api.get("/rest/v1/jobs/").json()
    status, answer = exchange(mgr, request("POST", path, mgr.token, body))
    assert 400 <= status < 500, answer
    assert api.get("/rest/v1/jobs/").json() == before


@pytest.mark.parametrize("header", [
    b"X-Weird: \xff\xfe\r\n", b"Authorization2: \x00\r\n", b"X-Long: " + b"a" * 60_000 + b"\r\n",
])
def test_weird_headers(mgr: ManagerHandle, header: bytes) -> None:
    try:
        status, _ = exchange(mgr, request("GET", "/rest/v1/info/", mgr.token, headers=header))
    except (ConnectionError, OSError):
        status = 400  # refusing to parse it at all is a fine answer too
    assert status < 500


def test_a_bad_token_with_odd_bytes_is_just_unauthorised(mgr: ManagerHandle) -> None:
    for token in ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
                  "x" * 10_000, mgr.token + "\x00", mgr.token[:-1]):
        raw = request("GET", "/rest/v1/info/", "")
        raw = raw.replace(b"Bearer ", b"Bearer " + token.encode("latin-1"))
        status, _ = exchange(mgr, raw)
        assert status in (400, 401)  # a NUL in a header is refused before any check


# -- upload paths ---------------------------------------------------------------------------

def upload(api: httpx.Client, path: str, data: bytes = b"payload") -> httpx.Response:
    return api.put("/rest/v1/upload/", params={"path": path}, content=data)


@pytest.mark.parametrize("path", [
    "../escape", "relative/file", "./x", "~root/x", "~x", "a\x00b", "/tmp/a\x00b",
], ids=["dotdot", "relative", "dot", "other-home", "tilde-name", "nul", "abs-nul"])
def test_upload_refuses_paths_that_are_not_absolute(mgr: ManagerHandle, api: httpx.Client,
                                                    path: str) -> None:
    before = _tree(mgr.home)
    r = upload(api, path)
    assert r.status_code == 400, r.text
    assert _tree(mgr.home) == before


def test_upload_refuses_the_managers_own_files(mgr: ManagerHandle, api: httpx.Client,
                                               tmp_path: Path) -> None:
    """A token holder may write where the manager's user may (as in wr), but not over the
    manager's own state: its token, keys, db, log — however the path is spelled."""
    d = mgr.dir
    link = tmp_path / "sneaky"
    link.symlink_to(d)
    before = {p: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != "log"}
    for path in ("~/.wr_production/client.token", f"{d}/key.pem", f"{d}/db",
                 f"{d}/../{d.name}/db", f"{link}/client.token", f"{d}/new-file", f"{d}"):
        r = upload(api, path)
        assert r.status_code == 400, (path, r.text)
        assert "manager's directory" in r.text
    after = {p: p.read_bytes() for p in before}
    assert after == before
    assert not (d / "new-file").exists()
    assert api.get("/rest/v1/info/").status_code == 200  # the token still works


def test_upload_onto_a_directory_is_a_client_error(api: httpx.Client, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    r = upload(api, str(tmp_path / "dir"))
    assert r.status_code == 400, r.text
    assert (tmp_path / "dir").is_dir()
    (tmp_path / "dir" / "file").write_text("x")
    r = upload(api, str(tmp_path / "dir" / "file" / "below-a-file"))
    assert r.status_code == 400, r.text


def test_upload_through_dotdot_lands_where_it_resolves(api: httpx.Client,
                                                       tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    r = upload(api, f"{tmp_path}/a/../b")
    assert r.status_code == 200, r.text
    assert (tmp_path / "b").read_bytes() == b"payload"
    assert not (tmp_path / "a" / "b").exists()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.name not in ("log",) and "uploads" not in p.parts}


# -- slow, silent and half-open clients -----------------------------------------------------

def _timed_requests(api: httpx.Client, seconds: float) -> list[float]:
    """Latencies of ordinary requests made back to back for ``seconds``."""
    out = []
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        t0 = time.perf_counter()
        r = api.get("/rest/v1/info/")
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200
    return sorted(out)


def test_slow_and_silent_clients_neither_delay_others_nor_stay_forever(
        mgr: ManagerHandle, api: httpx.Client) -> None:
    """Steps: open 100 TLS connections that send nothing, 20 that send a request one byte
    every 0.2 s, 20 that send headers promising a body and then stop, and 20 TCP
    connections that never start TLS; meanwhile time ordinary requests.
    Expected: ordinary requests stay fast (well under 0.2 s each); every connection that
    stalls is closed by the manager within about ``clienttimeout`` seconds, so they cannot
    pile up; the manager still serves afterwards."""
    silent = [tls(mgr) for _ in range(100)]
    stalled = []
    for _ in range(20):
        s = tls(mgr)
        s.sendall(b"POST /rest/v1/jobs/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                  + mgr.token.encode() + b"\r\nContent-Length: 5000\r\n\r\n[{\"cmd\":")
        stalled.append(s)
    no_tls = [socket.create_connection(("127.0.0.1", mgr.web_port)) for _ in range(20)]
    dribblers = [tls(mgr) for _ in range(20)]
    stop = threading.Event()
    dribble_closed: set[int] = set()

    def dribble() -> None:
        payload = request("GET", "/rest/v1/info/", mgr.token)
        for i in range(len(payload)):
            if stop.is_set():
                return
            for n, s in enumerate(dribblers):
                if n in dribble_closed:
                    continue
                try:
                    s.sendall(payload[i:i + 1])
                except OSError:
                    dribble_closed.add(n)
            time.sleep(0.2)  # a byte every 0.2 s: the slow client's pace is the attack

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        latencies = _timed_requests(api, CLIENT_TIMEOUT + 1.5)
        wait_for(lambda: all(is_closed(s) for s in silent + stalled), timeout=10,
                 what="silent and stalled connections to be closed")
        wait_for(lambda: len(dribble_closed) == len(dribblers)
                 or all(is_closed(s) for s in dribblers), timeout=10,
                 what="byte-by-byte connections to be closed")
    finally:
        stop.set()
        thread.join()
        for s in silent + stalled + dribblers + no_tls:
            s.close()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"\n{len(latencies)} requests beside 160 stalled connections: p50 "
          f"{latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max "
          f"{latencies[-1] * 1000:.1f} ms")
    assert latencies[-1] < 0.2
    assert api.get("/rest/v1/info/").status_code == 200


def test_a_client_that_never_reads_its_answer_harms_nobody(mgr: ManagerHandle,
                                                           api: httpx.Client) -> None:
    """Ask for a large answer (a 90 KB body echoed back in an error, many times over a
    pipelined connection) and never read it: the manager's send buffer fills, and it stops
    writing to that client only."""
    with contextlib.closing(tls(mgr)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        one = request("GET", "/rest/v1/jobs/?limit=1", mgr.token)
        with contextlib.suppress(OSError):
            s.settimeout(2)
            for _ in range(2000):
                s.sendall(one)
        latencies = _timed_requests(api, 1.5)
    assert latencies[-1] < 0.2


def test_a_connection_reset_mid_body_harms_nobody(mgr: ManagerHandle, api: httpx.Client) -> None:
    before = api.get("/rest/v1/jobs/").json()
    for _ in range(20):
        s = tls(mgr)
        s.sendall(b"POST /rest/v1/jobs/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                  + mgr.token.encode() + b"\r\nContent-Length: 5000\r\n\r\n[{\"cmd\":\"echo")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        s.close()  # RST, not FIN
    assert api.get("/rest/v1/jobs/").json() == before
    assert _timed_requests(api, 0.5)[-1] < 0.2


# -- secrets --------------------------------------------------------------------------------

def test_every_file_holding_a_secret_is_private(mgr: ManagerHandle, api: httpx.Client,
                                                tmp_path: Path) -> None:
    """The token, the TLS key, the db (and its WAL), the automatic backup, a backup made
    on request and uploaded files are all mode 0600, whatever the manager's umask."""
    r = api.post("/rest/v1/jobs/", content=orjson.dumps([{"cmd": "echo secret-ish",
                                                          "limit_grps": ["hold:0"]}]))
    assert r.status_code == 201
    d = mgr.dir
    wait_for(lambda: (d / "db_bk").exists(), what="an automatic backup")
    copy = tmp_path / "copy.db"
    c = mgr.client()
    try:
        c.backup(str(copy))
    finally:
        c.close()
    uploaded = api.put("/rest/v1/upload/", content=b"secret data").json()["path"]
    placed = api.put("/rest/v1/upload/", params={"path": str(tmp_path / "placed")},
                     content=b"secret data").json()["path"]
    files = [d / "client.token", d / "key.pem", d / "db", d / "db_bk", copy, Path(uploaded),
             Path(placed)]
    files += [p for p in (d / "db-wal", d / "db-shm") if p.exists()]
    modes = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o600"}, modes
    # the on-request backup's temporary copy goes once it is sent
    wait_for(lambda: not any(p.name.startswith("wr_backup") for p in d.iterdir()),
             what="the backup's temporary copy to go")


def test_the_token_appears_in_no_log_and_no_command_line(mgr: ManagerHandle,
                                                         api: httpx.Client) -> None:
    """Use the token every way a client can (header, ?token=, a runner's websocket), get
    it wrong, make errors happen; then look for it in the log and in every process's
    arguments and environment."""
    token = mgr.token
    key = api.post("/rest/v1/jobs/", content=orjson.dumps([{"cmd": "sleep 0.5"}]),
                   params={"rep_grp": "tokentest"}).json()[0]["Key"]
    with mgr.http(token=False) as anon:
        assert anon.get("/rest/v1/info/", params={"token": token}).status_code == 200
        assert anon.get("/rest/v1/info/", params={"token": token + "x"}).status_code == 401
        assert anon.get("/rest/v1/jobs/", headers={"Authorization": f"Basic {token}"}
                        ).status_code == 401
        assert anon.get(f"/rest/v1/jobs/?token={token}&state=bogus").status_code == 400
    exchange(mgr, request("POST", f"/rest/v1/jobs/?token={token}", token, b"[" * 50_000))
    wait_for(lambda: api.get(f"/rest/v1/jobs/{key}").json()[0]["State"] == "complete",
             what="a job run by a runner")
    log = mgr.log()
    assert "wr manager started" in log
    assert token not in log
    for proc in psutil.process_iter(["cmdline", "environ"]):
        with contextlib.suppress(psutil.Error):
            assert token not in " ".join(proc.info["cmdline"] or [])
            assert token not in " ".join((proc.info["environ"] or {}).values())
