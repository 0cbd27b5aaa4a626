"""Do small requests stay quick while one huge request is in flight? (issue 13, item 8)

Against a real manager in a temporary HOME, four probers, each on its own keep-alive
connection, send ``GET /rest/v1/info/`` every 100 ms (staggered: 40 a second in all) and
time each answer, in three phases:

1. idle: the manager has nothing else to do (the baseline, measured in the same run);
2. during a POST of N jobs (default 1,000,000) to ``/rest/v1/jobs/``, answered with a status
   object per job (the body, ``{"cmd":"echo <i>"}`` per job with a limit group of 0 in the
   query so nothing runs, is about 21 MB; the answer about 670 MB);
3. during an unfiltered ``GET /rest/v1/jobs/`` of those N jobs.

The big requests are sent by ``curl`` (answers go to /dev/null), so reading 670 MB does not
compete with the prober for this process's GIL. A sampler reads the manager's RSS every
20 ms; each phase reports its peak and the RSS before it.

Each request's latency counts from when it was due, not from when its prober could send
it: a prober stuck behind a 20 s stall would otherwise count one slow request among
thousands of quick ones (coordinated omission), and its p99 would hide the stall. A
request that fails (e.g. the server closed the connection without answering) is counted
as dropped and the prober reconnects.

Usage: ``python bench/stall_bench.py [N]``; prints a table and writes
``bench/results/stall.json``. `bench/run.py` runs it as its ``stall`` step.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IDLE_SECONDS = 3.0
"""How long the idle baseline probes for."""


PROBERS = 4
"""Probers, each on its own keep-alive connection."""
INTERVAL = 0.1
"""Seconds between one prober's requests (staggered: 40 requests a second in all)."""


class Prober(threading.Thread):
    """GET /rest/v1/info/ every INTERVAL seconds (from ``offset`` on) until stopped, timing
    each answer from when it was due."""

    def __init__(self, url: str, token: str, ca: str, offset: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.ca, self.offset = url, token, ca, offset
        self.latencies: list[float] = []
        self.dropped: list[str] = []
        self.stop = threading.Event()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ca, trust_env=False, timeout=600,
                            headers={"Authorization": f"Bearer {self.token}"})

    def run(self) -> None:
        client = self._client()
        due = time.perf_counter() + self.offset
        try:
            while not self.stop.is_set():
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                t = due
                due += INTERVAL
                try:
                    client.get("/rest/v1/info/").raise_for_status()
                except httpx.HTTPError as exc:
                    self.dropped.append(f"{type(exc).__name__}: {exc}")
                    client.close()
                    client = self._client()
                    continue
                self.latencies.append((time.perf_counter() - t) * 1000)
        finally:
            client.close()


class RssSampler(threading.Thread):
    """The peak RSS of one process, sampled every 20 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.before = self.proc.memory_info().rss
        self.peak = self.before
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe_during(url: str, token: str, ca: str, pid: int, work: Any) -> dict[str, Any]:
    """Probe while ``work()`` runs; the figures of the probers and of the manager's RSS."""
    probers = [Prober(url, token, ca, i * INTERVAL / PROBERS) for i in range(PROBERS)]
    sampler = RssSampler(pid)
    for prober in probers:
        prober.start()
    sampler.start()
    while not all(p.latencies or p.dropped for p in probers):  # all connected
        time.sleep(0.01)
    t = time.perf_counter()
    extra = work()
    took = time.perf_counter() - t
    sampler.stop.set()
    for prober in probers:
        prober.stop.set()
    for prober in [*probers, sampler]:
        prober.join()
    lat = [v for p in probers for v in p.latencies]
    dropped = [d for p in probers for d in p.dropped]
    return {
        "seconds": round(took, 2), "requests": len(lat), "dropped": len(dropped),
        "dropped_examples": dropped[:3],
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
        "max_ms": round(max(lat), 1) if lat else None,
        "rss_before_mb": round(sampler.before / 2**20), "rss_peak_mb": round(sampler.peak / 2**20),
        **(extra or {}),
    }


def curl(m: Any, token: str, *args: str) -> dict[str, Any]:
    """Run curl against the manager, the answer to /dev/null; its status and size."""
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(m.dir / "ca.pem"), "-H", f"Authorization: Bearer {token}",
         "-o", "/dev/null", "-w", "%{http_code} %{size_download}", *args],
        capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"curl failed: {out.stderr}")
    code, size = out.stdout.split()
    return {"status": int(code), "answer_mb": round(int(size) / 2**20, 1)}


def run(n: int) -> dict[str, Any]:
    """The three phases against a fresh manager; the figures of each."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import Manager

    m = Manager()
    results: dict[str, Any] = {"jobs": n}
    try:
        m.start()
        info = m.info
        url = f"https://localhost:{info['web_port']}"
        token = (m.dir / "client.token").read_text().strip()
        ca = str(m.dir / "ca.pem")
        pid = info["pid"]
        with tempfile.NamedTemporaryFile(suffix=".json") as body:
            body.write(b"[" + b",".join(b'{"cmd":"echo %d"}' % i for i in range(n)) + b"]")
            body.flush()
            results["body_mb"] = round(body.tell() / 2**20, 1)
            results["idle"] = probe_during(url, token, ca, pid,
                                           lambda: time.sleep(IDLE_SECONDS))
            results["post"] = probe_during(url, token, ca, pid, lambda: curl(
                m, token, "--data-binary", f"@{body.name}",
                f"{url}/rest/v1/jobs/?rep_grp=stall&limit_grps=hold:0"))
        results["get"] = probe_during(url, token, ca, pid,
                                      lambda: curl(m, token, f"{url}/rest/v1/jobs/"))
    finally:
        m.close()
    return results


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    results = run(n)
    print(f"{n:,} jobs, body {results['body_mb']} MB")
    print(f"{'phase':<34} {'s':>6} {'reqs':>6} {'drop':>5} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'RSS MB':>14}")
    for phase, name in (("idle", "idle (baseline)"), ("post", "during POST /rest/v1/jobs/"),
                        ("get", "during GET /rest/v1/jobs/")):
        r = results[phase]
        print(f"{name:<34} {r['seconds']:>6} {r['requests']:>6} {r['dropped']:>5} "
              f"{r['p50_ms']!s:>8} {r['p99_ms']!s:>8} {r['max_ms']!s:>8} "
              f"{r['rss_before_mb']:>6}->{r['rss_peak_mb']:<6}")
        for example in r["dropped_examples"]:
            print(f"    dropped: {example}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stall.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
