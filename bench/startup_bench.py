"""Time an empty manager's start: from ``wr manager start`` to its first answer (issue 14).

Each run starts a manager in a fresh temporary HOME (ports chosen by the system), times
until ``GET /rest/version/`` answers over TLS, then stops it. Also times importing the
manager's application module in a fresh interpreter, what every start pays.

Usage: ``python bench/startup_bench.py [RUNS] [SRC ...]``: with source trees (``src``
directories of other checkouts, e.g. of the commit before a change), runs alternate
between them, so that a busy machine's load falls on each alike; without, this checkout.
Prints the median (and spread) of each.
"""

from __future__ import annotations

import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parents[1] / "src"


def _env(src: Path, home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=home, WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production", PYTHONPATH=str(src))
    return env


def one_start(src: Path) -> float:
    """Seconds from running ``wr manager start`` to the version's answer."""
    with tempfile.TemporaryDirectory() as home:
        env = _env(src, home)
        wr = [sys.executable, "-m", "wr.cli.main", "manager"]
        began = time.perf_counter()
        subprocess.run([*wr, "start"], env=env, check=True, capture_output=True,
                       timeout=120)
        mdir = Path(home) / ".wr_production"
        port = orjson.loads((mdir / "manager.info").read_bytes())["web_port"]
        context = ssl.create_default_context(cafile=str(mdir / "ca.pem"))
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"https://localhost:{port}/rest/version/",
                                            context=context, timeout=10) as r:
                    r.read()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        took = time.perf_counter() - began
        subprocess.run([*wr, "stop"], env=env, check=True, capture_output=True, timeout=120)
    return took


def one_import(src: Path) -> float:
    """Seconds a fresh interpreter takes to import the application module (less bare
    start-up, timed inside it)."""
    code = ("import time; t = time.perf_counter(); import wr.manager.app; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(src, "/nonexistent"),
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return float(out)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    trees = [Path(p).resolve() for p in sys.argv[2:]] or [HERE]
    starts: dict[Path, list[float]] = {t: [] for t in trees}
    imports: dict[Path, list[float]] = {t: [] for t in trees}
    for _ in range(runs):
        for tree in trees:  # alternating: load on the machine falls on each alike
            imports[tree].append(one_import(tree))
            starts[tree].append(one_start(tree))
    print(f"load average at the end: {os.getloadavg()}")
    for tree in trees:
        for what, values in (("import wr.manager.app", imports[tree]),
                             ("wr manager start -> first answer", starts[tree])):
            print(f"{tree}: {what}: median {statistics.median(values) * 1000:.0f} ms "
                  f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}, "
                  f"{len(values)} runs)")


if __name__ == "__main__":
    main()
