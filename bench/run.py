"""Run every benchmark workload on this machine and print a table (also written as JSON).

    .venv/bin/python bench/run.py            # everything (several minutes)
    .venv/bin/python bench/run.py --quick    # fewer repeats, smaller scale workload

Each row is printed with its baseline, measured in the same run on the same machine
(machines are noisy: a ratio to a baseline is steadier than a figure), its target and
whether it was met. Figures are medians of several runs. Managers run in temporary homes
on free ports, exactly as a user would run them. The job-running workloads (throughput,
latency) are in jobs_bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CORES = os.cpu_count() or 1


class Manager:
    """A manager in a throw-away home."""

    def __init__(self, **env: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="wr_bench_"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
        self.env.update(HOME=str(self.home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
                        WR_DEPLOYMENT="production", **env)
        self.dir = self.home / ".wr_production"

    def wr(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "wr.cli.main", *args], env=self.env,
                              input=input, capture_output=True, text=True, check=False)

    def start(self, *args: str) -> float:
        t = time.perf_counter()
        out = self.wr("manager", "start", "--timeout", "120", *args)
        if out.returncode:
            raise RuntimeError(out.stderr + (self.dir / "log").read_text())
        return time.perf_counter() - t

    @property
    def info(self) -> dict[str, Any]:
        return orjson.loads((self.dir / "manager.info").read_bytes())

    def client(self) -> Any:
        from wr.client import Client

        token = (self.dir / "client.token").read_text().strip()
        return Client(f"https://localhost:{self.info['web_port']}", token,
                      ca_file=str(self.dir / "ca.pem"), timeout=600)

    def rss_mb(self) -> float:
        return psutil.Process(self.info["pid"]).memory_info().rss / (1 << 20)

    def stop(self) -> None:
        self.wr("manager", "stop")

    def close(self) -> None:
        if (self.dir / "pid").exists():
            self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def wait_all_done(client: Any, rep_grp: str, n: int, poll: float = 0.05) -> None:
    """Wait as a user's tool would: with the counts endpoint, which costs the manager a
    counter read and one SQL COUNT, not a status object per job."""
    while True:
        counts = client.counts(rep_grp)
        if counts.get("complete", 0) + counts.get("buried", 0) >= n:
            return
        time.sleep(poll)


# -- workloads ---------------------------------------------------------------------------

def sqlite_rate(n: int) -> float:
    """The adds' baseline: SQLite alone storing n rows of about a job record's size in one
    transaction (WAL, synchronous=FULL, as the manager's store), in this run; rows/s."""
    import sqlite3

    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE jobs (key TEXT PRIMARY KEY, rep_grp TEXT, rec BLOB)")
        rows = [(f"{i:032x}", "add", b'["echo %d",' % i + b"0" * 150 + b"]")
                for i in range(n)]
        t = time.perf_counter()
        db.execute("BEGIN")
        db.executemany("INSERT INTO jobs VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
        took = time.perf_counter() - t
        db.close()
    return n / took


def curl_post(m: Manager, path: str, body: Path) -> float:
    """Seconds ``curl`` takes to POST ``body`` and read the whole answer (to /dev/null)."""
    token = (m.dir / "client.token").read_text().strip()
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(m.dir / "ca.pem"), "-H",
         f"Authorization: Bearer {token}", "--data-binary", f"@{body}", "-o", "/dev/null",
         "-w", "%{http_code} %{time_total}",
         f"https://localhost:{m.info['web_port']}{path}"],
        capture_output=True, text=True, check=False, env={**m.env, "https_proxy": ""})
    code, took = out.stdout.split() if out.returncode == 0 else ("0", "0")
    if code not in ("200", "201"):
        raise RuntimeError(f"curl POST {path}: {code} {out.stderr}")
    return float(took)


def bench_add(runs: int, n: int, out: dict[str, Any]) -> None:
    """n jobs (``echo <i>``, held back by a limit group of 0 so nothing runs) in one POST,
    timed by curl end to end, and by ``wr add`` of n lines; beside SQLite alone storing as
    many rows."""
    base, _ = median_of(runs, lambda: sqlite_rate(n))
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_bytes(b"[" + b",".join(b'{"cmd":"echo %d"}' % i for i in range(n)) + b"]")

        def once(path: str) -> float:
            m = Manager()
            try:
                m.start()
                return n / curl_post(m, path, body)
            finally:
                m.close()

        for path, name, target in (
                ("/rest/v1/jobs/", "POST /rest/v1/jobs/ (answer: a status per job)", 100_000),
                ("/rest/v1/add/", "POST /rest/v1/add/ (answer: counts)", 150_000)):
            value, values = median_of(
                runs, lambda path=path: once(f"{path}?rep_grp=add&limit_grps=hold:0"))
            out[f"add: {n:,} jobs in one {name}, by curl"] = _add_row(value, values, base,
                                                                       target)

    def cli_once() -> float:
        m = Manager()
        try:
            m.start()
            lines = "".join(f"echo {i}\n" for i in range(n))
            t = time.perf_counter()
            res = m.wr("add", "-i", "cli", "-l", "hold:0", input=lines)
            took = time.perf_counter() - t
            if res.returncode:
                raise RuntimeError(res.stderr)
            return n / took
        finally:
            m.close()

    value, values = median_of(runs, cli_once)
    out[f"add: {n:,} lines through wr add"] = _add_row(value, values, base, 150_000)


def _add_row(value: float, values: list[float], base: float, target: int) -> dict[str, Any]:
    return {"value": round(value), "unit": "jobs/s", "runs": [round(v) for v in values],
            "baseline": round(base), "baseline_name": "SQLite alone, rows/s",
            "ratio": round(value / base, 3), "target": f">= {target:,} jobs/s",
            "met": value >= target}


def request_ms(fn: Callable[[], object], times: int = 5) -> float:
    """Median ms of ``fn()``."""
    values = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        values.append((time.perf_counter() - t) * 1000)
    return statistics.median(values)


def bench_scale(n: int, out: dict[str, Any]) -> None:
    """n queued jobs held back by a limit of 0: memory per job once settled (beside the
    idle manager's RSS), a limited GET and ``wr status -o counts`` (beside the cheapest
    request and the cheapest ``wr`` command, same manager), and a restart (beside one of
    an empty manager)."""
    empty = Manager()
    try:
        empty.start()
        empty.stop()
        t = time.perf_counter()
        empty.start()
        empty_restart = time.perf_counter() - t
    finally:
        empty.close()
    m = Manager()
    try:
        m.start()
        before = m.rss_mb()
        batch = 100_000
        with m.client() as c:
            for start in range(0, n, batch):
                c.add([{"cmd": f"echo {i}", "limit_grps": ["hold:0"]}
                       for i in range(start, min(start + batch, n))],
                      rep_grp=f"scale{start // batch}")
            time.sleep(2)  # settled: the manager trims its heap a second after a big request
            after = m.rss_mb()
            out[f"scale: manager memory per queued job ({n:,})"] = {
                "value": round((after - before) * (1 << 20) / n), "unit": "bytes",
                "baseline": round(before, 1), "baseline_name": "idle manager's RSS, MB",
                "target": "<= 512 bytes", "met": (after - before) * (1 << 20) / n <= 512}
            floor = request_ms(c.version)
            took = request_ms(lambda: c.status("scale0", limit=1))
            out[f"scale: GET one rep group, limit=1 ({n:,} queued)"] = {
                "value": round(took, 1), "unit": "ms", "baseline": round(floor, 1),
                "baseline_name": "GET /rest/version/, ms", "target": "< 50 ms",
                "met": took < 50}
        floor = request_ms(lambda: m.wr("--help"), 3)
        res = m.wr("status", "-o", "counts")
        took = request_ms(lambda: m.wr("status", "-o", "counts"), 3)
        out[f"scale: wr status -o counts ({n:,} queued)"] = (
            {"value": round(took, 1), "unit": "ms", "baseline": round(floor, 1),
             "baseline_name": "wr --help, ms", "target": "< 50 ms", "met": took < 50}
            if res.returncode == 0 else {"error": res.stderr.strip()[:200]})
        m.stop()
        t = time.perf_counter()
        m.start()
        with m.client() as c:
            c.status("scale0", limit=1)
        took = time.perf_counter() - t
        out[f"scale: manager restart with {n:,} queued"] = {
            "value": round(took, 2), "unit": "s", "baseline": round(empty_restart, 2),
            "baseline_name": "restart of an empty manager, s", "target": "< 5 s",
            "met": took < 5}
    finally:
        m.close()


def bench_history(n: int, out: dict[str, Any], groups: int = 10) -> None:
    """n completed jobs in history, in ``groups`` rep groups; ``wr status -o summary`` of
    one of them (median of 5, a new ``wr`` process each time)."""
    import asyncio

    from cli_bench import REP_GRP, fill_history

    m = Manager()
    try:
        m.dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(fill_history(m.dir / "db", n, groups))
        m.start()
        group = f"{REP_GRP}_0"
        times = []
        for _ in range(5):
            t = time.perf_counter()
            res = m.wr("status", "-i", group, "-o", "summary")
            times.append((time.perf_counter() - t) * 1000)
            if res.returncode:
                out[f"history: wr status -o summary ({n:,} completed)"] = {
                    "error": res.stderr.strip()[:200]}
                return
        out[f"history: wr status -i X -o summary (X: {n // groups:,} of {n:,} completed)"] = {
            "value": round(statistics.median(times), 1), "unit": "ms", "target": "< 200 ms",
            "runs": [round(v, 1) for v in times], "met": statistics.median(times) < 200}
    finally:
        m.close()


def bench_stall(n: int, out: dict[str, Any]) -> None:
    """Small requests during one huge request (bench/stall_bench.py): GET /rest/v1/info/
    every 20 ms, idle, during a POST of n jobs and during a GET of them all."""
    from stall_bench import run as stall_run

    r = stall_run(n)
    for phase, name in (("idle", "idle manager"), ("post", f"during a {n:,}-job POST"),
                        ("get", f"during a GET of {n:,} jobs")):
        figures = r[phase]
        out[f"stall: GET /rest/v1/info/ p99, {name}"] = {
            "value": figures["p99_ms"], "unit": "ms", "p50": figures["p50_ms"],
            "max": figures["max_ms"], "dropped": figures["dropped"],
            "target": "< 200 ms" if phase != "idle" else "baseline",
            "met": None if phase == "idle" else figures["p99_ms"] < 200}
    for phase, name in (("post", "POST"), ("get", "GET")):
        figures = r[phase]
        out[f"stall: manager peak RSS during the {name} ({n:,} jobs)"] = {
            "value": figures["rss_peak_mb"], "unit": "MB",
            "before": figures["rss_before_mb"], "seconds": figures["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller scale")
    parser.add_argument("--only", default="",
                        help="comma list: throughput,latency,add,scale,history,stall")
    parser.add_argument("--scale", type=int, default=0,
                        help="queued jobs for the scale test, completed ones for history")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    scale = args.scale or (100_000 if args.quick else 1_000_000)
    only = set(filter(None, args.only.split(",")))
    out: dict[str, Any] = {}
    from jobs_bench import bench_latency, bench_throughput

    steps: list[tuple[str, Callable[[], None]]] = [
        ("throughput", lambda: bench_throughput(runs, out)),
        # Before the workloads that churn gigabytes: on this VM the kernel's reclaim after
        # them slows every new process's start (a cold runner's) by ~25 ms for a while.
        ("latency", lambda: bench_latency(out)),
        ("add", lambda: bench_add(runs, 100_000, out)),
        ("scale", lambda: bench_scale(scale, out)),
        ("history", lambda: bench_history(scale, out)),
        ("stall", lambda: bench_stall(scale, out)),
    ]
    load_before = os.getloadavg()
    for name, step in steps:
        if only and name not in only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        step()
    machine = {"cores": CORES, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
               "python": platform.python_version(), "platform": platform.platform(),
               "load_before": load_before, "load_after": os.getloadavg()}
    print_table(out, machine)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    path.write_text(json.dumps({"machine": machine, "results": out}, indent=2))
    print(f"(written to {path.relative_to(ROOT)})", file=sys.stderr)
    return 0


def print_table(out: dict[str, Any], machine: dict[str, Any]) -> None:
    """One row per figure: the figure, its baseline from the same run (and the ratio to
    it), the target, and whether it is met."""
    width = max(len(k) for k in out) if out else 10
    print(f"{'workload':<{width}}  {'value':>17}  {'baseline':>26}  {'ratio':>6}  "
          f"{'target':<22} met")
    for name, r in out.items():
        if "error" in r:
            print(f"{name:<{width}}  error: {r['error']}")
            continue
        base = (f"{r['baseline']:,} ({r['baseline_name']})" if "baseline_name" in r
                else f"{r['baseline']:,}" if "baseline" in r else "")
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        met = {True: "yes", False: "NO", None: ""}[r.get("met")]
        print(f"{name:<{width}}  {r['value']:>10,} {r['unit']:<6}  {base:>26}  {ratio:>6}  "
              f"{r.get('target', ''):<22} {met}")
    print(f"load average before {machine['load_before']}, after {machine['load_after']}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
