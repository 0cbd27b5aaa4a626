"""Runner capacity: how many runners can one manager serve? (issue 16, part 5)

    .venv/bin/python bench/runners_sim.py                       # N = 100, 1,000, 5,000
    .venv/bin/python bench/runners_sim.py --runners 20 --duration 3 --json out.json

For each N, a real manager (its own HOME, free ports, TLS, the ``external`` scheduler, so it
starts no runner of its own) gets enough jobs for the run in one POST /rest/v1/add/, and N
simulated runners, spread over a few processes, connect to its runner websocket exactly as
wr.runner does (token as a Bearer header, the manager's CA) and speak the real protocol
(wr.manager.runner_ws) without running anything:

* most runners ("short") loop: reserve, then ``end`` carrying the job's start and the next
  reserve in the same message, as the real runner does for a job over within
  START_REPORT_DELAY;
* a share of them ("touching", ``--touching``) hold each job for ``--job-time`` seconds as a
  longer job: ``started``, a keep-alive ``touch`` every ``--touch`` seconds, then ``end``
  (+ the next reserve).

After ``--warmup`` seconds, for ``--duration`` seconds, every round trip is timed and every
operation counted: an operation is one reservation (a job handed out) or one end stored, so
a short runner's end+reserve round trip is two. The manager's ``/metrics`` is read at the
start and end of that window; its completed, started and reserved counters must agree with
the simulator's counts (they measure the same window, give or take a scrape's round trip).
The manager runs with ``ttr`` = ``--ttr`` (4 x ``--touch`` by default, as wr's 60 s / 15 s),
and every runner stays connected and touching throughout, so any job the manager calls
``lost`` is a false lost: the simulator counts them from the manager's log (its "running
jobs lost contact" warnings) and ``wr_jobs{state="lost"}``.

The baseline (skipped with ``--no-baseline``) is the same simulators against a stand-in
server in this script (one process, the same websockets library and TLS) that answers
every request at once with an answer of the manager's shape: what the client side and
this machine allow against a server that does no work, so a figure near it says the
simulator or the machine, not the manager, was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CORES = os.cpu_count() or 1
RESERVE_WAIT = 1.0
"""Seconds a reserve may wait for a job (there should always be one at once)."""
CONNECTS_AT_ONCE = 64
"""TLS handshakes one simulator process has under way at once while connecting."""


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (5,000 runners need
    5,000 sockets in the manager and, spread over the simulators, in them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- one simulator process -------------------------------------------------------------------

@dataclass
class Tally:
    """What one simulator process saw inside the measured window."""

    reserves: int = 0
    ends: int = 0
    starts: int = 0
    touches: int = 0
    empty: int = 0
    """Reserves answered with no job (the queue ran dry: the run needs more jobs)."""
    errors: dict[str, int] = field(default_factory=dict)
    rtt: list[float] = field(default_factory=list)
    """Round trips of reserve, end and started requests (seconds)."""
    touch_rtt: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class SimRunner:
    """One simulated runner on one websocket; its requests are strictly one at a time."""

    def __init__(self, n: int, cfg: dict[str, Any], tally: Tally) -> None:
        self.id = f"sim{cfg['proc']}x{n}"
        self.cfg = cfg
        self.tally = tally
        share = cfg["touching"]
        self.touching = int((n + 1) * share) > int(n * share)  # evenly spread
        self.ws: Any = None
        self.seq = 0

    async def connect(self, ssl_ctx: Any) -> None:
        import websockets

        url = f"{self.cfg['url']}?id={self.id}&group={self.cfg['group']}"
        self.ws = await websockets.connect(
            url, ssl=ssl_ctx, server_hostname=self.cfg["domain"],
            additional_headers={"Authorization": f"Bearer {self.cfg['token']}"},
            max_size=None, ping_interval=None, open_timeout=120, close_timeout=1,
            compression=None)

    async def call(self, msg: dict[str, Any], window: tuple[float, float]) -> tuple[
            dict[str, Any], float, bool]:
        """Send and wait for the answer: (answer, round trip, sent inside the window)."""
        import orjson

        self.seq += 1
        msg["id"] = self.seq
        t = time.time()
        await self.ws.send(orjson.dumps(msg))
        while True:
            reply = orjson.loads(await self.ws.recv())
            if reply.get("id") == self.seq:
                break  # anything else is a push (stop, kill): not ours to answer
        return reply, time.time() - t, window[0] <= t < window[1]

    async def run(self, window: tuple[float, float]) -> None:
        cfg, tally = self.cfg, self.tally
        many = 1 if self.touching else cfg["many"]
        end: dict[str, Any] | None = None
        if self.touching:  # spread the touching runners' keep-alives over the interval
            await asyncio.sleep(random.uniform(0, cfg["touch"]))
        while time.time() < window[1]:
            msg = end or {"op": "reserve", "timeout": RESERVE_WAIT}
            if many > 1:
                msg["many"] = many
            reply, rtt, inside = await self.call(msg, window)
            if inside:
                tally.rtt.append(rtt)
                if "error" in reply:
                    tally.error(str(reply["error"])[:80])
                elif end is not None:
                    tally.ends += len(end.get("ends", [end])) - len(reply.get("refused", ()))
            jobs = [reply["job"], *reply.get("more", ())] if reply.get("job") else []
            if not jobs:
                tally.empty += inside
                end = None
                continue
            tally.reserves += len(jobs) * inside
            if self.touching:
                await self._hold(jobs[0]["key"], window)
                end = _end(jobs[0]["key"], time.time(), None)
            else:  # over at once: each end carries its start, as wr.runner's do
                now = time.time()
                ends = [_end(job["key"], now, now) for job in jobs]
                end = ends[0] if len(ends) == 1 else {"op": "end", "ends": ends}
            end["reserve"] = RESERVE_WAIT
        if end is not None:
            # Report what was run, asking for nothing more: a job left running untouched
            # would become lost ttr seconds later, a false lost of the simulator's making.
            end["reserve"] = None
            end.pop("many", None)
            await self.call(end, window)

    async def _hold(self, key: str, window: tuple[float, float]) -> None:
        """Run a longer job: say it started, touch every ``touch`` seconds until it ends."""
        cfg, tally = self.cfg, self.tally
        reply, rtt, inside = await self.call(
            {"op": "started", "key": key, **START, "at": time.time()}, window)
        if inside:
            tally.starts += 1
            tally.rtt.append(rtt)
            if "error" in reply:
                tally.error(str(reply["error"])[:80])
        done = time.time() + cfg["job_time"]
        while (left := done - time.time()) > 0:
            await asyncio.sleep(min(cfg["touch"], left))
            if time.time() >= done:
                break
            reply, rtt, inside = await self.call({"op": "touch", "key": key}, window)
            if inside:
                tally.touches += 1
                tally.touch_rtt.append(rtt)
                if "error" in reply:
                    tally.error("touch: " + str(reply["error"])[:80])


START = {"pid": 1, "host": "sim", "ip": "127.0.0.1"}
"""What a simulated runner says of the process it started."""


def _end(key: str, ended: float, started: float | None) -> dict[str, Any]:
    """The end report of a job that completed, with its start if ``started`` is given."""
    end: dict[str, Any] = {"op": "end", "key": key, "stdout": "", "stderr": "",
                           "report": {"outcome": "archive", "ended": ended}}
    if started is not None:
        end["start"] = {**START, "at": started}
    return end


async def simulate(cfg: dict[str, Any]) -> dict[str, Any]:
    """A simulator process: connect its runners, say so, wait for "go", run, report."""
    import ssl

    raise_fd_limit()
    ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ssl_ctx.load_verify_locations(cafile=cfg["ca"])
    tally = Tally()
    runners = [SimRunner(n, cfg, tally) for n in cfg["ids"]]
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def connect(r: SimRunner) -> None:
        async with gate:
            await r.connect(ssl_ctx)

    await asyncio.gather(*(connect(r) for r in runners))
    print("connected", flush=True)
    loop = asyncio.get_running_loop()
    go = float(await loop.run_in_executor(None, sys.stdin.readline))
    await asyncio.sleep(max(0.0, go - time.time()))
    window = (go + cfg["warmup"], go + cfg["warmup"] + cfg["duration"])
    cpu = time.process_time()
    outcomes = await asyncio.gather(*(r.run(window) for r in runners),
                                    return_exceptions=True)
    cpu = time.process_time() - cpu
    for out in outcomes:
        if isinstance(out, BaseException):
            tally.error(f"runner died: {out!r}"[:120])
    await asyncio.gather(*(r.ws.close() for r in runners), return_exceptions=True)
    return {**tally.__dict__, "cpu_s": cpu}


def child_main(cfg_json: str) -> int:
    import uvloop

    cfg = json.loads(cfg_json)
    result = uvloop.run(simulate(cfg))
    # A file, not stdout: the results are megabytes, more than a pipe takes in one write.
    Path(cfg["out"]).write_text(json.dumps(result))
    return 0


# -- the stand-in server for the baseline ----------------------------------------------------

async def stand_in(cert: str, key: str, ready: Any) -> None:
    """Answer each runner request at once with an answer of the manager's shape."""
    import ssl

    import orjson
    from websockets.asyncio.server import serve

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    job = {"key": "0" * 32, "cmd": "true", "cwd": "/tmp", "cwd_matters": False,
           "change_home": False, "env_override": [], "expected_ram_mb": 100,
           "expected_time_s": 60, "retries_left": 0, "no_retry_over_walltime_s": 0,
           "modules": [], "behaviours": [], "shell": "bash"}
    counter = [0]

    async def handler(ws: Any) -> None:
        async for raw in ws:
            msg = orjson.loads(raw)
            op = msg.get("op")
            if op in ("reserve", "end"):
                given = []
                for _ in range(int(msg.get("many") or 1)):
                    counter[0] += 1
                    given.append({**job, "key": f"{counter[0]:032x}"})
                reply = {"id": msg["id"], "job": given[0]}
                if len(given) > 1:
                    reply["more"] = given[1:]
            elif op == "touch":
                reply = {"id": msg["id"], "kill": False}
            else:
                reply = {"id": msg["id"]}
            await ws.send(orjson.dumps(reply))

    async with serve(handler, "127.0.0.1", 0, ssl=ctx, max_size=None, ping_interval=None,
                     compression=None, backlog=4096) as server:
        ready(server.sockets[0].getsockname()[1])
        await asyncio.Future()


def stand_in_main(cert: str, key: str) -> int:
    import uvloop

    raise_fd_limit()
    uvloop.run(stand_in(cert, key, lambda port: print(port, flush=True)))
    return 0


# -- the parent: a manager, the simulators, the figures -------------------------------------

def _metrics(http: Any) -> dict[str, float]:
    """The manager's /metrics as {"name{labels}": value}."""
    out: dict[str, float] = {}
    for line in http.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _thread_cpu(proc: Any) -> tuple[float, float]:
    """CPU seconds of a process's main thread (the event loop) and of its other threads."""
    main = other = 0.0
    for t in proc.threads():
        if t.id == proc.pid:
            main += t.user_time + t.system_time
        else:
            other += t.user_time + t.system_time
    return main, other


def _lost_in_log(log: str) -> int:
    return sum(int(n) for n in re.findall(r"(\d+) running jobs lost contact", log))


def _group_from_log(log_file: Path, timeout: float = 60.0) -> str:
    """The scheduler group of the added jobs, as the external scheduler's hint names it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            found = re.search(r"scheduler group '([^']+)' wants runners", log_file.read_text())
            if found:
                return found.group(1)
        time.sleep(0.05)
    raise RuntimeError(f"the manager never named a scheduler group in {log_file}")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


class Simulators:
    """The simulator processes of one run, each given its share of the runners."""

    def __init__(self, n: int, procs: int, cfg: dict[str, Any]) -> None:
        import tempfile

        self.procs = []
        self.dir = Path(tempfile.mkdtemp(prefix="wr_sim_out_"))
        for p in range(min(procs, n)):
            child_cfg = {**cfg, "proc": p, "ids": list(range(p, n, procs)),
                         "out": str(self.dir / f"{p}.json")}
            self.procs.append(subprocess.Popen(
                [sys.executable, __file__, "--child", json.dumps(child_cfg)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))

    def wait_connected(self) -> None:
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "connected":
                raise RuntimeError(f"a simulator failed to connect its runners: {line!r}")

    def go(self, at: float) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{at}\n")
            proc.stdin.flush()

    def results(self) -> list[dict[str, Any]]:
        out = []
        for p, proc in enumerate(self.procs):
            # Each runner's last report, sent after the window, may wait behind a backlog
            # of batched reservations (5,000 runners x 16 jobs on a loaded machine).
            proc.wait(timeout=300)
            path = self.dir / f"{p}.json"
            if proc.returncode or not path.exists():
                raise RuntimeError(f"a simulator ended without results ({proc.returncode})")
            out.append(json.loads(path.read_text()))
        return out

    def kill(self) -> None:
        import shutil

        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _summarise(n: int, args: argparse.Namespace, parts: list[dict[str, Any]],
               connect_s: float) -> dict[str, Any]:
    rtt = [v for p in parts for v in p["rtt"]]
    touch = [v for p in parts for v in p["touch_rtt"]]
    count = {k: sum(p[k] for p in parts) for k in ("reserves", "ends", "starts", "touches",
                                                     "empty")}
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    d = args.duration
    return {
        "runners": n, "connect_s": round(connect_s, 1),
        "ops_per_s": round((count["reserves"] + count["ends"]) / d),
        "reserves_per_s": round(count["reserves"] / d), "ends_per_s": round(count["ends"] / d),
        "rtt_p50_ms": round(_pct(rtt, 0.5), 2), "rtt_p99_ms": round(_pct(rtt, 0.99), 2),
        "touches": count["touches"], "touch_p99_ms": round(_pct(touch, 0.99), 2),
        "touch_max_ms": round(max(touch, default=float("nan")) * 1000, 1),
        "starts": count["starts"], "empty_reserves": count["empty"], "errors": errors,
        "sim_cpu_s": round(sum(p["cpu_s"] for p in parts), 1),
    }


def _manager_figures(before: dict[str, float], after: dict[str, float],
                     cpu0: tuple[float, float], cpu1: tuple[float, float],
                     seconds: float) -> dict[str, Any]:
    """The manager's own account of the window: /metrics counters and its CPU."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    commits = delta["wr_store_commit_seconds_count"]
    row: dict[str, Any] = {"metrics": {
        "completed": int(delta["wr_jobs_completed_total"]),
        "started": int(delta["wr_jobs_started_total"]),
        "reserved": int(delta["wr_jobs_reserved_total"]),
        "connections": int(after['wr_runner_connections{scheduler="external"}']),
        "lost_now": int(after['wr_jobs{state="lost"}']),
        "commits": int(commits),
        "commit_mean_ms": round(1000 * delta["wr_store_commit_seconds_sum"]
                                / max(commits, 1), 2),
    }}
    # CPU seconds per second of the event loop's thread and of all the others (the
    # store's writer, mostly), and per job completed: on a shared machine the first
    # depends on what else runs, the second says what one job costs wherever.
    loop_s, other_s = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    jobs_done = max(delta["wr_jobs_completed_total"], 1)
    row.update(manager_cpu=round((loop_s + other_s) / seconds, 2),
               loop_cpu=round(loop_s / seconds, 2), other_cpu=round(other_s / seconds, 2),
               loop_us_per_job=round(1e6 * loop_s / jobs_done),
               other_us_per_job=round(1e6 * other_s / jobs_done))
    return row


def run_manager(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """N simulated runners against a real manager for one window."""
    import httpx
    import psutil
    from run import Manager

    from wr.security import client_ssl_context

    m = Manager(WR_TTR=f"{args.ttr:g}", WR_TOUCHINTERVAL=f"{args.touch:g}")
    sims: Simulators | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        m.start("-s", "external")
        jobs = args.jobs or int(max(20_000, 15_000 * (args.warmup + args.duration + 5)))
        body = [{"cmd": f"sim {i}", "memory": "100M", "cpus": 1} for i in range(jobs)]
        with m.client() as c:
            assert c.submit(body, rep_grp="sim")["Added"] == jobs
        del body
        cfg = {"url": f"wss://127.0.0.1:{m.info['port']}/runner_ws",
               "group": _group_from_log(m.dir / "log"), "domain": "localhost",
               "token": (m.dir / "client.token").read_text().strip(),
               "ca": str(m.dir / "ca.pem"), **_sim_settings(args)}
        t = time.perf_counter()
        sims = Simulators(n, args.procs, cfg)
        sims.wait_connected()
        connect_s = time.perf_counter() - t
        go = time.time() + 1.0
        sims.go(go)
        proc = psutil.Process(m.info["pid"])
        http = httpx.Client(base_url=f"https://localhost:{m.info['web_port']}", timeout=60,
                            verify=client_ssl_context(m.dir / "ca.pem"), trust_env=False,
                            headers={"Authorization": f"Bearer {cfg['token']}"})
        with http:
            time.sleep(max(0.0, go + args.warmup - time.time()))
            before, cpu0, t0 = _metrics(http), _thread_cpu(proc), time.time()
            if args.py_spy:
                spy = _py_spy(proc.pid, args.duration, n)
            time.sleep(max(0.0, go + args.warmup + args.duration - time.time()))
            after, cpu1, t1 = _metrics(http), _thread_cpu(proc), time.time()
        row = _summarise(n, args, sims.results(), connect_s)
        row.update(_manager_figures(before, after, cpu0, cpu1, t1 - t0))
        row["false_lost"] = _lost_in_log((m.dir / "log").read_text())
        row["jobs"] = jobs
        return row
    finally:
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(timeout=60)
        if sims is not None:
            sims.kill()
        m.close()


def _py_spy(pid: int, duration: float, n: int) -> subprocess.Popen[bytes] | None:
    """Sample the manager through the window (collapsed stacks, for the docs' profile)."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        print("py-spy is not installed in this environment: no profile", file=sys.stderr)
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"runners_sim_{n}.txt"
    return subprocess.Popen([str(exe), "record", "-p", str(pid), "-d", f"{int(duration)}",
                             "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking",
                             "--threads", "--idle"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_baseline(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """The same simulators against the stand-in server: the client side's own ceiling."""
    import tempfile

    from wr.security import ensure_certificates

    home = Path(tempfile.mkdtemp(prefix="wr_sim_"))
    ensure_certificates(home / "ca.pem", home / "cert.pem", home / "key.pem", "localhost")
    server = subprocess.Popen(
        [sys.executable, __file__, "--stand-in", str(home / "cert.pem"), str(home / "key.pem")],
        stdout=subprocess.PIPE, text=True)
    sims: Simulators | None = None
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        cfg = {"url": f"wss://127.0.0.1:{port}/runner_ws", "group": "g",
               "domain": "localhost", "token": "-", "ca": str(home / "ca.pem"),
               **_sim_settings(args)}
        t = time.perf_counter()
        sims = Simulators(n, args.procs, cfg)
        sims.wait_connected()
        connect_s = time.perf_counter() - t
        sims.go(time.time() + 1.0)
        return _summarise(n, args, sims.results(), connect_s)
    finally:
        if sims is not None:
            sims.kill()
        server.kill()
        server.wait()
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def _sim_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"touching": args.touching, "touch": args.touch, "job_time": args.job_time,
            "many": args.many,
            "warmup": args.warmup, "duration": args.duration}


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'runners':>7} {'ops/s':>7} {'base':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'touch p99':>9} {'lost':>4} {'done (metrics)':>18} {'loop/other cpu':>14} "
          f"{'us/job':>9}")
    for r in rows:
        m, b = r["manager"], r.get("baseline") or {}
        done = f"{m['ends_per_s'] * r['duration']:.0f} ({m['metrics']['completed']})"
        print(f"{r['runners']:>7,} {m['ops_per_s']:>7,} {b.get('ops_per_s', ''):>7} "
              f"{m['rtt_p50_ms']:>7} {m['rtt_p99_ms']:>7} {m['touch_p99_ms']:>9} "
              f"{m['false_lost']:>4} {done:>18} {m['loop_cpu']:>6}/{m['other_cpu']:<7} "
              f"{m['loop_us_per_job']:>4}/{m['other_us_per_job']:<4}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runners", default="100,1000,5000",
                        help="comma list of runner counts (default: 100,1000,5000)")
    parser.add_argument("--procs", type=int, default=4, help="simulator processes")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--touching", type=float, default=0.2,
                        help="share of runners whose jobs run --job-time s, with keep-alives")
    parser.add_argument("--job-time", type=float, default=5.0,
                        help="seconds a touching runner holds each job")
    parser.add_argument("--touch", type=float, default=1.0, help="seconds between touches")
    parser.add_argument("--many", type=int, default=1,
                        help="jobs a short runner reserves and ends per message (wr.runner "
                             "asks for up to 16 when its jobs end within 50 ms)")
    parser.add_argument("--ttr", type=float, default=0.0,
                        help="the manager's keep-alive timeout (default: 4 x --touch)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="jobs added (default: enough for 15,000 ops/s)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the stand-in server's run")
    parser.add_argument("--py-spy", action="store_true",
                        help="profile the manager in each window (bench/results/)")
    parser.add_argument("--json", default=str(RESULTS / "runners_sim.json"),
                        help="where to write the results")
    args = parser.parse_args()
    args.ttr = args.ttr or 4 * args.touch
    if args.warmup + args.duration < args.job_time:
        parser.error("--job-time must be shorter than --warmup + --duration")
    raise_fd_limit()
    load = os.getloadavg()
    rows = []
    for n in (int(x) for x in args.runners.split(",")):
        print(f"{n} runners ...", file=sys.stderr, flush=True)
        row = {"runners": n, "duration": args.duration, "manager": run_manager(n, args)}
        if not args.no_baseline:
            row["baseline"] = run_baseline(n, args)
        rows.append(row)
    _print_table(rows)
    import psutil

    machine = {"cores": CORES, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
               "python": platform.python_version(), "platform": platform.platform(),
               "load_before": load, "load_after": os.getloadavg()}
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "runners")}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "settings": settings, "rows": rows},
                               indent=1))
    print(f"(written to {path})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "bench"))
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2]))
    if len(sys.argv) > 3 and sys.argv[1] == "--stand-in":
        sys.exit(stand_in_main(sys.argv[2], sys.argv[3]))
    sys.exit(main())
