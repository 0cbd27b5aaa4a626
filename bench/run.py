"""Run every benchmark workload on this machine and print a table (also written as JSON).

    .venv/bin/python bench/run.py            # everything (several minutes)
    .venv/bin/python bench/run.py --quick    # fewer repeats, smaller scale workload

Each figure is the median of several runs; speeds are also given as a ratio to a baseline
measured in the same run (``xargs -P <cores>`` for throughput), because machines are noisy.
Managers run in temporary homes on free ports, exactly as a user would run them.
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

def xargs_rate(cmd: str, n: int) -> float:
    t = time.perf_counter()
    subprocess.run(f"seq {n} | xargs -P {CORES} -I{{}} bash -c '{cmd}'", shell=True,
                   check=True)
    return n / (time.perf_counter() - t)


def wr_rate(cmd: str, n: int) -> float:
    m = Manager()
    try:
        m.start()
        with m.client() as c:
            t = time.perf_counter()
            c.add([{"cmd": f"{cmd} # {i}", "cpus": 1, "cwd_matters": True, "cwd": "/tmp"}
                   for i in range(n)], rep_grp="tp", retries=0)
            wait_all_done(c, "tp", n)
            return n / (time.perf_counter() - t)
    finally:
        m.close()


def bench_throughput(runs: int, out: dict[str, Any]) -> None:
    for name, cmd, n in (("throughput: 2,000 x true", "true", 2000),
                         ("throughput: 500 x sleep 0.01", "sleep 0.01", 500)):
        base, _ = median_of(runs, lambda cmd=cmd, n=n: xargs_rate(cmd, n))
        ours, values = median_of(runs, lambda cmd=cmd, n=n: wr_rate(cmd, n))
        out[name] = {"value": round(ours, 1), "unit": "jobs/s", "baseline": round(base, 1),
                     "baseline_name": f"xargs -P {CORES} bash -c", "ratio": round(ours / base, 3),
                     "runs": [round(v, 1) for v in values], "target": "ratio >= 0.5"}


def bench_add(runs: int, n: int, out: dict[str, Any]) -> None:
    """n jobs in one POST, held back by a limit of 0 so nothing runs."""
    def once(counts: bool) -> float:
        m = Manager()
        try:
            m.start()
            body = [{"cmd": f"echo {i}", "limit_grps": ["hold:0"]} for i in range(n)]
            with m.client() as c:
                t = time.perf_counter()
                if counts:  # POST /rest/v1/add/
                    assert c.submit(body, rep_grp="add")["Added"] == n
                else:  # POST /rest/v1/jobs/
                    assert len(c.add(body, rep_grp="add")) == n
                return n / (time.perf_counter() - t)
        finally:
            m.close()

    for counts, name in ((False, "POST /jobs/ (answer: a status per job)"),
                         (True, "POST /add/ (answer: counts)")):
        value, values = median_of(runs, lambda counts=counts: once(counts))
        out[f"add: {n:,} jobs in one {name}"] = {
            "value": round(value), "unit": "jobs/s", "runs": [round(v) for v in values],
            "target": ">= 50,000 jobs/s"}

    if shutil.which("wr") is None and not (ROOT / ".venv" / "bin" / "wr").exists():
        return

    def cli_once() -> float:
        m = Manager()
        try:
            m.start()
            lines = "".join(f'echo {i}\t{{"limit_grps":["hold:0"]}}\n' for i in range(n))
            t = time.perf_counter()
            res = m.wr("add", "-i", "cli", input=lines)
            took = time.perf_counter() - t
            if res.returncode:
                raise RuntimeError(res.stderr)
            return n / took
        finally:
            m.close()

    try:
        value, values = median_of(runs, cli_once)
    except RuntimeError as exc:
        out[f"add: {n:,} lines through wr add"] = {"error": str(exc)[:200]}
        return
    out[f"add: {n:,} lines through wr add"] = {
        "value": round(value), "unit": "jobs/s", "runs": [round(v) for v in values],
        "target": ">= 50,000 jobs/s"}


def bench_latency(out: dict[str, Any], samples: int = 20) -> None:
    m = Manager(WR_RUNNERIDLETIMEOUT="30")
    try:
        m.start()
        with m.client() as c:
            def one(i: int) -> float:
                t = time.perf_counter()
                key = c.add([{"cmd": f"true # lat {i}", "cpus": 1, "cwd_matters": True}],
                            rep_grp=f"lat{i}")[0]["Key"]
                while c.status(key)[0]["State"] != "complete":
                    time.sleep(0.001)
                return (time.perf_counter() - t) * 1000
            one(-1)  # a runner is now up and waiting (idle timeout 30 s)
            warm = statistics.median(one(i) for i in range(samples))
    finally:
        m.close()
    m = Manager(WR_RUNNERIDLETIMEOUT="0.2")
    try:
        m.start()
        with m.client() as c:
            cold_values = []
            for i in range(max(samples // 2, 5)):
                while any("wr.runner" in " ".join(p.info["cmdline"] or [])
                          for p in psutil.process_iter(["cmdline"])):
                    time.sleep(0.05)
                t = time.perf_counter()
                key = c.add([{"cmd": f"true # cold {i}", "cpus": 1, "cwd_matters": True}],
                            rep_grp=f"cold{i}")[0]["Key"]
                while c.status(key)[0]["State"] != "complete":
                    time.sleep(0.001)
                cold_values.append((time.perf_counter() - t) * 1000)
            cold = statistics.median(cold_values)
    finally:
        m.close()
    out["latency: true, runner up"] = {"value": round(warm, 1), "unit": "ms",
                                       "target": "< 20 ms"}
    out["latency: true, from cold"] = {"value": round(cold, 1), "unit": "ms",
                                       "target": "< 150 ms"}


def bench_scale(n: int, out: dict[str, Any]) -> None:
    """n queued jobs held back by a limit of 0."""
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
                "target": "<= 1,024 bytes"}
            t = time.perf_counter()
            c.status("scale0", limit=1)
            out[f"scale: GET one rep group, limit=1 ({n:,} queued)"] = {
                "value": round((time.perf_counter() - t) * 1000, 1), "unit": "ms",
                "target": "< 200 ms"}
        t = time.perf_counter()
        res = m.wr("status", "-o", "counts")
        took = (time.perf_counter() - t) * 1000
        out[f"scale: wr status -o counts ({n:,} queued)"] = (
            {"value": round(took, 1), "unit": "ms", "target": "< 200 ms"}
            if res.returncode == 0 else {"error": res.stderr.strip()[:200]})
        m.stop()
        t = time.perf_counter()
        m.start()
        with m.client() as c:
            c.status("scale0", limit=1)
        out[f"scale: manager restart with {n:,} queued"] = {
            "value": round(time.perf_counter() - t, 2), "unit": "s", "target": "< 20 s"}
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
            "runs": [round(v, 1) for v in times]}
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
            "target": "< 200 ms" if phase != "idle" else "baseline"}
    for phase, name in (("post", "POST"), ("get", "GET")):
        figures = r[phase]
        out[f"stall: manager peak RSS during the {name} ({n:,} jobs)"] = {
            "value": figures["rss_peak_mb"], "unit": "MB",
            "before": figures["rss_before_mb"], "seconds": figures["seconds"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller scale")
    parser.add_argument("--only", default="",
                        help="comma list: throughput,add,latency,scale,history,stall")
    parser.add_argument("--scale", type=int, default=0,
                        help="queued jobs for the scale test, completed ones for history")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    scale = args.scale or (100_000 if args.quick else 1_000_000)
    only = set(filter(None, args.only.split(",")))
    out: dict[str, Any] = {}
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
    for name, step in steps:
        if only and name not in only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        step()
    machine = {"cores": CORES, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
               "python": platform.python_version(), "platform": platform.platform(),
               "load_before": os.getloadavg()}
    width = max(len(k) for k in out) if out else 10
    print(f"{'workload':<{width}}  {'value':>19}  {'baseline':>10}  {'ratio':>6}  target")
    for name, r in out.items():
        if "error" in r:
            print(f"{name:<{width}}  error: {r['error']}")
            continue
        base = f"{r['baseline']:,}" if "baseline" in r else ""
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        print(f"{name:<{width}}  {r['value']:>12,} {r['unit']:<6}  {base:>10}  "
              f"{ratio:>6}  {r.get('target', '')}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "latest.json"
    path.write_text(json.dumps({"machine": machine, "results": out}, indent=2))
    print(f"(written to {path.relative_to(ROOT)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
