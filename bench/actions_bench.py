"""Time bulk management commands against a real manager (issue 3, part 6).

1. ``wr retry -i bench-retry`` on N buried jobs (default 100,000). The buried jobs are
   written into the manager's database before it starts (exactly what a manager that had
   buried them would have stored: attempts 1, exit code 1, "command exited non-zero"), so
   the bench does not spend minutes running ``exit 1``; the manager loads them as buried.
   They sit in a limit group with limit 0, so once retried they wait as ready instead of
   all running and disturbing the next measurement.
2. ``wr mod -i bench-mod --priority 5`` on M queued jobs (default 10,000), added over REST
   and held back by a dependency on a job that never runs.

Usage: ``python bench/actions_bench.py [N] [M]``. Prints seconds for each command, as the
user sees it (a ``wr`` process, start-up included), and for the manager start with N
jobs to load. Runs in a temporary HOME with its own manager; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from wr.jobs import FailReason, Job, State, compute_key
from wr.store import Store


def prefill(db: Path, n: int) -> None:
    """Store n buried jobs (and the limit that keeps them from running once retried)."""
    now = time.time()
    jobs = []
    for i in range(n):
        cmd = f"exit 1 # bench retry {i}"
        jobs.append(Job(
            key=compute_key(cmd), cmd=cmd, rep_grp="bench-retry", req_grp="exit",
            limit_grps=["bench-hold"], retries=0, state=State.BURIED, until_buried=0,
            attempts=1, exited=True, exitcode=1, fail_reason=str(FailReason.EXIT),
            started=now - 2, ended=now - 1, added=now - 3, seq=i + 1))

    async def write() -> None:
        await asyncio.gather(store.add_jobs(jobs), store.set_limit("bench-hold", 0))

    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db)
    store.open()
    try:
        asyncio.run(write())
    finally:
        store.close()


def wr(env: dict[str, str], *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wr.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"wr {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return took, proc.stderr.strip()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
        env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
                   WR_DEPLOYMENT="production")
        mdir = home / ".wr_production"
        t = time.perf_counter()
        prefill(mdir / "db", n)
        print(f"prefill: {n:,} buried jobs stored in {time.perf_counter() - t:.2f} s")
        took, _ = wr(env, "manager", "start", "--timeout", "300")
        print(f"wr manager start (loading {n:,} jobs): {took:.2f} s")
        try:
            took, msg = wr(env, "retry", "-i", "bench-retry")
            print(f"wr retry -i bench-retry: {took:.2f} s  [{msg}]")

            from wr.client import Client

            info = orjson.loads((mdir / "manager.info").read_bytes())
            token = (mdir / "client.token").read_text().strip()
            with Client(f"https://localhost:{info['web_port']}", token,
                        ca_file=str(mdir / "ca.pem"), timeout=600) as client:
                client.add([{"cmd": "true # bench blocker", "dep_grps": ["bench-never"],
                             "limit_grps": ["bench-hold"], "cpus": 0}], rep_grp="bench-block")
                t = time.perf_counter()
                client.add([{"cmd": f"true # bench mod {i}", "deps": ["bench-never"],
                             "cpus": 0} for i in range(m)], rep_grp="bench-mod")
                print(f"add {m:,} dependent jobs over REST: {time.perf_counter() - t:.2f} s")
                took, msg = wr(env, "mod", "-i", "bench-mod", "--priority", "5")
                print(f"wr mod -i bench-mod --priority 5: {took:.2f} s  [{msg}]")
                took, msg = wr(env, "mod", "-i", "bench-mod", "--memory", "2G", "--time",
                               "2h")
                print(f"wr mod -i bench-mod --memory 2G --time 2h: {took:.2f} s  [{msg}]")
                took, msg = wr(env, "remove", "-i", "bench-retry")
                print(f"wr remove -i bench-retry: {took:.2f} s  [{msg}]")
        finally:
            wr(env, "manager", "stop")


if __name__ == "__main__":
    main()
