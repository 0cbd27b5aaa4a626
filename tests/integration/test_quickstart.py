"""The seed page's Quick Start, run with the real ``wr`` and the real ``curl``, as written."""

from __future__ import annotations

import re
import time

import orjson
import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.integration

SEED_BODY = ('[{"cmd":"sleep 5 && echo mymsg && false","memory":"5M","cpus":1},'
             '{"cmd":"sleep 5","cpus":1}]')
BURIED_KEY = "58cef10e7a340c3b7fa09ea304a3cb98"
DONE_KEY = "ea4266bc0fc7dd493caeb2fff1963e4a"


def test_quick_start(make_manager) -> None:
    """Steps: ``wr manager start``; POST the seed's two jobs with curl; GET incomplete jobs;
    GET the rep group with std=true; GET by keys.
    Expected: the seed's keys, ExpectedRAM 5/3072, ExpectedTime 5, both ready; ~5 s later
    the first is buried (exit 1, "command exited non-zero", StdOut "mymsg") and the second
    complete, both with Pid, Host, HostIP, Walltime, PeakRAM, Started, Ended filled in."""
    m: ManagerHandle = make_manager()
    started = m.start()
    lines = started.stderr.strip().splitlines()
    assert re.fullmatch(r"info: wr manager started on localhost:\d+, pid \d+", lines[0])
    assert lines[1] == (f"info: wr's web interface can be reached at "
                        f"https://localhost:{m.web_port}/?token={m.token}")
    auth = f"Authorization: Bearer {m.token}"
    url = f"https://localhost:{m.web_port}/rest/v1/jobs/"

    posted = m.curl("-H", "Content-Type: application/json", "-H", auth, "-X", "POST",
                    "-d", SEED_BODY, f"{url}?rep_grp=myid&cpus=2&memory=3G&time=5s")
    assert posted.returncode == 0, posted.stderr
    jobs = orjson.loads(posted.stdout)
    assert [j["Key"] for j in jobs] == [BURIED_KEY, DONE_KEY]
    assert [j["State"] for j in jobs] == ["ready", "ready"]
    assert [j["ExpectedRAM"] for j in jobs] == [5, 3072]
    assert [j["ExpectedTime"] for j in jobs] == [5, 5]
    assert all(j["RepGroup"] == "myid" and j["CwdBase"] == "/tmp" for j in jobs)
    assert all(j["Started"] == -62135596800 and j["OtherRequests"] is None for j in jobs)
    assert list(jobs[0])[:6] == ["Key", "RepGroup", "DepGroups", "Dependencies", "Cmd",
                                 "State"]

    def finished() -> list[dict] | None:
        got = orjson.loads(m.curl("-H", auth, f"{url}myid?std=true").stdout)
        states = {j["Key"]: j["State"] for j in got}
        return got if states == {BURIED_KEY: "buried", DONE_KEY: "complete"} else None

    t0 = time.monotonic()
    done = {j["Key"]: j for j in wait_for(finished, timeout=40, what="both jobs to finish")}
    assert time.monotonic() - t0 >= 3  # they really slept

    buried, complete = done[BURIED_KEY], done[DONE_KEY]
    assert buried["Exited"] is True and buried["Exitcode"] == 1
    assert buried["FailReason"] == "command exited non-zero"
    assert buried["Attempts"] == 1 and buried["StdOut"] == "mymsg"
    assert complete["Exited"] is True and complete["Exitcode"] == 0
    assert complete["FailReason"] == "" and complete["Attempts"] == 1
    for job in (buried, complete):
        assert job["Pid"] > 0 and job["Host"] and job["HostIP"]
        assert job["Walltime"] >= 4.9 and job["PeakRAM"] > 0
        assert job["Started"] > 1_700_000_000 and job["Ended"] >= job["Started"] + 4
        assert re.fullmatch(rf"/wr_cwd/{job['Key'][0]}/{job['Key'][1]}/{job['Key'][2]}/"
                            rf"{job['Key'][3:]}\d+/cwd", job["Cwd"])

    incomplete = orjson.loads(m.curl("-H", auth, url).stdout)
    assert [j["Key"] for j in incomplete] == [BURIED_KEY]
    assert incomplete[0]["StdOut"] == ""  # only with std=true

    by_key = orjson.loads(m.curl("-H", auth, f"{url}{BURIED_KEY},{DONE_KEY}").stdout)
    assert [(j["Key"], j["State"]) for j in by_key] == [(BURIED_KEY, "buried"),
                                                          (DONE_KEY, "complete")]
