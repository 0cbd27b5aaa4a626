"""Throughput of wr on a one-node Slurm against the local scheduler (issue 5), and how long
wr takes to rerun the jobs of a node that dies on a 3-node Slurm (issue 16).

    .venv/bin/python bench/slurm_bench.py            # 2,000 `true` jobs, 3 runs each
    .venv/bin/python bench/slurm_bench.py -n 500 -r 1
    .venv/bin/python bench/slurm_bench.py --recovery -r 3

Starts a private one-node Slurm (2 cpus; tests/e2e/slurm_cluster.py, so it needs
slurm-wlm and munge installed, and root), then times N one-cpu `true` jobs from one POST
until all are complete with ``wr manager start -s local`` and with ``-s slurm``, and, as a
baseline, N/10 jobs submitted to Slurm one ``sbatch --wrap true`` each (what a
job-per-Slurm-job tool gets). Prints the median jobs/s of each.

``--recovery`` builds the 3-node Slurm of tests/e2e/slurm_nodes.py (root and ip netns
needed) for each run, starts a manager on its head address (``ttr`` 3 s, a keep-alive
every 0.5 s), runs 12 one-cpu jobs of 8 s and cuts the power of a node while 2 of them run
there; it prints the seconds from the cut to the release of those jobs, from the manager's
event stream, and to the end of all 12.
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


def node_death(root: Path) -> tuple[float, float]:
    """One run of ``--recovery``: seconds from a node's power cut to the release of the 2
    jobs it ran, and to the end of all 12 jobs."""
    import httpx
    from tests.conftest import FAST_TIMINGS
    from tests.e2e.job_history import job_history
    from tests.e2e.slurm_cluster import free_port
    from tests.e2e.slurm_nodes import MultiNodeSlurm

    from wr.client import Client
    from wr.security import client_ssl_context

    cluster = MultiNodeSlurm(root / "slurm")
    head = cluster.head
    m = Manager(SLURM_CONF=str(cluster.conf), WR_MANAGERHOST=head, WR_MANAGERCERTDOMAIN=head,
                **FAST_TIMINGS)
    m.env.update(WR_MANAGERPORT=str(free_port()), WR_MANAGERWEB=str(free_port()))
    try:
        cluster.start()
        m.start("-s", "slurm")
        url = f"https://{head}:{m.info['web_port']}"
        token = (m.dir / "client.token").read_text().strip()
        with Client(url, token, ca_file=str(m.dir / "ca.pem"), timeout=60) as c:
            c.add([{"cmd": f"sleep 8 # {i}", "cpus": 1, "memory": "100M", "retries": 2}
                   for i in range(12)], rep_grp="death")
            while True:
                on_n2 = [j for j in c.status("death", state="running")
                         if j["State"] == "running" and j["Host"] == "n2"]
                if len(on_n2) == 2:
                    break
                time.sleep(0.05)
            died = time.time()
            cluster.kill_node("n2")
            wait_all_done(c, "death", 12, poll=0.2)
            done = time.time() - died
        with httpx.Client(verify=client_ssl_context(m.dir / "ca.pem"), trust_env=False,
                          headers={"Authorization": f"Bearer {token}"}) as api:
            history = job_history(api, url, "death")
        released = max(next(e["Time"] for e in history[j["Key"]]
                            if e["From"] in ("running", "lost")
                            and e["To"] in ("delayed", "ready", "buried")) for j in on_n2)
        return released - died, done
    finally:
        m.close()
        cluster.stop()


def recovery(runs: int) -> int:
    from tests.e2e.slurm_nodes import SLURMD_TIMEOUT, namespaces_problem

    problem = namespaces_problem()
    if problem:
        print(f"no multi-node Slurm: {problem}", file=sys.stderr)
        return 1
    results = []
    for i in range(runs):
        print(f"node death, run {i + 1} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="wr_slurm_nodes_") as tmp:
            results.append(node_death(Path(tmp)))
    print(f"a node cut off while running 2 of 12 jobs of 8 s on a 3-node Slurm "
          f"(SlurmdTimeout {SLURMD_TIMEOUT} s, ttr 3 s); {runs} runs")
    print("released after  " + ", ".join(f"{r:.1f}" for r, _ in results) + " s")
    print("all done after   " + ", ".join(f"{d:.1f}" for _, d in results) + " s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="jobs per run")
    parser.add_argument("-r", "--runs", type=int, default=3, help="runs of each")
    parser.add_argument("--recovery", action="store_true",
                        help="time the rerun of a dead node's jobs on a 3-node Slurm instead")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print(f"Slurm is not installed ({', '.join(missing)} missing): "
              f"apt-get install slurm-wlm munge", file=sys.stderr)
        return 1
    if args.recovery:
        return recovery(args.runs)
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
