"""Load: 50 REST clients at once, adding and querying, while 5,000 jobs run.

Issue 6, part 5: no errors, no lost updates (every job added ends complete, and ran exactly
once: each appends its name to a file), and the latency of every request is recorded. The
percentiles are printed (``pytest -s``) and quoted in docs/reliability.md.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ManagerHandle

pytestmark = pytest.mark.integration

CLIENTS = 50
JOBS_PER_CLIENT = 100
BATCH = 20
DEADLINE = 150.0
"""Seconds the whole exercise may take before the test gives up."""


class LoadClient(threading.Thread):
    """One REST client: adds its jobs in batches, queries after each, then polls until all
    of its jobs are complete. Every request is timed; every failure is kept."""

    def __init__(self, n: int, m: ManagerHandle, record: Path, start: threading.Event,
                 deadline: float) -> None:
        super().__init__(name=f"load-{n}", daemon=True)
        self.n = n
        self.m = m
        self.record = record
        self.go = start
        self.deadline = deadline
        self.rep_grp = f"load{n}"
        self.latencies: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: list[str] = []
        self.keys: list[str] = []
        self.final: list[dict[str, Any]] = []

    def call(self, api: httpx.Client, what: str, method: str, url: str, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            r = api.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.errors.append(f"{what}: {exc!r}")
            return None
        self.latencies[what].append(time.perf_counter() - t0)
        if r.status_code >= 300:
            self.errors.append(f"{what}: {r.status_code} {r.text.strip()}")
            return None
        return r.json()

    def run(self) -> None:
        m = self.m
        with m.http() as api:
            self.go.wait()
            for b in range(0, JOBS_PER_CLIENT, BATCH):
                body = orjson.dumps([
                    {"cmd": f"echo {self.rep_grp}.{i} >> {self.record}", "cpus": 0,
                     "memory": "10M", "time": "1m"}
                    for i in range(b, b + BATCH)])
                added = self.call(api, "add", "POST", "/rest/v1/jobs/", content=body,
                                  params={"rep_grp": self.rep_grp})
                if added is None:
                    return
                if len(added) != BATCH:
                    self.errors.append(f"add returned {len(added)} jobs, not {BATCH}")
                self.keys += [j["Key"] for j in added]
                mine = self.call(api, "get rep group", "GET", f"/rest/v1/jobs/{self.rep_grp}")
                if mine is not None and len(mine) != len(self.keys):
                    self.errors.append(f"rep group has {len(mine)} jobs, {len(self.keys)} "
                                       f"were added")
                self.call(api, "get by key", "GET", f"/rest/v1/jobs/{self.keys[-1]}",
                          params={"std": "true", "env": "true"})
                self.call(api, "get running", "GET", "/rest/v1/jobs/",
                          params={"state": "running", "limit": "1"})
            while time.monotonic() < self.deadline:
                mine = self.call(api, "get rep group", "GET", f"/rest/v1/jobs/{self.rep_grp}")
                if mine is None:
                    return
                if len(mine) == JOBS_PER_CLIENT and all(j["State"] == "complete"
                                                        for j in mine):
                    self.final = mine
                    return
                time.sleep(0.5)
            self.errors.append("not all of its jobs completed in time")


def _percentiles(values: list[float]) -> str:
    v = sorted(values)

    def at(q: float) -> float:
        return v[min(len(v) - 1, int(q * len(v)))] * 1000

    return (f"n={len(v):5d}  p50 {at(0.5):7.1f} ms  p90 {at(0.9):7.1f} ms  "
            f"p99 {at(0.99):7.1f} ms  max {v[-1] * 1000:7.1f} ms")


def test_50_clients_while_5000_jobs_run(manager: ManagerHandle, tmp_path: Path) -> None:
    """Steps: 50 clients each add 100 jobs (5 POSTs of 20) that append their name to a
    file, asking after each POST for their rep group, their latest job and the running
    jobs; then each polls its rep group until all its jobs are complete.
    Expected: not one request fails; every rep group always holds exactly what was added
    to it; all 5,000 jobs end complete, each with one attempt, and the file names each job
    exactly once; latency percentiles per kind of request are printed."""
    record = tmp_path / "record"
    go = threading.Event()
    started = time.monotonic()
    clients = [LoadClient(n, manager, record, go, started + DEADLINE)
               for n in range(CLIENTS)]
    for c in clients:
        c.start()
    go.set()
    for c in clients:
        c.join(timeout=max(1.0, started + DEADLINE + 30 - time.monotonic()))
    took = time.monotonic() - started
    errors = [f"{c.name}: {e}" for c in clients for e in c.errors]
    assert errors == [], errors[:20]
    assert all(not c.is_alive() for c in clients)

    latencies: dict[str, list[float]] = collections.defaultdict(list)
    for c in clients:
        for what, values in c.latencies.items():
            latencies[what] += values
    print(f"\n{CLIENTS} clients, {CLIENTS * JOBS_PER_CLIENT} jobs, all complete in "
          f"{took:.1f} s")
    for what in ("add", "get rep group", "get by key", "get running"):
        print(f"  {what:14s} {_percentiles(latencies[what])}")
    print(f"  {'all':14s} {_percentiles([x for v in latencies.values() for x in v])}")

    final = [j for c in clients for j in c.final]
    assert len(final) == CLIENTS * JOBS_PER_CLIENT
    assert {j["Attempts"] for j in final} == {1}
    counts = collections.Counter(record.read_text().split())
    want = {f"load{n}.{i}" for n in range(CLIENTS) for i in range(JOBS_PER_CLIENT)}
    assert set(counts) == want
    assert [name for name, k in counts.items() if k != 1] == []
    with manager.client() as c:
        assert c.status("", state="buried") == [] and c.status("", state="lost") == []
        assert c.status("") == []  # nothing left incomplete
