"""Short jobs cost runners fewer messages, and nobody can tell: a job that ends within
wr.runner.START_REPORT_DELAY has its start reported with its end, and runners of such jobs
reserve several at once and report their ends together (wr.manager.runner_ws).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManagerHandle, wait_for
from tests.integration.event_stream import HAPPY_PATH, client, events
from tests.integration.fake_runner import GROUP, HELD, FakeRunner, add_jobs, hogged, job_states

pytestmark = pytest.mark.integration


def _ended(key: str, at: float, pid: int = 4242) -> dict[str, Any]:
    """A runner's report of a job that completed, carrying its start (at ``at``)."""
    return {"key": key, "report": {"outcome": "archive", "ended": at + 0.01},
            "stdout": "", "stderr": "", "start": {"pid": pid, "host": "h", "ip": "", "at": at}}


def test_a_long_job_is_seen_running_with_its_start(manager: ManagerHandle) -> None:
    """Steps: run `sleep 2`; look at it while it runs, and once it is complete.
    Expected: it is seen running with Started, Pid and Host set (its runner reported the
    start on its own); it completes with the same Started, Ended after it and a walltime
    of about 2 s."""
    with client(manager) as api:
        [key] = add_jobs(api, [{"cmd": "sleep 2 # long", "cpus": 1}], "long")
        running = wait_for(lambda: (j := job_states(api, key)[0])["State"] == "running" and j,
                           what="the job to be seen running")
        assert running["Started"] and running["Pid"] > 0 and running["Host"]
        assert running["Attempts"] == 1
        done = wait_for(lambda: (j := job_states(api, key)[0])["State"] == "complete" and j,
                        what="the job to complete")
        assert done["Started"] == running["Started"] and done["Pid"] == running["Pid"]
        assert done["Ended"] >= done["Started"]
        assert 1.5 < done["Walltime"] < 10


def test_short_jobs_go_through_running_and_run_exactly_once(manager: ManagerHandle,
                                                            tmp_path: Path) -> None:
    """Steps: open the event stream; add 200 jobs that each append their number to a file
    and end at once (two runners, batches of them each).
    Expected: every job went ready -> reserved -> running -> complete, each change seen
    once; each is complete with Started <= Ended and its Pid, Host, Walltime, CPUtime and
    PeakRAM filled; each number is in the file exactly once."""
    record = tmp_path / "record"
    n = 200
    body = [{"cmd": f"echo {i} >> {record}", "cpus": 1} for i in range(n)]
    paths: dict[str, list[tuple[str | None, str]]] = {}
    with client(manager) as api:
        with api.stream("GET", "/rest/v1/events/", params={"rep_grp": "short"}) as r:
            add_jobs(api, body, "short")
            done = 0
            for _, e in events(r):
                paths.setdefault(e["Key"], []).append((e["From"], e["To"]))
                done += e["To"] == "complete"
                if done == n:
                    break
        jobs = api.get("/rest/v1/jobs/short", params={"state": "complete"}).json()
    assert len(paths) == n
    assert all(path == HAPPY_PATH for path in paths.values()), paths
    assert len(jobs) == n
    for job in jobs:
        assert job["Attempts"] == 1 and job["Exitcode"] == 0
        assert 0 < job["Started"] <= job["Ended"]
        assert job["Pid"] > 0 and job["Host"]
        assert job["Walltime"] >= 0 and job["CPUtime"] >= 0 and job["PeakRAM"] >= 1
    assert sorted(int(x) for x in record.read_text().split()) == list(range(n))


def test_a_runner_reserves_several_jobs_and_ends_them_together(make_manager: Any) -> None:
    """Steps: as a runner, reserve with many=3 while 4 jobs are ready; report the ends of
    the 3, each carrying its start, in one message; send that message again; then report
    the 4th together with one of the first 3 again.
    Expected: 3 jobs are reserved at once (the best first); they complete with the
    starts reported; the repeat is refused as a whole; in the mixed one only the repeat is
    refused and the 4th completes."""
    with hogged(make_manager) as (m, api, _):
        keys = add_jobs(api, [{"cmd": f"echo {n}", **HELD} for n in "abcd"], "batch")

        async def scenario() -> None:
            async with FakeRunner(m, "runner-b", GROUP) as r:
                got = await r.ask("reserve", timeout=5, many=3)
                held = [got["job"]["key"], *(j["key"] for j in got["more"])]
                assert held == keys[:3]
                assert all(job_states(api, k)[0]["State"] == "reserved" for k in held)
                at = time.time() - 1
                ends = [_ended(k, at) for k in held]
                reply = await r.ask("end", ends=ends, reserve=None)
                assert "error" not in reply and "refused" not in reply
                assert reply["job"] is None
                for k in held:
                    job = job_states(api, k)[0]
                    assert job["State"] == "complete"
                    assert job["Started"] == pytest.approx(at) and job["Pid"] == 4242
                assert "error" in await r.ask("end", ends=ends, reserve=None)
                got = await r.ask("reserve", timeout=5)
                assert got["job"]["key"] == keys[3]
                reply = await r.ask("end", ends=[_ended(keys[3], at), ends[0]], reserve=None)
                assert "error" not in reply
                assert list(reply["refused"]) == [keys[0]]
                assert job_states(api, keys[3])[0]["State"] == "complete"

        asyncio.run(scenario())
        complete = api.get("/rest/v1/jobs/batch", params={"state": "complete"}).json()
        assert sorted(j["Key"] for j in complete) == sorted(keys)
    m.stop()


def test_a_fair_share_of_ready_jobs(make_manager: Any) -> None:
    """Steps: with 4 jobs ready and two runners of their group connected, one asks for 16,
    then the other.
    Expected: the first gets 2, half of what is ready, and the other 1, half of what is
    left."""
    with hogged(make_manager) as (m, api, _):
        keys = add_jobs(api, [{"cmd": f"echo {n}", **HELD} for n in "abcd"], "fair")

        async def scenario() -> None:
            async with FakeRunner(m, "runner-x", GROUP) as x, \
                    FakeRunner(m, "runner-y", GROUP) as y:
                await y.ask("touch", key="none")  # y is connected before x asks
                got = await x.ask("reserve", timeout=5, many=16)
                assert [got["job"]["key"], *(j["key"] for j in got["more"])] == keys[:2]
                got = await y.ask("reserve", timeout=5, many=16)
                assert got["job"]["key"] == keys[2] and "more" not in got

        asyncio.run(scenario())
        # Their connections closed before they started anything: all 4 are ready again.
        wait_for(lambda: all(job_states(api, k)[0]["State"] == "ready" for k in keys),
                 what="the reservations to be given back")
    m.stop()


def test_a_dropped_connection_keeps_the_runners_reservations(make_manager: Any) -> None:
    """Steps: as runner R, reserve a job and drop the connection (as if the network went),
    without saying whether it started; runner S then asks for a job of the same group. R
    reconnects and reports the job's start with its end.
    Expected: S gets nothing (R may have started the job, since a short job's start is
    only reported with its end); the job completes once, with R's start."""
    with hogged(make_manager) as (m, api, _):
        [key] = add_jobs(api, [{"cmd": "echo dropped", **HELD}], "dropped")
        at = time.time() - 0.5

        async def scenario() -> None:
            async with FakeRunner(m, "runner-r", GROUP) as r:
                got = await r.ask("reserve", timeout=5)
                assert got["job"]["key"] == key
            async with FakeRunner(m, "runner-s", GROUP) as s:
                assert (await s.ask("reserve", timeout=1))["job"] is None
            assert job_states(api, key)[0]["State"] == "reserved"
            async with FakeRunner(m, "runner-r", GROUP) as r:
                reply = await r.ask("end", ends=[_ended(key, at, pid=4343)], reserve=None)
                assert "error" not in reply and "refused" not in reply

        asyncio.run(scenario())
        job = job_states(api, key)[0]
        assert (job["State"], job["Attempts"], job["Pid"]) == ("complete", 1, 4343)
        assert job["Started"] == int(at)
    m.stop()
