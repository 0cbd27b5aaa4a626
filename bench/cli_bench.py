"""Time the command line at scale: ``wr status -i X -o summary`` (and ``-o counts``) over a
rep group of N completed jobs, and ``wr add`` of N commands.

Usage: ``python bench/cli_bench.py [N] [DIR]`` (N defaults to 100,000; DIR, where the
throw-away home and database go, to a temporary directory).

The history is built honestly but quickly: before the manager starts, N jobs go into its
database with `wr.store.Store.add_jobs` and are then archived as completed, with varied peak
memory, disk, wall and CPU times, exactly as a manager archives jobs its runners finished.
The manager then starts on that database, and the real ``wr`` command is timed as a user
would run it (a new Python process each time, start-up included). For ``wr add`` the manager
is paused first, so the jobs being added do not start running and compete for the CPU.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REP_GRP = "bench_history"


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production")
    return env


async def fill_history(db: Path, n: int, groups: int = 1) -> None:
    """n completed jobs, in ``groups`` rep groups (REP_GRP, or REP_GRP_0, REP_GRP_1, ...),
    stored and archived 100,000 at a time."""
    from wr.jobs import Job, State, compute_key
    from wr.store import Store

    store = Store(db)
    store.open()
    try:
        start = time.time() - 86_400
        for first in range(0, n, 100_000):
            jobs = []
            for i in range(first, min(first + 100_000, n)):
                cmd = f"bench_step --sample {i} --out result{i}.txt"
                rep_grp = REP_GRP if groups == 1 else f"{REP_GRP}_{i % groups}"
                jobs.append(Job(key=compute_key(cmd, cwd="/tmp"), cmd=cmd, rep_grp=rep_grp,
                                req_grp="bench_step", cores=1.0))
            await store.add_jobs(jobs)
            for i, job in enumerate(jobs, first):
                job.state = State.COMPLETE
                job.exited = True
                job.exitcode = 0
                job.attempts = 1
                job.started = start + i * 0.05
                job.ended = job.started + 2.0 + (i % 17) * 0.25
                job.peak_ram = 50 + i % 200
                job.peak_disk = i % 10
                job.cpu_time = 1.5 + (i % 13) * 0.1
                job.host, job.host_ip, job.pid = "bench", "127.0.0.1", 1000 + i
            await store.archive(jobs)
    finally:
        store.close()


def wr(env: dict[str, str], *args: str, cwd: Path
       ) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wr.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"wr {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return took, proc


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory(dir=sys.argv[2] if len(sys.argv) > 2 else None) as tmp:
        home = Path(tmp)
        env = environment(home)
        os.environ.update(env)
        from wr.config import load_config_from_process

        config = load_config_from_process(None)
        config.manager_dir.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        asyncio.run(fill_history(config.db_file, n))
        print(f"history: {n:,} completed jobs stored in {time.perf_counter() - began:.1f} s "
              f"(set-up, not timed below)")
        wr(env, "manager", "start", cwd=home)
        try:
            for fmt in ("summary", "counts"):
                took, proc = wr(env, "status", "-i", REP_GRP, "-o", fmt, cwd=home)
                first = proc.stdout.splitlines()[0]
                print(f"wr status -i {REP_GRP} -o {fmt}: {took:.2f} s over {n:,} completed "
                      f"jobs ({n / took:,.0f} jobs/s)\n  {first[:150]}")

            from wr.client import Client

            with Client.for_deployment(config=config) as client:
                client.pause()
            lines = home / "commands.txt"
            lines.write_text("".join(f"bench_add --sample {i}\n" for i in range(n)))
            took, proc = wr(env, "add", "-f", str(lines), "-i", "bench_add", cwd=home)
            print(f"wr add of {n:,} lines: {took:.2f} s ({n / took:,.0f} jobs/s)\n"
                  f"  {proc.stderr.strip()}")
        finally:
            wr(env, "manager", "stop", cwd=home)


if __name__ == "__main__":
    main()
