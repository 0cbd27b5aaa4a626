"""Nothing is lost across a manager stop and start, and nothing runs twice."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.integration


def test_stop_and_start_in_the_middle_of_1000_jobs(make_manager, tmp_path: Path) -> None:
    """Steps: post 1,000 short jobs in one request, each appending its number to a file when
    it completes; stop the manager once some have completed; start it again.
    Expected: every job ends complete, recorded once in the file (so nothing ran to
    completion twice and nothing was lost); jobs the stop interrupted were not charged an
    attempt or buried."""
    m: ManagerHandle = make_manager()
    m.start()
    record = tmp_path / "done.txt"
    jobs = [{"cmd": f"sleep 0.0{i % 5} && echo {i} >> {record}", "cpus": 1}
            for i in range(1000)]
    with m.client() as client:
        added = client.add(jobs, rep_grp="thousand", retries=0)
    assert len(added) == 1000

    def some_done() -> bool:
        return record.exists() and len(record.read_text().split()) >= 100

    wait_for(some_done, timeout=120, what="100 jobs to complete")
    stopped = m.stop()
    assert stopped.returncode == 0, stopped.stderr
    assert "was gracefully shut down" in stopped.stderr
    done_at_stop = len(record.read_text().split())
    assert done_at_stop < 1000, "the stop came too late to interrupt anything"

    m.start()
    client = m.client()

    def all_complete() -> list[dict] | None:
        got = client.status("thousand")
        return got if len(got) == 1000 and all(j["State"] == "complete" for j in got) else None

    final = wait_for(all_complete, timeout=300, interval=0.5, what="all 1000 complete")
    counts = collections.Counter(record.read_text().split())
    assert sorted(map(int, counts)) == list(range(1000))
    assert [n for n, c in counts.items() if c != 1] == []
    assert {j["Attempts"] for j in final} == {1}
    assert client.status("", state="buried") == []
    client.close()
