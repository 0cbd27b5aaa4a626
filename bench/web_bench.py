"""Does the web page stay responsive with 1,000 rep groups and 100,000 jobs? (issue 4)

First, in this process: what one recount of N queued jobs costs the manager's event loop.
Then, against a real manager in a temporary HOME:

1. Hold jobs back with a limit group of 0, then add N jobs (default 100,000) in G rep groups
   (default 1,000) in one POST.
2. Live feed: connect a websocket; time to the snapshot and its size.
3. The page in Debian's chromium (skipped if /usr/bin/chromium is missing): time until
   1,000 groups are drawn; the longest main-thread stall (a 20 ms probe).
4. Storm: lift the limit for S seconds (default 30) so jobs complete as fast as this machine
   runs them; count feed messages and bytes a second, the page's time handling them, and
   the page's longest stall.
5. Burst: remove every remaining job in one request (one event per job, far more than the
   event hub buffers, so the feed must start over); time until the feed and the page show
   an empty queue.
6. JSON: time a search matching every group, and a drill-down of one group.

Usage: ``python bench/web_bench.py [N] [G] [S]``. Prints one line per figure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.sync.client import connect

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PROBE = """() => {
  window.benchLag = 0;
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    window.benchLag = Math.max(window.benchLag, now - last - 20);
    last = now;
  }, 20);
}"""


class Feed(threading.Thread):
    """Reads the live feed in the background, keeping the page's view of the counts."""

    def __init__(self, ws: Any, t0: float) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        first = self.ws.recv(timeout=120)
        self.snapshot_s = time.perf_counter() - t0
        self.snapshot_bytes = len(first)
        msg = orjson.loads(first)
        self.groups: dict[str, list[Any]] = msg["groups"]
        self.log: list[tuple[float, int, str]] = []
        self.lock = threading.Lock()
        self.stop = False
        self.error: Exception | None = None

    def run(self) -> None:
        while not self.stop:
            try:
                raw = self.ws.recv(timeout=0.5)
            except TimeoutError:
                continue
            except Exception as exc:
                self.error = exc
                return
            msg = orjson.loads(raw)
            with self.lock:
                self.log.append((time.perf_counter(), len(raw), msg["t"]))
                if msg["t"] == "snapshot":
                    self.groups = msg["groups"]
                elif msg["t"] == "update":
                    for name, row in msg["groups"].items():
                        if row is None:
                            self.groups.pop(name, None)
                        else:
                            self.groups[name] = row

    def incomplete(self) -> int:
        with self.lock:
            return sum(sum(row[:6]) for row in self.groups.values())


def free_ports() -> tuple[int, int]:
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports[0], ports[1]


def recount_cost(n: int, groups: int) -> None:
    """What one recount costs the manager's event loop (in this process, same code)."""
    from types import SimpleNamespace

    from wr.jobs import Job
    from wr.manager.web_live import Overview
    from wr.queue import Queue

    q = Queue()
    q.add([Job(key=f"k{i}", cmd=f"true # {i}", rep_grp=f"bench/group{i % groups:04d}")
           for i in range(n)], 0.0)
    overview = Overview(SimpleNamespace(queue=q))  # type: ignore[arg-type]
    t0 = time.perf_counter()
    overview._count(None)
    every = time.perf_counter() - t0
    t0 = time.perf_counter()
    overview._count([f"bench/group{i:04d}" for i in range(10)])
    ten = time.perf_counter() - t0
    print(f"recount: all {n:,} queued jobs {every * 1000:.0f} ms; 10 groups of "
          f"{n // groups} {ten * 1000:.2f} ms (on the manager's event loop)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    groups = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    storm = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    recount_cost(n, groups)
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
        port, web = free_ports()
        env.update(HOME=home, WR_MANAGERPORT=str(port), WR_MANAGERWEB=str(web),
                   WR_DEPLOYMENT="development", WR_RUNNERIDLETIMEOUT="2")
        wr = [sys.executable, "-m", "wr.cli.main"]
        subprocess.run([*wr, "manager", "start"], env=env, check=True, capture_output=True)
        try:
            run(Path(home) / ".wr_development", web, n, groups, storm)
        except BaseException:
            log = Path(home) / ".wr_development" / "log"
            print(log.read_text()[-5000:] if log.exists() else "(no log)")
            raise
        finally:
            subprocess.run([*wr, "manager", "stop"], env=env, capture_output=True)


def run(mdir: Path, web: int, n: int, groups: int, storm: float) -> None:
    import ssl

    token = (mdir / "client.token").read_text().strip()
    ctx = ssl.create_default_context(cafile=str(mdir / "ca.pem"))
    base = f"https://localhost:{web}"
    api = httpx.Client(base_url=base, verify=ctx, trust_env=False, timeout=600,
                       headers={"Authorization": f"Bearer {token}"})
    api.put("/rest/v1/limits/bench-hold", params={"limit": "0"}).raise_for_status()
    jobs = [{"cmd": f"true # web bench {i}", "rep_grp": f"bench/group{i % groups:04d}",
             "limit_grps": ["bench-hold"]} for i in range(n)]
    t0 = time.perf_counter()
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(jobs))
    r.raise_for_status()
    print(f"setup: added {n:,} jobs in {groups:,} rep groups in "
          f"{time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    with connect(f"wss://localhost:{web}/web/live?token={token}", ssl=ctx, open_timeout=30,
                 max_size=None) as ws:
        watch(Feed(ws, t0), api, base, token, groups, storm)


def watch(feed: Feed, api: httpx.Client, base: str, token: str, groups: int,
          storm: float) -> None:
    print(f"snapshot: {feed.snapshot_bytes / 1024:.0f} KiB for {len(feed.groups):,} groups, "
          f"first byte to last in {feed.snapshot_s * 1000:.0f} ms after connecting")
    feed.start()

    browser = page = pw = None
    if CHROMIUM.exists():
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_context(ignore_https_errors=True, bypass_csp=True,
                                   viewport={"width": 1280, "height": 900}).new_page()
        t0 = time.perf_counter()
        page.goto(f"{base}/?token={token}")
        page.wait_for_function("window.wrStats && window.wrStats.renders > 0 && "
                               "document.querySelectorAll('#group-list li').length > 0",
                               timeout=120_000)
        took = time.perf_counter() - t0
        page.evaluate(PROBE)
        s = page.evaluate("window.wrStats")
        shown = page.evaluate("document.querySelectorAll('#group-list li').length")
        print(f"page: loaded and drawn in {took * 1000:.0f} ms ({shown} of {groups:,} groups "
              f"drawn, 'show all' for the rest); first render {s['maxRenderMs']:.0f} ms")
        page.click("#more-groups")
        page.wait_for_function(f"document.querySelectorAll('#group-list li').length >= "
                               f"{groups}")
        s2 = page.evaluate("window.wrStats")
        print(f"page: all {groups:,} groups drawn; longest render {s2['maxRenderMs']:.0f} ms")
    else:
        print("page: skipped (no /usr/bin/chromium)")

    # Storm: let jobs run.
    with feed.lock:
        start_log = len(feed.log)
    if page is not None:
        page.evaluate("window.benchLag = 0; window.wrStats.handlerMs = 0; "
                      "window.wrStats.renderMs = 0; window.wrStats.maxRenderMs = 0; "
                      "window.wrStats.updates = 0")
    before = feed.incomplete()
    t0 = time.perf_counter()
    api.delete("/rest/v1/limits/bench-hold").raise_for_status()
    time.sleep(storm)
    api.put("/rest/v1/limits/bench-hold", params={"limit": "0"}).raise_for_status()
    elapsed = time.perf_counter() - t0
    time.sleep(1.5)
    done = before - feed.incomplete()
    with feed.lock:
        msgs = feed.log[start_log:]
    size = sum(b for _, b, _ in msgs)
    print(f"storm: {done:,} jobs completed in {elapsed:.0f} s ({done / elapsed:,.0f}/s, "
          f"~{done * 4:,} state changes); feed sent {len(msgs)} messages "
          f"({len(msgs) / elapsed:.1f}/s, {size / elapsed / 1024:.1f} KiB/s, largest "
          f"{max((b for _, b, _ in msgs), default=0) / 1024:.1f} KiB)")
    if page is not None:
        s = page.evaluate("window.wrStats")
        lag = page.evaluate("window.benchLag")
        print(f"storm: page handled {s['updates']} updates in {s['handlerMs']:.0f} ms, "
              f"rendered in {s['renderMs']:.0f} ms (longest {s['maxRenderMs']:.0f} ms); "
              f"longest main-thread stall {lag:.0f} ms")

    # Burst: remove everything left in one request.
    left = feed.incomplete()
    t0 = time.perf_counter()
    r = api.post("/rest/v1/actions/remove", content=orjson.dumps({"all": True}))
    r.raise_for_status()
    removed = r.json()["Affected"]
    answered = time.perf_counter() - t0
    deadline = time.monotonic() + 120
    while feed.incomplete() and time.monotonic() < deadline:
        time.sleep(0.02)
    feed_s = time.perf_counter() - t0
    if feed.incomplete():
        raise SystemExit(f"the feed still shows {feed.incomplete()} queued jobs; alive: "
                         f"{feed.is_alive()} ({feed.error!r})")
    page_s = None
    if page is not None:
        page.wait_for_function("document.querySelector('#legend').textContent"
                               ".includes('pending 0')", timeout=120_000)
        page_s = time.perf_counter() - t0
    with feed.lock:
        snapshots = sum(1 for _, _, t in feed.log if t == "snapshot")
    print(f"burst: removed {removed:,} of {left:,} queued jobs in one request "
          f"(answered in {answered:.2f} s); feed empty after {feed_s:.2f} s "
          f"({snapshots} resync snapshot(s)); page after "
          + (f"{page_s:.2f} s" if page_s is not None else "-"))

    t0 = time.perf_counter()
    found = api.get("/web/api/search", params={"q": "bench/", "limit": "200"}).json()
    search_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = api.get("/web/api/group", params={"group": "bench/group0001"}).json()
    group_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    api.get("/web/api/throughput", params={"window": "3600"}).raise_for_status()
    tp_s = time.perf_counter() - t0
    print(f"json: search of {found['total']:,} groups (200 shown) {search_s * 1000:.0f} ms; "
          f"drill-down of a {sum(one['row'][:7])}-job group {group_s * 1000:.0f} ms; "
          f"throughput {tp_s * 1000:.0f} ms")

    feed.stop = True
    if browser is not None:
        browser.close()
        pw.stop()


if __name__ == "__main__":
    main()
