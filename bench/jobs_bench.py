"""The jobs users actually add, run to the end, beside ``xargs`` (issue 17).

Throughput: N commands (2,000 × ``true``, 500 × ``sleep 0.01``), timed from the start of
the add to the last completion, each way of adding them run in turn with its baseline,
``xargs -P <cores> bash -c``, in every repetition (so a slow moment of a shared machine
hits both):

* ``wr add`` with default options, run in a fresh directory (its default cwd): each job
  gets a unique working directory, its TMPDIR, and wr's default ``on_exit`` cleanup;
* one REST POST (``/rest/v1/jobs/``) with default options (cpus 0, so up to twice as many
  runners as cores; a unique directory each, whose ``cwd/`` stays, as wr leaves it): only
  ``cwd`` is given, so the directories it leaves go in a directory the bench removes
  afterwards, not in /tmp;
* the fast path the earlier benchmarks measured: REST, ``cpus 1``, ``cwd_matters`` in
  /tmp (no directory made or removed).

Every manager is started and left idle for IDLE_S before its jobs are added (a user's
manager is up before they add jobs; its spare runners are ready by then). Completion is
watched with the counts endpoint, often only near the end, so the watching costs the
manager little.

Latency: the time from ``wr add`` returning to its job starting, for one job that writes
``$EPOCHREALTIME`` (when bash ran it) to a file: with a runner up (waiting for work), and
from an idle manager with no runner (after IDLE_S of nothing). Its baseline is the same
command started by this process with ``subprocess`` (what starting bash costs here). It can
be negative: the manager answers the add before the ``wr`` process has exited. The fast-path
rows of the earlier benchmarks follow (one ``true`` by REST with ``cwd_matters``, from the
POST to seeing it complete).

Usage: ``python bench/jobs_bench.py [--runs 3] [--only throughput,latency]``; `bench/run.py`
runs both as its first steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import CORES, Manager  # noqa: E402

IDLE_S = 2.0
"""Seconds a manager is left idle after it starts, or between latency samples from cold."""

XARGS = f"xargs -P {CORES} bash -c"


def xargs_rate(cmd: str, n: int) -> float:
    """The baseline: n commands through ``xargs -P <cores> bash -c``; jobs/s."""
    t = time.perf_counter()
    subprocess.run(f"seq {n} | xargs -P {CORES} -I{{}} bash -c '{cmd}'", shell=True,
                   check=True)
    return n / (time.perf_counter() - t)


def wait_complete(client: Any, rep_grp: str, n: int, deadline_s: float = 1800) -> None:
    """Until n jobs of ``rep_grp`` are complete (or buried: then raise). Polls every
    0.1 s until 90 % are done, then every 5 ms, so the end is seen within ~5 ms without
    the polls costing the manager much."""
    deadline = time.monotonic() + deadline_s
    while True:
        counts = client.counts(rep_grp)
        done = counts.get("complete", 0)
        if counts.get("buried", 0):
            raise RuntimeError(f"{counts['buried']} jobs of {rep_grp} were buried")
        if done >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {n} jobs of {rep_grp} completed")
        time.sleep(0.1 if done < 0.9 * n else 0.005)


def _idle_manager(**env: str) -> Manager:
    m = Manager(**env)
    m.start()
    time.sleep(IDLE_S)
    return m


def wr_add_rate(cmd: str, n: int) -> float:
    """n commands by ``wr add`` with default options, from a fresh directory; jobs/s."""
    m = _idle_manager()
    work = tempfile.mkdtemp(prefix="wr_bench_cwd_")
    try:
        lines = "".join(f"{cmd} # {i}\n" for i in range(n))
        with m.client() as c:
            t = time.perf_counter()
            added = subprocess.run([sys.executable, "-m", "wr.cli.main", "add", "-i", "tp"],
                                   env=m.env, input=lines, capture_output=True, text=True,
                                   cwd=work, check=False)
            if added.returncode:
                raise RuntimeError(f"wr add failed: {added.stderr}")
            wait_complete(c, "tp", n)
            return n / (time.perf_counter() - t)
    finally:
        m.close()
        _check_empty(work)


def rest_rate(cmd: str, n: int, fast: bool = False) -> float:
    """n commands in one ``POST /rest/v1/jobs/`` with default options (only a cwd the
    bench can clean up), or the fast path (cpus 1, cwd_matters in /tmp); jobs/s."""
    m = _idle_manager()
    work = tempfile.mkdtemp(prefix="wr_bench_cwd_")
    try:
        if fast:
            jobs = [{"cmd": f"{cmd} # {i}", "cpus": 1, "cwd_matters": True, "cwd": "/tmp"}
                    for i in range(n)]
        else:
            jobs = [{"cmd": f"{cmd} # {i}", "cwd": work} for i in range(n)]
        with m.client() as c:
            t = time.perf_counter()
            c.add(jobs, rep_grp="tp")
            wait_complete(c, "tp", n)
            return n / (time.perf_counter() - t)
    finally:
        m.close()
        shutil.rmtree(work, ignore_errors=True)


def _check_empty(work: str) -> None:
    """wr add's default cleanup leaves nothing behind; say so loudly if it did."""
    left = [root for root, dirs, files in os.walk(work) if files or (root != work and not dirs)]
    shutil.rmtree(work, ignore_errors=True)
    if left:
        raise RuntimeError(f"wr add's cleanup left {len(left)} directories, e.g. {left[0]}")


WAYS: dict[str, Callable[[str, int], float]] = {
    "wr add, default options": wr_add_rate,
    "one REST POST, default options": rest_rate,
    "fast path (REST, cpus 1, cwd_matters)": lambda cmd, n: rest_rate(cmd, n, fast=True),
}

TARGETS = {
    ("true", "wr add, default options"): 0.8,
    ("true", "one REST POST, default options"): 0.8,
    ("sleep 0.01", "wr add, default options"): 0.95,
}
"""Issue 17's targets, as ratios to xargs measured in the same run."""


def bench_throughput(runs: int, out: dict[str, Any]) -> None:
    for cmd, n, ways in (("true", 2000, list(WAYS)),
                         ("sleep 0.01", 500, ["wr add, default options",
                                              "fast path (REST, cpus 1, cwd_matters)"])):
        base: list[float] = []
        ours: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(runs):
            base.append(xargs_rate(cmd, n))
            for way in ways:
                ours[way].append(WAYS[way](cmd, n))
        b = statistics.median(base)
        for way in ways:
            value = statistics.median(ours[way])
            target = TARGETS.get((cmd, way))
            out[f"throughput: {n:,} x {cmd}, {way}"] = {
                "value": round(value, 1), "unit": "jobs/s", "baseline": round(b, 1),
                "baseline_name": XARGS, "ratio": round(value / b, 3),
                "ratios": [round(v / x, 3) for v, x in zip(ours[way], base, strict=True)],
                "runs": [round(v, 1) for v in ours[way]],
                "baseline_runs": [round(v, 1) for v in base],
                "target": f"ratio >= {target}" if target else "(earlier rows: fast path)",
                "met": None if target is None else value / b >= target}


# -- latency -------------------------------------------------------------------------------

def _stamped_start(m: Manager, work: Path, i: int) -> float:
    """ms from ``wr add`` returning to its job's bash writing the time."""
    stamp = work / f"t{i}"
    t0 = time.time()
    added = subprocess.run([sys.executable, "-m", "wr.cli.main", "add", "-i", f"lat{i}"],
                           env=m.env, input=f"echo $EPOCHREALTIME > {stamp}\n",
                           capture_output=True, text=True, cwd=work, check=False)
    returned = time.time()
    if added.returncode:
        raise RuntimeError(f"wr add failed: {added.stderr}")
    deadline = t0 + 120
    while not (stamp.exists() and stamp.read_text().strip()):
        if time.time() > deadline:
            raise RuntimeError(f"the job of wr add {i} did not start within 120 s")
        time.sleep(0.001)
    return (float(stamp.read_text()) - returned) * 1000


def _bash_start_ms(work: Path) -> float:
    """The baseline: the same command started by this process (subprocess, then bash)."""
    stamp = work / "baseline"
    t = time.time()
    subprocess.run(["bash", "-c", f"echo $EPOCHREALTIME > {stamp}"], check=True)
    return (float(stamp.read_text()) - t) * 1000


def _runners_of(m: Manager) -> list[psutil.Process]:
    """The manager's runners (not its spares)."""
    try:
        children = psutil.Process(m.info["pid"]).children()
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            if "--standby" not in child.cmdline() or child.name() == "wr-keeper":
                found.append(child)
        except psutil.Error:
            continue
    return found


def bench_latency(out: dict[str, Any], samples: int = 10) -> None:
    work = Path(tempfile.mkdtemp(prefix="wr_bench_lat_"))
    try:
        baseline = statistics.median(_bash_start_ms(work) for _ in range(samples))
        m = _idle_manager(WR_RUNNERIDLETIMEOUT="60")
        try:
            # A runner is now up and waiting: two jobs, since the first one's learned
            # memory and time put the next in a scheduler group of their own.
            _stamped_start(m, work, -1)
            _stamped_start(m, work, -2)
            warm = [_stamped_start(m, work, i) for i in range(samples)]
        finally:
            m.close()
        m = _idle_manager(WR_RUNNERIDLETIMEOUT="0.2")
        cold = []
        try:
            for i in range(samples):
                deadline = time.monotonic() + 60
                while _runners_of(m) and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(IDLE_S)
                cold.append(_stamped_start(m, work, 100 + i))
        finally:
            m.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, values, target in (("runner up", warm, 20), ("idle manager, no runner", cold, 100)):
        value = statistics.median(values)
        out[f"latency: wr add returning -> its job starting, {name}"] = {
            "value": round(value, 1), "unit": "ms", "baseline": round(baseline, 1),
            "baseline_name": "bash started by subprocess",
            "runs": [round(v, 1) for v in values], "target": f"< {target} ms",
            "met": value < target}
    bench_latency_fast_path(out, samples * 2)


def bench_latency_fast_path(out: dict[str, Any], samples: int) -> None:
    """The earlier rows: one ``true`` by REST with ``cwd_matters``, from the POST to
    seeing it complete, with a runner up and from cold."""
    def one(c: Any, tag: str) -> float:
        t = time.perf_counter()
        key = c.add([{"cmd": f"true # {tag}", "cpus": 1, "cwd_matters": True}],
                    rep_grp=tag)[0]["Key"]
        while c.status(key)[0]["State"] != "complete":
            time.sleep(0.001)
        return (time.perf_counter() - t) * 1000

    m = _idle_manager(WR_RUNNERIDLETIMEOUT="60")
    try:
        with m.client() as c:
            one(c, "lat-warmup")
            one(c, "lat-warmup2")
            warm = [one(c, f"lat{i}") for i in range(samples)]
    finally:
        m.close()
    m = _idle_manager(WR_RUNNERIDLETIMEOUT="0.2")
    try:
        with m.client() as c:
            cold = []
            for i in range(max(samples // 2, 5)):
                deadline = time.monotonic() + 60
                while _runners_of(m) and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(IDLE_S)
                cold.append(one(c, f"cold{i}"))
    finally:
        m.close()
    for name, values, target in (("runner up", warm, 20), ("from cold", cold, 150)):
        value = statistics.median(values)
        out[f"latency: fast path, one true by REST to complete, {name}"] = {
            "value": round(value, 1), "unit": "ms", "runs": [round(v, 1) for v in values],
            "target": f"< {target} ms (earlier rows)", "met": value < target}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="throughput,latency")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if "throughput" in args.only:
        bench_throughput(args.runs, out)
    if "latency" in args.only:
        bench_latency(out)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
