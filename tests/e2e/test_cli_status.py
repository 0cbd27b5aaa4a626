"""The real ``wr status`` against a real manager, each output format compared with the text
wr would print (spec cli §1.3).

One manager serves the module with one set of jobs, added by ``wr add`` and left alone:
``sq-done`` holds two completed commands and one buried one (it printed to both streams and
exited 3), ``sq-wait`` one ready command that never starts (limit group ``hold`` is 0).
Expected texts are built from what the REST API says about the same jobs (keys, hosts,
times); only ``elapsed``, which needs sub-second start and end times, is matched loosely.
Tests that need other jobs use a manager of their own, so no test sees another's jobs.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from tests.conftest import FAST_TIMINGS, ManagerHandle, _descendants_of_home
from wr.jobs import compute_key, format_duration

pytestmark = pytest.mark.e2e

DONE, WAIT = "sq-done", "sq-wait"
FAIL = "echo sq out; echo sq err >&2; exit 3"
DONE_LINES = f'echo sq 1\necho sq 2\n{FAIL}\t{{"retries":0}}\n'
HELD = "echo sq held"


def make_handle(home: Path) -> ManagerHandle:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
    env.update(HOME=str(home), WR_MANAGERPORT="0", WR_MANAGERWEB="0",
               WR_DEPLOYMENT="production", TZ="UTC", **FAST_TIMINGS)
    return ManagerHandle(home=home, env=env)


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    home = tmp_path_factory.mktemp("home")
    handle = make_handle(home)
    handle.start()
    handle.wr("add", "-i", DONE, input=DONE_LINES, check=True)
    with handle.client() as c:
        c.wait(DONE, timeout=60)
    handle.wr("add", "-i", WAIT, "-l", "hold:0", input=HELD, check=True)
    yield handle
    handle.stop()
    leftovers = _descendants_of_home(home)
    for pid in leftovers:
        psutil.Process(pid).kill()
    assert not leftovers, f"processes left behind: {leftovers}\n{handle.log()}"


@pytest.fixture(scope="module")
def client(mgr: ManagerHandle) -> Iterator[Any]:
    with mgr.client() as c:
        yield c


@pytest.fixture(scope="module")
def jobs(client: Any) -> dict[str, dict[str, Any]]:
    """The REST status of every job of the module, by command, output included."""
    found = client.status([DONE, WAIT], std="true")
    assert sorted(j["State"] for j in found) == ["buried", "complete", "complete", "ready"]
    return {j["Cmd"]: j for j in found}


def status(mgr: ManagerHandle, *args: str, code: int = 0) -> str:
    out = mgr.wr("status", *args)
    assert out.returncode == code, out.stderr
    assert out.stderr == ""
    return out.stdout


def when(unix: int) -> str:
    t = datetime.fromtimestamp(unix, UTC)
    return f"{t:%y}/{t.month}/{t.day}-{t:%H:%M:%S}"


def cut(seconds: float) -> str:
    """A float of seconds as Go prints time.Duration(float ns): cut to whole ns."""
    return format_duration(math.trunc(seconds * 1e9) / 1e9)


# -- counts -----------------------------------------------------------------------------------

def counts(complete: int = 0, ready: int = 0, buried: int = 0) -> str:
    return (f"complete: {complete}\nrunning: 0\nready: {ready}\ndependent: 0\n"
            f"lost contact: 0\ndelayed: 0\nburied: {buried}\n\n")


def test_counts_of_every_incomplete_job(mgr: ManagerHandle, jobs: Any) -> None:
    assert status(mgr, "-o", "counts") == counts(ready=1, buried=1)


def test_counts_of_a_rep_group_include_its_history(mgr: ManagerHandle, jobs: Any) -> None:
    assert status(mgr, "-i", DONE, "-o", "c") == counts(complete=2, buried=1)


def test_counts_on_the_client_match_the_managers(mgr: ManagerHandle, jobs: Any) -> None:
    """--host makes wr status count status objects itself instead of asking the manager."""
    host = jobs["echo sq 1"]["Host"]
    assert status(mgr, "-i", DONE, "-o", "counts", "--host", host) == counts(complete=2,
                                                                           buried=1)
    assert status(mgr, "-i", DONE, "-o", "counts", "--host", "elsewhere") == counts()


# -- summary ----------------------------------------------------------------------------------

def usage(done: list[dict[str, Any]]) -> str:
    """The usage part of a summary line for two completed jobs (mean, sample sd)."""
    out = ""
    for label, field, unit in (("memory", "PeakRAM", "MB"), ("disk", "PeakDisk", "MB"),
                               ("walltime", "Walltime", ""), ("cputime", "CPUtime", "")):
        a, b = (float(j[field]) for j in done)
        mean = (a + b) / 2
        sd = math.sqrt((a - mean) * (a - mean) + (b - mean) * (b - mean))
        if unit:
            out += f" {label}={int(mean)}{unit}(+/-{int(sd)}{unit})"
        else:
            out += f" {label}={cut(mean)}(+/-{cut(sd)})"
    first = min(j["Started"] for j in done)
    last = max(j["Ended"] for j in done)
    return f"{out} started={when(first)} ended={when(last)} elapsed=ELAPSED"


def matches(text: str, expected: str) -> bool:
    pattern = re.escape(expected).replace("ELAPSED", r"[0-9.]+(?:ms|µs|s)")
    return re.fullmatch(pattern, text) is not None


def test_summary_of_a_rep_group(mgr: ManagerHandle, jobs: dict[str, Any]) -> None:
    done = [jobs["echo sq 1"], jobs["echo sq 2"]]
    buried = f'exitcode.3,"command exited non-zero"={jobs[FAIL]["Key"]}'
    expected = (f"{DONE} : complete=2 running=0 ready=0 dependent=0 lost=0 delayed=0 "
                f"buried=1{usage(done)} {buried}\n\n")
    text = status(mgr, "-i", DONE, "-o", "summary")
    assert matches(text, expected), f"\n{text}\n{expected}"
    # worked out by the client (--host) from status objects, the same text
    host = done[0]["Host"]
    assert matches(status(mgr, "-i", DONE, "-o", "s", "--host", host), expected)


def test_summary_of_every_incomplete_job(mgr: ManagerHandle, jobs: dict[str, Any]) -> None:
    buried = f'exitcode.3,"command exited non-zero"={jobs[FAIL]["Key"]}'
    assert status(mgr, "-o", "summary") == (
        f"{DONE} : complete=0 running=0 ready=0 dependent=0 lost=0 delayed=0 buried=1 "
        f"{buried}\n"
        f"{WAIT} : complete=0 running=0 ready=1 dependent=0 lost=0 delayed=0 buried=0\n"
        f"all above : complete=0 running=0 ready=1 dependent=0 lost=0 delayed=0 buried=1 "
        f"{buried}\n\n")


def test_summary_of_a_substring_search(mgr: ManagerHandle, jobs: dict[str, Any]) -> None:
    done = [jobs["echo sq 1"], jobs["echo sq 2"]]
    buried = f'exitcode.3,"command exited non-zero"={jobs[FAIL]["Key"]}'
    expected = (
        f"{DONE} : complete=2 running=0 ready=0 dependent=0 lost=0 delayed=0 "
        f"buried=1{usage(done)} {buried}\n"
        f"{WAIT} : complete=0 running=0 ready=1 dependent=0 lost=0 delayed=0 buried=0\n"
        f"all above : complete=2 running=0 ready=1 dependent=0 lost=0 delayed=0 "
        f"buried=1{usage(done)} {buried}\n\n")
    text = status(mgr, "-i", "sq-", "-z", "-o", "summary")
    assert matches(text, expected), f"\n{text}\n{expected}"


def test_summary_and_counts_of_a_rerun_count_it_once(make_manager: Any) -> None:
    """Steps: a command completes; it is added again with --rerun (and held).
    Expected: its rep group has one ready job and no completed one, though the history
    still has its record (a queued job hides its own history)."""
    m = make_manager(TZ="UTC")
    m.start()
    m.wr("add", "-i", "again", "--sync", input="echo again", check=True)
    assert status(m, "-i", "again", "-o", "c") == counts(complete=1)
    m.wr("add", "-i", "again", "--rerun", "-l", "hold:0", input="echo again", check=True)
    assert status(m, "-i", "again", "-o", "c") == counts(ready=1)
    assert status(m, "-i", "again", "-o", "s") == (
        "again : complete=0 running=0 ready=1 dependent=0 lost=0 delayed=0 buried=0\n\n")


# -- details ----------------------------------------------------------------------------------

def block(job: dict[str, Any], *, req_grp: str = "echo", extra: bool = True,
          groups: str = "", waiting: str = "") -> str:
    """wr's details of one job, from its REST status object."""
    cwd = job["CwdBase"].rstrip("/") + job["Cwd"] if job["Cwd"] else job["CwdBase"]
    out = (f"\n# {job['Cmd']}\nCwd: {cwd}\nBehaviours: {job['Behaviours']}\n"
           f"Id: {job['RepGroup']} ({job['Key']}); Requirements group: {req_grp}; {groups}"
           f"Priority: 0; Attempts: {job['Attempts']}\n"
           f"Expected requirements: {{ memory: {job['ExpectedRAM']}MB; time: "
           f"{format_duration(job['ExpectedTime'])}; cpus: 1 disk: 0GB }}\n")
    host = (f"Host: {job['Host']} (IP: {job['HostIP']}); Pid: {job['Pid']}\n")
    stats = (f"Exit code: {job['Exitcode']}; Peak memory: {job['PeakRAM']}MB; Peak disk: "
             f"{job['PeakDisk']}MB; Wall time: {format_duration(job['Walltime'])}; "
             f"CPU time: {format_duration(job['CPUtime'])} }}\n")
    if job["State"] == "complete":
        out += (f"Status: complete (started {when(job['Started'])}; ended "
                f"{when(job['Ended'])})\nStats: {{ {stats}{host}")
    elif job["State"] == "buried":
        out += ("Status: buried - you need to fix the problem and then `wr retry` "
                f"(attempted at {when(job['Started'])})\n"
                f"Previous problem: {job['FailReason']}\n"
                f"Stats of previous attempt: {{ {stats}{host}")
        if extra:
            out += f"StdOut:\n{job['StdOut']}\nStdErr:\n{job['StdErr']}\n"
    elif waiting:  # what holds a ready job (issue 15)
        out += f"Status: ready, but waiting for {waiting}\n"
    else:
        out += "Status: ready to be picked up by a `wr runner`\n"
    return out


def test_details_of_a_rep_group_group_similar_jobs(mgr: ManagerHandle, client: Any,
                                                   jobs: dict[str, Any]) -> None:
    shown = client.status(DONE, limit="1")
    assert [j["State"] for j in shown] == ["buried", "complete"]
    complete = jobs[shown[1]["Cmd"]]
    assert jobs[FAIL]["StdOut"].strip() == "sq out" and jobs[FAIL]["StdErr"].strip() == "sq err"
    expected = (block(jobs[FAIL]) + block(complete)
                + "+ 1 other commands with the same status\n\n")
    assert status(mgr, "-i", DONE) == expected


def test_details_without_grouping(mgr: ManagerHandle, client: Any,
                                  jobs: dict[str, Any]) -> None:
    order = [j["Cmd"] for j in client.status(DONE)]
    expected = "".join(block(jobs[cmd]) for cmd in order) + "\n"
    assert status(mgr, "-i", DONE, "-o", "d", "--limit", "0") == expected


def test_details_of_every_incomplete_job(mgr: ManagerHandle, jobs: dict[str, Any]) -> None:
    expected = (block(jobs[FAIL]) + block(jobs[HELD], groups="Limit groups: hold; ",
                                          waiting="limit group 'hold' (its limit is 0)")
                + "\n")
    assert status(mgr) == expected


def test_details_with_the_environment(mgr: ManagerHandle, jobs: dict[str, Any]) -> None:
    """``-e`` shows the job's overrides (none here), never the environment it runs with
    (issue 15: wr showed the viewer's)."""
    text = status(mgr, "-i", WAIT, "-e")
    assert re.search(r"^Env: \[\]$", text, re.M), text
    assert "HOME=" not in text


def test_details_of_a_file_of_commands(mgr: ManagerHandle, jobs: dict[str, Any],
                                       tmp_path: Path) -> None:
    """-f takes the file given to wr add; its jobs are shown each, in file order, without
    their output."""
    cmds = tmp_path / "cmds.txt"
    cmds.write_text(DONE_LINES)
    expected = "".join(block(jobs[c], extra=False) for c in ("echo sq 1", "echo sq 2", FAIL))
    assert status(mgr, "-f", str(cmds)) == expected + "\n"


# -- plain, json, and the other selections ----------------------------------------------------

def test_plain_exits_1_when_a_job_is_buried(mgr: ManagerHandle, client: Any,
                                            jobs: dict[str, Any]) -> None:
    expected = "".join(f"{j['Key']}\t{j['State']}\n" for j in client.status(DONE))
    assert status(mgr, "-i", DONE, "-o", "plain", code=1) == expected
    assert status(mgr, "-i", WAIT, "-o", "p") == f"{jobs[HELD]['Key']}\tready\n"


def test_json_is_the_rest_status_on_one_line(mgr: ManagerHandle, client: Any,
                                             jobs: dict[str, Any]) -> None:
    text = status(mgr, "-i", DONE, "-o", "json")
    assert text.endswith("\n\n") and text.count("\n") == 2
    assert orjson.loads(text) == client.status(DONE, limit="1", std="true")
    everything = orjson.loads(status(mgr, "-i", DONE, "-o", "j", "--limit", "0"))
    assert len(everything) == 3


def test_command_line_and_internal_id(mgr: ManagerHandle, jobs: dict[str, Any]) -> None:
    key = jobs["echo sq 2"]["Key"]
    assert key == compute_key("echo sq 2")
    assert status(mgr, "-l", "echo sq 2", "-o", "plain") == f"{key}\tcomplete\n"
    assert status(mgr, "-i", key, "-y", "-o", "plain") == f"{key}\tcomplete\n"
    assert status(mgr, "-l", "echo never added", "-o", "plain") == ""
    assert status(mgr, "-l", "echo sq 2", "-c", "/elsewhere", "-o", "plain") == ""


@pytest.mark.parametrize(("args", "want", "code"), [
    (("-b",), [FAIL], 1),
    (("-r",), [], 0),
    (("-s", "ready"), [HELD], 0),
    (("-s", "deletable"), [FAIL, HELD], 1),
    (("-i", DONE, "-s", "complete"), ["echo sq 1", "echo sq 2"], 0),
])
def test_state_filters(mgr: ManagerHandle, jobs: dict[str, Any], args: tuple[str, ...],
                       want: list[str], code: int) -> None:
    text = status(mgr, *args, "-o", "plain", code=code)
    assert sorted(text.splitlines()) == sorted(
        f"{jobs[c]['Key']}\t{jobs[c]['State']}" for c in want)


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "code", "message"), [
    (("-o", "fancy"), 1, "Error: invalid -o format specified"),
    (("-i", "a", "-l", "b"), 1,
     "Error: -f, -i and -l are mutually exclusive; only specify one of them"),
    (("-z",), 2, "-z and -y only apply to -i"),
    (("-i", "a", "-z", "-y"), 2, "-z and -y are mutually exclusive"),
    (("-i", "notakey", "-y"), 2, "-y needs an internal job id (32 hex digits), not 'notakey'"),
    (("-l", "x", "-b"), 2, "state filters (-b, -r, -s) are only supported in default or"),
    (("-b", "-r"), 2, "-b, -r and -s are mutually exclusive"),
    (("-s", "sleeping"), 2, "Invalid value for '-s' / '--state'"),
    (("--limit", "-1"), 2, "Invalid value for '--limit'"),
    (("-f", "/no/such/file"), 1, "Error: could not open file '/no/such/file': "),
    (("-l", "x", "--mounts", "bad"), 1, "Error: 'bad' was not in the right format"),
])
def test_bad_input_gives_a_one_line_error(mgr: ManagerHandle, args: tuple[str, ...],
                                          code: int, message: str) -> None:
    out = mgr.wr("status", *args)
    assert out.returncode == code and out.stdout == ""
    assert message in out.stderr and out.stderr.strip().splitlines()[-1].startswith("Error")


def test_a_bad_line_in_a_file_is_named(mgr: ManagerHandle, tmp_path: Path) -> None:
    cmds = tmp_path / "cmds.txt"
    cmds.write_text('echo ok\n{"cmd":"x","memory":"lots"}\n')
    out = mgr.wr("status", "-f", str(cmds))
    assert out.returncode == 1
    assert out.stderr.startswith("Error: line 2 had a problem: memory value (lots)")


def test_every_option_has_help(mgr: ManagerHandle) -> None:
    from wr.cli.status import status as command

    for param in command.params:
        assert getattr(param, "help", None), param.name
    assert "Usage: wr status [OPTIONS]" in mgr.wr("status", "-h", check=True).stdout
