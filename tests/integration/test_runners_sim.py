"""bench/runners_sim.py keeps working: a short run at small N, as the benchmark runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SIM = Path(__file__).resolve().parents[2] / "bench" / "runners_sim.py"


def test_twenty_simulated_runners_complete_jobs_and_none_is_falsely_lost(tmp_path) -> None:
    """Steps: run the simulator with 20 runners in 2 processes (every 4th holding its jobs
    2 s with keep-alives every 0.5 s, the others ending theirs at once, 4 per message) for
    a 4 s window against a real manager, and against its stand-in server.
    Expected: jobs are reserved and ended with no errors and no empty reserve; keep-alives
    were answered; no job was marked lost; /metrics counted the same completions and
    reservations as the simulator (within what two scrapes' timing can shift) and all 20
    connections; the baseline run completed too."""
    out = tmp_path / "sim.json"
    proc = subprocess.run(
        [sys.executable, str(SIM), "--runners", "20", "--procs", "2", "--duration", "4",
         "--warmup", "1", "--touching", "0.25", "--job-time", "2", "--touch", "0.5",
         "--many", "4", "--jobs", "30000", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())["rows"][0]
    sim, base = row["manager"], row["baseline"]
    assert sim["errors"] == {} and sim["empty_reserves"] == 0
    assert sim["ends_per_s"] > 0 and sim["reserves_per_s"] > 0 and sim["starts"] > 0
    assert sim["touches"] > 0 and sim["touch_p99_ms"] > 0
    assert sim["false_lost"] == 0 and sim["metrics"]["lost_now"] == 0
    assert sim["metrics"]["connections"] == 20
    ends = sim["ends_per_s"] * row["duration"]
    reserves = sim["reserves_per_s"] * row["duration"]
    for seen, counted in ((ends, sim["metrics"]["completed"]),
                          (reserves, sim["metrics"]["reserved"])):
        assert abs(seen - counted) <= 0.25 * counted + 50, (seen, counted)
    assert base["ops_per_s"] > 0 and base["errors"] == {}
