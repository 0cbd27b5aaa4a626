"""A job's unique working directory is gone before anyone is told the job ended, though a
runner now removes it while its next command runs (wr.workdirs.Sweeper, issue 17).

The check cannot pass by chance: a job seen complete was reported complete by its runner,
and its runner reports only once its removals are done, so its directory must be gone by
the time its status is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.integration

CLEANUP = [{"cleanup": True}]


def _dirs_of_complete(c: Any, rep_grp: str, base: Path) -> tuple[int, list[str]]:
    """How many jobs are complete, and the unique directories of those still on disk."""
    complete, present = 0, []
    for job in c.status(rep_grp):
        if job["State"] != "complete":
            continue
        complete += 1
        unique = base / os.path.dirname(job["Cwd"].lstrip("/"))
        if os.path.exists(unique):
            present.append(str(unique))
    return complete, present


def test_no_job_is_complete_while_its_directory_is_there(manager: ManagerHandle,
                                                         tmp_path: Path) -> None:
    """Steps: add 120 jobs with wr add's default cleanup (two runners, batches of short
    jobs, a few leaving files), and one without cleanup; read their statuses over and over
    until all are complete. Expected: every time, no complete job's unique directory
    exists; at the end the base directory is empty again (empty parents removed); the job
    without cleanup kept its cwd/ and what it wrote there, and lost its tmp/."""
    base = tmp_path / "base"
    jobs = [{"cmd": f"echo {i} > out; echo {i} > $TMPDIR/t" if i % 10 == 0 else f"true # {i}",
             "cpus": 1, "cwd": str(base), "on_exit": CLEANUP} for i in range(120)]
    with manager.client() as c:
        c.add(jobs, rep_grp="swept")
        [kept] = c.add([{"cmd": "echo kept > out; echo t > $TMPDIR/t", "cpus": 1,
                         "cwd": str(base)}], rep_grp="kept")
        seen = []

        def all_complete() -> bool:
            complete, present = _dirs_of_complete(c, "swept", base)
            assert not present, f"complete jobs whose directories are still there: {present}"
            seen.append(complete)
            return complete == len(jobs)

        wait_for(all_complete, timeout=120, interval=0.01, what="the jobs to complete")
        done = wait_for(lambda: (j := c.status(kept["Key"])[0])["State"] == "complete" and j,
                        what="the kept job to complete")
    assert len(set(seen)) > 1  # looked while jobs were completing, not only at the end
    unique = base / os.path.dirname(done["Cwd"].lstrip("/"))
    assert os.listdir(unique) == ["cwd"]
    assert (unique / "cwd" / "out").read_text() == "kept\n"
    os.remove(unique / "cwd" / "out")
    os.rmdir(unique / "cwd")
    os.rmdir(unique)
    wait_for(lambda: not manager.runner_pids(), what="the runners to leave")
    # Only the kept job's (now empty) parents are left: every cleaned-up job took its own.
    leftovers = [root for root, dirs, files in os.walk(base) if files or not dirs]
    assert leftovers in ([], [str(unique.parent)]), leftovers
