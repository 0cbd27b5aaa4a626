"""Throughput of wr on a one-node Slurm against the local scheduler (issue 5).

    .venv/bin/python bench/slurm_bench.py            # 2,000 `true` jobs, 3 runs each
    .venv/bin/python bench/slurm_bench.py -n 500 -r 1

Starts a private one-node Slurm (2 cpus; tests/e2e/slurm_cluster.py, so it needs
slurm-wlm and munge installed, and root), then times N one-cpu `true` jobs from one POST
until all are complete with ``wr manager start -s local`` and with ``-s slurm``, and, as a
baseline, N/10 jobs submitted to Slurm one ``sbatch --wrap true`` each (what a
job-per-Slurm-job tool gets). Prints the median jobs/s of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src"), str(ROOT / "bench")]

from run import Manager, wait_all_done  # noqa: E402
from tests.e2e.slurm_cluster import OneNodeSlurm, missing_tools  # noqa: E402


def wr_rate(n: int, scheduler: str, slurm: OneNodeSlurm) -> float:
    m = Manager(SLURM_CONF=str(slurm.conf))
    try:
        m.start("-s", scheduler)
        with m.client() as c:
            t = time.perf_counter()
            c.add([{"cmd": f"true # {i}", "cpus": 1, "memory": "100M", "cwd_matters": True,
                    "cwd": "/tmp"} for i in range(n)], rep_grp="tp", retries=0)
            wait_all_done(c, "tp", n)
            return n / (time.perf_counter() - t)
    finally:
        m.close()


def sbatch_rate(n: int, slurm: OneNodeSlurm) -> float:
    """n jobs of `true`, one Slurm job each, from submission to the last one's end."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        for i in range(n):
            res = slurm.run("sbatch", "--parsable", "-J", f"raw{i}", "-c", "1", "--mem=100M",
                            f"--output={tmp}/%j.out", "--wrap", "true")
            if res.returncode:
                raise RuntimeError(res.stderr)
        while True:
            live = [j for j in slurm.jobs("PENDING", "RUNNING", "COMPLETING", "CONFIGURING")
                    if j["name"].startswith("raw")]
            if not live:
                break
            time.sleep(0.02)
        return n / (time.perf_counter() - t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="jobs per run")
    parser.add_argument("-r", "--runs", type=int, default=3, help="runs of each")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print(f"Slurm is not installed ({', '.join(missing)} missing): "
              f"apt-get install slurm-wlm munge", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="wr_slurm_bench_") as tmp:
        slurm = OneNodeSlurm(Path(tmp))
        slurm.start()
        try:
            results = {}
            for label, fn in (
                    ("wr -s local", lambda: wr_rate(args.n, "local", slurm)),
                    ("wr -s slurm", lambda: wr_rate(args.n, "slurm", slurm)),
                    ("sbatch per job", lambda: sbatch_rate(max(args.n // 10, 10), slurm))):
                print(f"running {label} ...", file=sys.stderr, flush=True)
                values = [fn() for _ in range(args.runs)]
                results[label] = (statistics.median(values), values)
        finally:
            slurm.stop()
    local = results["wr -s local"][0]
    print(f"{args.n:,} x `true` (1 cpu each) on a one-node Slurm with {slurm.cpus} cpus; "
          f"median of {args.runs}")
    for label, (value, values) in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"{label:<15} {value:8.1f} jobs/s  ({value / local:.2f} x local; runs: {runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
