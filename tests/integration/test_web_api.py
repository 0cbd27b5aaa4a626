"""The web page's JSON endpoints and live feed, over HTTPS and WSS against a real manager.

One manager serves the module; every test names its rep groups after itself, so tests
neither see nor disturb each other's jobs.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psutil
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import FAST_TIMINGS, ManagerHandle, _descendants_of_home, wait_for

pytestmark = pytest.mark.integration

STATES = ["delayed", "dependent", "ready", "running", "lost", "buried", "complete"]


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    # A short clienttimeout: a page's websocket must outlive the guard on slow requests.
    env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production", WR_CLIENTTIMEOUT="2", **FAST_TIMINGS)
    handle = ManagerHandle(home=home, env=env)
    handle.start("--max_cores", "2")
    yield handle
    handle.stop()
    leftovers = _descendants_of_home(home)
    for pid in leftovers:
        psutil.Process(pid).kill()
    assert not leftovers, f"processes left behind: {leftovers}\n{handle.log()}"


@pytest.fixture(scope="module")
def api(mgr: ManagerHandle) -> Iterator[httpx.Client]:
    with mgr.http() as c:
        yield c



def add(api: httpx.Client, jobs: list[dict[str, Any]], **params: str) -> list[dict[str, Any]]:
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(jobs), params=params)
    assert r.status_code == 201, r.text
    return r.json()


def web(api: httpx.Client, path: str, **params: Any) -> Any:
    r = api.get(f"/web/api/{path}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def row(api: httpx.Client, group: str) -> dict[str, int]:
    found = web(api, "search", q=group)["groups"].get(group)
    return dict(zip(STATES, found[:7], strict=True)) if found else {}


def live(mgr: ManagerHandle, token: str | None = None) -> ClientConnection:
    url = f"wss://localhost:{mgr.web_port}/web/live?token={token or mgr.token}"
    return connect(url, ssl=mgr.ssl_context(), open_timeout=10)


class Watcher:
    """Follows the feed like the page does: a snapshot, then merged updates."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.groups: dict[str, list[Any]] = {}
        self.messages: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []

    def read(self, timeout: float) -> None:
        msg = orjson.loads(self.ws.recv(timeout=timeout))
        self.messages.append(msg)
        if msg["t"] == "snapshot":
            assert msg["states"] == STATES
            self.groups = dict(msg["groups"])
            self.warnings = msg["warnings"]
        elif msg["t"] == "update":
            for name, value in msg["groups"].items():
                if value is None:
                    self.groups.pop(name, None)
                else:
                    self.groups[name] = value
            if "warnings" in msg:
                self.warnings = msg["warnings"]

    def until(self, condition: Any, timeout: float = 60, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; groups: {self.groups}")
            try:
                self.read(timeout=left)
            except TimeoutError:
                continue

    def counts(self, group: str) -> dict[str, int]:
        found = self.groups.get(group)
        return dict(zip(STATES, found[:7], strict=True)) if found else {}


# -- the page and its token -------------------------------------------------------------------

def test_page_needs_the_token(mgr: ManagerHandle) -> None:
    """Steps: fetch / without a token, with a wrong one, and with the right one; fetch a
    static file and the JSON without a token.
    Expected: 401 pages that say how to get the token; the page itself with the token;
    static files need none; the JSON refuses without it."""
    with mgr.http(token=False) as c:
        bare = c.get("/")
        assert bare.status_code == 401
        assert "client.token" in bare.text and "wr manager start" in bare.text
        wrong = c.get("/", params={"token": "nope"})
        assert wrong.status_code == 401
        assert "not this manager" in wrong.text
        page = c.get("/", params={"token": mgr.token})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/web/static/js/main.js">' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert c.get("/status.html", params={"token": mgr.token}).status_code == 200
        js = c.get("/web/static/js/main.js")
        assert js.status_code == 200
        assert "javascript" in js.headers["content-type"]
        assert c.get("/web/static/nothing-here.js").status_code == 404
        assert c.get("/web/api/info").status_code == 401
        assert c.get("/web/api/info", params={"token": "nope"}).status_code == 401


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No file of the page names another host: everything is served by the manager."""
    from wr.manager.web import STATIC

    for path in STATIC.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"(src|href)=\"(https?:)?//", text), path
            assert "cdn" not in text.lower(), path
            assert not re.search(r"import .* from \"https?:", text), path


def test_live_feed_refuses_without_the_token(mgr: ManagerHandle) -> None:
    for token in ("", "wrong"):
        url = f"wss://localhost:{mgr.web_port}/web/live?token={token}"
        with pytest.raises(InvalidStatus) as failed:
            connect(url, ssl=mgr.ssl_context(), open_timeout=10)
        # The route table's guard answers the handshake as it answers HTTP (issue 14).
        assert failed.value.response.status_code == 401
        assert failed.value.response.body == (
            b"Invalid token\n" if token else b"Authorization header required\n")


# -- the live feed ----------------------------------------------------------------------------

def test_snapshot_then_live_counts(mgr: ManagerHandle, api: httpx.Client, tag: str) -> None:
    """Steps: connect; add 300 quick jobs and 2 failing ones over REST.
    Expected: a snapshot first, then updates that end with 300 complete and 2 buried in the
    group, totals right, and far fewer messages than state changes (coalescing)."""
    with live(mgr) as ws:
        w = Watcher(ws)
        w.read(timeout=30)
        assert w.messages[0]["t"] == "snapshot"
        assert w.messages[0]["manager"]["Mode"] == "started"
        add(api, [{"cmd": f"true # {tag} {i}"} for i in range(300)]
            + [{"cmd": f"exit 2 # {tag} {i}", "retries": 0} for i in range(2)], rep_grp=tag)
        w.until(lambda: w.counts(tag).get("complete") == 300
                and w.counts(tag).get("buried") == 2, what="300 complete, 2 buried")
        counts = w.counts(tag)
        assert sum(counts.values()) == 302
        # 302 jobs make over 1,200 state changes; the feed sends a few messages a second.
        updates = [m for m in w.messages if m["t"] == "update"]
        assert len(updates) < 200
        assert all(set(m) <= {"t", "groups", "warnings", "manager", "time"} for m in updates)
    assert row(api, tag) == counts


def test_a_quiet_page_stays_connected(mgr: ManagerHandle, api: httpx.Client,
                                      tag: str) -> None:
    """A page that has heard nothing for longer than clienttimeout (2 s here) is still
    connected and gets the next change. The proof that clienttimeout has passed: a
    connection opened after the page last heard anything, which says nothing, is closed
    for it."""
    with live(mgr) as ws:
        w = Watcher(ws)
        w.read(timeout=30)
        with (socket.create_connection(("localhost", mgr.web_port), timeout=30) as silent,
              contextlib.suppress(ConnectionResetError)):  # closed either way
            assert silent.recv(1) == b""
        add(api, [{"cmd": f"true # {tag}"}], rep_grp=tag)
        w.until(lambda: w.counts(tag).get("complete") == 1, timeout=30, what="the change")


def test_a_second_page_gets_the_same_counts(mgr: ManagerHandle, api: httpx.Client,
                                            tag: str) -> None:
    add(api, [{"cmd": f"true # {tag} {i}"} for i in range(20)], rep_grp=tag)
    with live(mgr) as ws:
        w = Watcher(ws)
        w.until(lambda: w.counts(tag).get("complete") == 20, what="20 complete")
    with live(mgr) as ws2:
        w2 = Watcher(ws2)
        w2.read(timeout=30)
        assert w2.counts(tag) == {**dict.fromkeys(STATES, 0), "complete": 20}


def test_removed_group_leaves_the_feed(mgr: ManagerHandle, api: httpx.Client,
                                       tag: str) -> None:
    """A group whose jobs were all removed (none complete) is reported gone (null)."""
    r = api.put(f"/rest/v1/limits/{tag}", params={"limit": "0"})
    assert r.status_code == 200, r.text
    add(api, [{"cmd": f"true # {tag} {i}", "limit_grps": [tag]} for i in range(5)],
        rep_grp=tag)
    with live(mgr) as ws:
        w = Watcher(ws)
        w.until(lambda: w.counts(tag).get("ready") == 5, what="5 ready")
        r = api.post("/web/api/action", content=orjson.dumps(
            {"action": "remove", "group": tag, "state": "ready"}))
        assert r.status_code == 200, r.text
        assert r.json()["Affected"] == 5
        w.until(lambda: tag not in w.groups, what="the group to go")
        gone = [m for m in w.messages if m["t"] == "update" and tag in m["groups"]]
        assert gone[-1]["groups"][tag] is None


# -- search, drill-down, paging -----------------------------------------------------------------

def test_search_includes_history(mgr: ManagerHandle, api: httpx.Client, tag: str) -> None:
    add(api, [{"cmd": f"true # {tag} {i}"} for i in range(3)], rep_grp=f"{tag}-old")
    wait_for(lambda: row(api, f"{tag}-old").get("complete") == 3, what="3 complete")
    add(api, [{"cmd": f"sleep 20 # {tag}"}], rep_grp=f"{tag}-new")
    found = web(api, "search", q=tag)
    assert set(found["groups"]) == {f"{tag}-old", f"{tag}-new"}
    assert found["total"] == 2
    old = dict(zip(STATES, found["groups"][f"{tag}-old"][:7], strict=True))
    assert old["complete"] == 3 and sum(old.values()) == 3
    assert web(api, "search", q=tag, limit=1)["total"] == 2
    assert len(web(api, "search", q=tag, limit=1)["groups"]) == 1
    assert web(api, "search", q=f"{tag}-none")["groups"] == {}
    r = api.post("/web/api/action", content=orjson.dumps(
        {"action": "kill", "group": f"{tag}-new"}))
    assert r.status_code == 200, r.text


def test_drill_down_classes_output_and_paging(mgr: ManagerHandle, api: httpx.Client,
                                              tag: str) -> None:
    """Steps: 12 jobs fail with exit 3 (output on stdout and stderr), 2 with exit 4, and 7
    succeed; read the group, then page through the exit-3 class and the complete class.
    Expected: classes by state, exit code and fail reason, largest problem first; each job
    with its command, requirements, host, pid, times and its stdout/stderr; pages that add
    up to every job exactly once."""
    add(api, [{"cmd": f"echo out{i}; echo err{i} >&2; exit 3 # {tag}", "retries": 0}
              for i in range(12)]
        + [{"cmd": f"exit 4 # {tag} {i}", "retries": 0} for i in range(2)]
        + [{"cmd": f"true # {tag} {i}", "memory": "50M"} for i in range(7)], rep_grp=tag)
    wait_for(lambda: row(api, tag).get("buried") == 14 and row(api, tag).get("complete") == 7,
             what="14 buried and 7 complete")
    g = web(api, "group", group=tag, per_class=2)
    assert g["name"] == tag and g["states"] == STATES
    assert dict(zip(STATES, g["row"][:7], strict=True))["buried"] == 14
    classes = [(c["state"], c["exitcode"], c["reason"], c["count"]) for c in g["classes"]]
    assert classes == [("buried", 3, "command exited non-zero", 12),
                       ("buried", 4, "command exited non-zero", 2),
                       ("complete", 0, "", 7)]
    job = g["classes"][0]["jobs"][0]
    assert len(g["classes"][0]["jobs"]) == 2
    n = re.search(r"echo out(\d+)", job["Cmd"]).group(1)
    assert job["StdOut"].strip() == f"out{n}" and job["StdErr"].strip() == f"err{n}"
    for field in ("Cwd", "CwdBase", "ExpectedRAM", "ExpectedTime", "Cores", "Host", "Pid",
                  "Started", "Ended", "PeakRAM", "Exitcode", "FailReason", "Walltime"):
        assert field in job
    assert job["Host"] and job["Pid"] > 0 and job["Exitcode"] == 3
    seen: list[str] = []
    for offset in range(0, 12, 5):
        page = web(api, "jobs", group=tag, state="buried", exitcode=3,
                   reason="command exited non-zero", offset=offset, limit=5)
        assert page["total"] == 12 and page["offset"] == offset
        assert all(j["StdOut"].startswith("out") for j in page["jobs"])
        seen += [j["Key"] for j in page["jobs"]]
    assert len(seen) == len(set(seen)) == 12
    done = [j["Key"] for off in (0, 4)
            for j in web(api, "jobs", group=tag, state="complete", offset=off,
                         limit=4)["jobs"]]
    assert len(set(done)) == 7
    assert web(api, "jobs", group=tag, state="complete", limit=4)["total"] == 7


def test_actions_retry_and_kill(mgr: ManagerHandle, api: httpx.Client, tag: str) -> None:
    """Retry a class of buried jobs and kill a running job through the page's endpoint;
    the feed shows each result."""
    add(api, [{"cmd": f"exit 5 # {tag} {i}", "retries": 0} for i in range(3)], rep_grp=tag)
    add(api, [{"cmd": f"sleep 60 # {tag}", "retries": 0}], rep_grp=f"{tag}-run")
    with live(mgr) as ws:
        w = Watcher(ws)
        w.until(lambda: w.counts(tag).get("buried") == 3
                and w.counts(f"{tag}-run").get("running") == 1, what="3 buried, 1 running")
        before = len(w.messages)
        r = api.post("/web/api/action", content=orjson.dumps(
            {"action": "retry", "group": tag, "state": "buried", "exitcode": 5,
             "reason": "command exited non-zero"}))
        assert r.status_code == 200, r.text
        assert r.json()["Affected"] == 3
        # They run again and are buried again, with a second attempt.
        w.until(lambda: len(w.messages) > before and w.counts(tag).get("buried") == 3
                and any(m["t"] == "update" and tag in m["groups"]
                        for m in w.messages[before:]), what="the retry to show")
        wait_for(lambda: all(j["Attempts"] == 2 for j in api.get(
            f"/rest/v1/jobs/{tag}").json()), what="second attempts")
        key = web(api, "group", group=f"{tag}-run")["classes"][0]["jobs"][0]["Key"]
        r = api.post("/web/api/action", content=orjson.dumps(
            {"action": "kill", "keys": [key]}))
        assert r.json()["Affected"] == 1
        w.until(lambda: w.counts(f"{tag}-run").get("buried") == 1, what="the kill to show")
    killed = web(api, "group", group=f"{tag}-run")["classes"][0]
    assert killed["state"] == "buried"
    assert killed["reason"] == "killed by user request"


def test_bad_input_is_a_clear_400(api: httpx.Client) -> None:
    for path, params, says in [
        ("group", {}, "group parameter is required"),
        ("jobs", {"group": "x"}, "state parameter is required"),
        ("jobs", {"group": "x", "state": "nap"}, 'unknown state "nap"'),
        ("jobs", {"group": "x", "state": "buried", "limit": "lots"}, "limit must be"),
        ("jobs", {"group": "x", "state": "buried", "limit": "0"}, "limit must be from 1"),
        ("usage", {}, "group parameter is required"),
        ("throughput", {"window": "1"}, "window must be from 60"),
    ]:
        r = api.get(f"/web/api/{path}", params=params)
        assert r.status_code == 400, (path, params, r.text)
        assert says in r.text, r.text
    for body, says in [
        (b"[1]", "JSON object"),
        (b"{", "JSON object"),
        (orjson.dumps({"action": "explode", "keys": []}), "is not one of"),
        (orjson.dumps({"action": "retry"}), "give keys, or a group"),
        (orjson.dumps({"action": "retry", "group": "x", "exitcode": "1"}), "exitcode must"),
        (orjson.dumps({"action": "retry", "keys": "abc"}), "keys must be an array"),
    ]:
        r = api.post("/web/api/action", content=body)
        assert r.status_code == 400, (body, r.text)
        assert says in r.text, r.text


# -- pictures -----------------------------------------------------------------------------------

def test_usage_and_throughput(mgr: ManagerHandle, api: httpx.Client, tag: str) -> None:
    add(api, [{"cmd": f"sleep 0.2 # {tag} {i}", "memory": "300M", "time": "2m"}
              for i in range(6)], rep_grp=tag)
    wait_for(lambda: row(api, tag).get("complete") == 6, what="6 complete")
    usage = web(api, "usage", group=tag)
    assert usage["count"] == 6 and len(usage["points"]) == 6
    assert usage["columns"] == ["PeakRAM", "ExpectedRAM", "Walltime", "ExpectedTime",
                                "CPUtime"]
    for peak, ram, wall, asked, _cpu in usage["points"]:
        assert ram == 300 and asked == 120
        assert 0.15 <= wall < 30 and 0 <= peak < 300
    tp = web(api, "throughput", group=tag, window=3600, bucket=60)
    assert tp["bucket"] == 60 and tp["since"] <= tp["now"] - 3600
    assert sum(n for _, n in tp["points"]) == 6
    everything = web(api, "throughput")
    assert sum(n for _, n in everything["points"]) >= 6


# -- warnings -----------------------------------------------------------------------------------

def test_warnings_stay_on_the_page_until_dismissed(mgr: ManagerHandle, api: httpx.Client,
                                                   tag: str) -> None:
    """Steps: add a job no machine can run (a scheduler warning); read GET
    /rest/v1/warnings/ (which clears the REST copy); dismiss it on the page.
    Expected: the feed shows the warning, still after the REST read, and not after the
    dismissal."""
    # override 2: what was learned about "true" from other tests must not replace 500T.
    add(api, [{"cmd": f"true # {tag}", "memory": "500T", "override": 2}], rep_grp=tag)
    with live(mgr) as ws:
        w = Watcher(ws)
        w.until(lambda: any("memory" in x["Msg"] for x in w.warnings), what="the warning")
        msg = w.warnings[0]["Msg"]
        assert api.get("/rest/v1/warnings/").status_code == 200
        assert api.get("/rest/v1/warnings/").json() == []
    with live(mgr) as ws:
        w = Watcher(ws)
        w.read(timeout=30)
        assert msg in [x["Msg"] for x in w.warnings]
        r = api.post("/web/api/dismiss", content=orjson.dumps({"msg": msg}))
        assert r.status_code == 200, r.text
        w.until(lambda: msg not in [x["Msg"] for x in w.warnings], what="dismissal")
    r = api.post("/web/api/dismiss", content=b"{}")
    assert r.json() == {"Warnings": 0}


# -- docs ---------------------------------------------------------------------------------------

def test_every_web_endpoint_is_documented() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "web.md").read_text()
    from wr.manager.routes import ROUTES

    for path in (path for entry in ROUTES for path in entry.paths):
        if path.startswith("/web/api/"):
            name = path.removeprefix("/web/api/")
            assert re.search(rf"`(GET|POST) {name}\b", text), path
    assert "/web/live" in text
