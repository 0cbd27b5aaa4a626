"""Time-window limit groups on a real manager with real runners (issue 15, spec §6)."""

from __future__ import annotations

import math
import time
from datetime import datetime

import psutil
import pytest

from tests.conftest import ManagerHandle, wait_for
from wr.client import ClientError
from wr.windows import FORMS

pytestmark = pytest.mark.integration

AHEAD = 6
"""Seconds ahead the window of the first test opens: room for adding and looking."""


def _clock(unix: float) -> str:
    return datetime.fromtimestamp(unix).strftime("%H:%M:%S")


def _runners_of(m: ManagerHandle, needle: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.Error, OSError):
            continue
        if "wr.runner" in cmd and needle in cmd and env.get("HOME") == str(m.home):
            found.append(proc.pid)
    return found


def test_a_job_waits_for_a_window_that_opens_seconds_ahead(manager: ManagerHandle,
                                                           tag: str) -> None:
    """Steps: add (with `wr add -l`) a job whose time-of-day window opens AHEAD seconds from
    now; look at it at once; wait for it to finish.
    Expected: until the window opens it is ready, and both the details and `wr status` say
    it waits for that window and when it opens; it starts only once the window is open."""
    start = math.floor(time.time()) + AHEAD - 1  # exclusive: open from start + 1
    window = f"{_clock(start)} < time < {_clock(start + 600)}"
    added = manager.wr("add", "-i", tag, "-l", window, "--cpus", "0",
                       input="echo opened\n", check=True)
    assert "Added 1 new commands" in added.stderr
    with manager.client() as c:
        (job,) = c.details(tag)
        status = manager.wr("status", "-i", tag, check=True).stdout
        if time.time() < start + 1:  # (a machine too slow to look in time checks only when)
            assert job["State"] == "ready", job
            opens = datetime.fromtimestamp(start + 1).strftime("%Y-%m-%d %H:%M:%S")
            assert job["WaitingFor"] == f"time window '{window}' (closed; opens {opens})"
            assert f"Status: ready, but waiting for time window '{window}'" in status
        done = wait_for(lambda: (j := c.status(tag)[0])["State"] == "complete" and j,
                        timeout=AHEAD + 60, what="the job to run once its window opened")
    assert done["Started"] >= start + 1
    assert done["LimitGroups"] == [window]


def test_datetime_windows_in_the_past_and_future(manager: ManagerHandle, tag: str) -> None:
    """Steps: add a job whose window opened in 2000 and one whose window opens in 2099.
    Expected: the first runs at once; the second stays ready, says (in its details and on
    the web page) it waits until 2099-01-01 00:00:01, and no runner is started for it."""
    past, future = "2000-01-01 00:00:00 < datetime", "2099-01-01 00:00:00<datetime"
    with manager.client() as c:
        c.add([{"cmd": "echo past", "limit_grps": [past]},
               {"cmd": "echo future", "limit_grps": [future]}], rep_grp=tag)
        wait_for(lambda: c.status(tag, state="complete"), what="the past-window job to run")
        by_cmd = {j["Cmd"]: j for j in c.details(tag)}
    assert by_cmd["echo past"]["State"] == "complete"
    waiting = by_cmd["echo future"]
    assert waiting["State"] == "ready"
    said = f"time window '{future}' (closed; opens 2099-01-01 00:00:01)"
    assert waiting["WaitingFor"] == said
    assert not _runners_of(manager, "2099")
    with manager.http() as web:  # the web page's job cards say it too
        page = web.get("/web/api/jobs", params={"group": tag, "state": "ready"}).json()
    assert [(j["Cmd"], j["WaitingFor"]) for j in page["jobs"]] == [("echo future", said)]


def test_a_malformed_window_is_a_400_quoting_the_forms(manager: ManagerHandle,
                                                       tag: str) -> None:
    """Steps: POST a job with limit group '17:00 < time'; `wr add -l` the same.
    Expected: a 400 that quotes it and every accepted form; nothing is added."""
    with manager.client() as c:
        with pytest.raises(ClientError) as caught:
            c.add([{"cmd": "echo never", "limit_grps": ["lim", "17:00 < time"]}],
                  rep_grp=tag)
        assert caught.value.status == 400
        message = caught.value.message
        assert "'17:00 < time'" in message
        assert all(f"'{form}'" in message for form in FORMS)
        cli = manager.wr("add", "-i", tag, "-l", "time < 25:00:00", input="echo never\n")
        assert cli.returncode != 0
        assert "'25:00:00' is not a time of day" in cli.stderr
        assert c.status(tag) == []


def test_wr_limit_tells_about_a_window_and_lists_only_counts(manager: ManagerHandle,
                                                             tag: str) -> None:
    with manager.client() as c:
        c.add([{"cmd": "echo lim", "limit_grps": [f"{tag}:2", "2099-01-01 00:00:00 < datetime"]}],
              rep_grp=tag)
    shown = manager.wr("limit", "-g", "2099-01-01 00:00:00 < datetime", check=True).stdout
    assert shown == ("time window '2099-01-01 00:00:00 < datetime' (closed; opens "
                     "2099-01-01 00:00:01); a time window has no count limit\n")
    assert manager.wr("limit", check=True).stdout == f"{tag}: 2\n"
    bad = manager.wr("limit", "-g", "17:00 < time")
    assert bad.returncode == 2 and "'17:00 < time' looks like a time window" in bad.stderr
