"""wr status's text, rendered from status objects and figures (wr.cli.render)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest

from wr.cli import render
from wr.jobs import UNSET_TIME

T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def job(**over: Any) -> dict[str, Any]:
    """A status object (as GET /rest/v1/details/ answers) of a ready job."""
    base: dict[str, Any] = {
        "Key": "k" * 32, "RepGroup": "grp", "DepGroups": None, "Dependencies": None,
        "Cmd": "echo hi", "State": "ready", "Cwd": "", "CwdBase": "/work",
        "HomeChanged": False, "Behaviours": "", "Mounts": "", "MonitorDocker": "",
        "WithDocker": "", "WithSingularity": "", "ContainerMounts": "", "ExpectedRAM": 1024,
        "ExpectedTime": 3600, "RequestedDisk": 0, "OtherRequests": None, "Cores": 1,
        "PeakRAM": 0, "PeakDisk": 0, "Exited": False, "Exitcode": 0, "FailReason": "",
        "Pid": 0, "Host": "", "HostID": "", "HostIP": "", "Walltime": 0, "CPUtime": 0,
        "Started": UNSET_TIME, "Ended": UNSET_TIME, "StdErr": "", "StdOut": "", "Env": None,
        "Attempts": 0, "Similar": 0, "LimitGroups": None, "Modules": None,
        "IsPushUpdate": False, "ReqGroup": "echo", "Priority": 0, "Retries": 3,
        "ActualCwd": "", "ReadyAt": None,
    }
    base.update(over)
    return base


def details(*jobs: dict[str, Any], **kw: Any) -> str:
    return render.render_details(jobs, now=T0 + 100, tz=UTC, **kw)


@pytest.mark.parametrize(("unix", "text"), [
    (T0, "23/11/14-22:13:20"),
    (T0 + 0.9, "23/11/14-22:13:20"),
    (1_704_070_861, "24/1/1-01:01:01"),
    (UNSET_TIME, "01/1/1-00:00:00"),
    (None, "01/1/1-00:00:00"),
])
def test_go_time(unix: float | None, text: str) -> None:
    assert render.go_time(unix, UTC) == text


@pytest.mark.parametrize(("value", "text"), [
    (1, "1"), (1.0, "1"), (0.5, "0.5"), (0, "0"), (2.25, "2.25"), (1e-7, "0.0000001"),
    (1e21, "1000000000000000000000"),
])
def test_go_float(value: float, text: str) -> None:
    assert render.go_float(value) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (1.0000000019, "1.000000001s"), (0.0000015, "1.5µs"), (90.5, "1m30.5s"), (0, "0s"),
])
def test_go_truncated_cuts_to_whole_nanoseconds(seconds: float, text: str) -> None:
    assert render.go_truncated(seconds) == text


def test_counts_count_similar_and_running_as_wr_does() -> None:
    jobs = [job(State="reserved"), job(State="running", Similar=2), job(State="lost"),
            job(State="complete", Similar=1), job(State="buried")]
    counts = render.count_states(jobs)
    assert render.render_counts(counts) == (
        "complete: 2\nrunning: 4\nready: 0\ndependent: 0\nlost contact: 1\ndelayed: 0\n"
        "buried: 1\n\n")


def test_plain_has_no_trailing_empty_line() -> None:
    jobs = [job(Key="a" * 32), job(Key="b" * 32, State="buried")]
    assert render.render_plain(jobs) == f"{'a' * 32}\tready\n{'b' * 32}\tburied\n"


def test_summary_lines_usage_and_buried_groups() -> None:
    group = {
        "RepGroup": "grp",
        "Counts": {"complete": 2, "running": 1, "ready": 0, "dependent": 0, "lost": 0,
                   "delayed": 0, "buried": 3},
        "Memory": {"Mean": 10.9, "SD": 1.5}, "Disk": {"Mean": 0, "SD": 0},
        "Walltime": {"Mean": 1.5, "SD": 0.70710678}, "CPUtime": {"Mean": 0.25, "SD": 0.0},
        "FirstStarted": T0, "LastEnded": T0 + 61.5,
        "Buried": [{"Exitcode": 2, "FailReason": "command exited non-zero", "Keys": ["b"]},
                   {"Exitcode": 1, "FailReason": "command exited non-zero",
                    "Keys": ["x", "y"]}],
    }
    other = {"RepGroup": "new", "Counts": dict.fromkeys(render.COLUMNS, 0) | {"ready": 4},
             "Memory": None, "Disk": None, "Walltime": None, "CPUtime": None,
             "FirstStarted": None, "LastEnded": None, "Buried": []}
    text = render.render_summary({"RepGroups": [group, other], "All": None}, UTC)
    assert text == (
        "grp : complete=2 running=1 ready=0 dependent=0 lost=0 delayed=0 buried=3 "
        "memory=10MB(+/-1MB) disk=0MB(+/-0MB) walltime=1.5s(+/-707.10678ms) "
        "cputime=250ms(+/-0s) started=23/11/14-22:13:20 ended=23/11/14-22:14:21 "
        'elapsed=1m1.5s exitcode.1,"command exited non-zero"=x,y '
        'exitcode.2,"command exited non-zero"=b\n'
        "new : complete=0 running=0 ready=4 dependent=0 lost=0 delayed=0 buried=0\n\n")


def test_summary_of_one_complete_job_has_no_span() -> None:
    one = render.summarize([job(State="complete", PeakRAM=7, Walltime=2, CPUtime=1,
                                Started=T0, Ended=T0 + 2)])
    assert render.render_summary(one, UTC) == (
        "grp : complete=1 running=0 ready=0 dependent=0 lost=0 delayed=0 buried=0 "
        "memory=7MB(+/-0MB) disk=0MB(+/-0MB) walltime=2s(+/-0s) cputime=1s(+/-0s)\n\n")


def test_summarize_uses_the_sample_standard_deviation_and_adds_all_above() -> None:
    jobs = [job(State="complete", PeakRAM=10, Walltime=1, Started=T0, Ended=T0 + 1),
            job(State="complete", PeakRAM=20, Walltime=3, Started=T0 + 5, Ended=T0 + 8),
            job(State="reserved", RepGroup="b"),
            job(State="buried", RepGroup="b", Key="z" * 32, Exitcode=1, FailReason="x")]
    summary = render.summarize(jobs)
    second, first = summary["RepGroups"]  # sorted: "b" before "grp"
    assert [g["RepGroup"] for g in summary["RepGroups"]] == ["b", "grp"]
    assert first["Memory"] == {"Mean": 15.0, "SD": pytest.approx(7.0710678)}
    assert first["FirstStarted"] == T0 and first["LastEnded"] == T0 + 8
    assert second["Counts"]["running"] == 1 and second["Memory"] is None
    assert second["Buried"] == [{"Exitcode": 1, "FailReason": "x", "Keys": ["z" * 32]}]
    lines = render.render_summary(summary, UTC).splitlines()
    assert lines[2].startswith("all above : complete=2 running=1 ready=0 dependent=0 lost=0 "
                               "delayed=0 buried=1 memory=15MB(+/-7MB)")
    assert lines[2].endswith(f'elapsed=8s exitcode.1,"x"={"z" * 32}') and lines[3] == ""


def test_details_of_a_ready_job() -> None:
    assert details(job()) == (
        "\n# echo hi\nCwd: /work\n"
        f"Id: grp ({'k' * 32}); Requirements group: echo; Priority: 0; Attempts: 0\n"
        "Expected requirements: { memory: 1024MB; time: 1h0m0s; cpus: 1 disk: 0GB }\n"
        "Status: ready to be picked up by a `wr runner`\n\n")


def test_details_show_every_optional_line_in_wrs_order() -> None:
    text = details(job(
        Modules=["a", "b"], Mounts='[{"Targets":[{"Path":"b"}]}]', HomeChanged=True,
        Cwd="/wr_cwd/x/cwd", WithDocker="img", ContainerMounts="/a:/b", MonitorDocker="?",
        Behaviours='{"on_exit":[{"cleanup":true}]}', OtherRequests=["q:x", "r:y"],
        DepGroups=["d1"], Dependencies=["up"], LimitGroups=["l1", "l2"], Priority=7,
        Cores=0.5, State="dependent", ExpectedTime=90, RequestedDisk=2))
    assert text == (
        "\n# echo hi\nCwd: /work/wr_cwd/x/cwd\n"
        'Modules: a, b; Mounts: [{"Targets":[{"Path":"b"}]}]\n'
        "Changed home: true\n"
        "Cmd running inside docker container running image: img\n"
        "Container has these mounts: /a:/b\n"
        "Docker container monitoring turned on for: ? (first container started after cmd)\n"
        'Behaviours: {"on_exit":[{"cleanup":true}]}\n'
        "Resource requirements: q:x, r:y\n"
        f"Id: grp ({'k' * 32}); Requirements group: echo; Dependency groups: d1; "
        "Dependencies: up; Limit groups: l1, l2; Priority: 7; Attempts: 0\n"
        "Expected requirements: { memory: 1024MB; time: 1m30s; cpus: 0.5 disk: 2GB }\n"
        "Status: dependent on other jobs\n\n")


def test_details_of_a_buried_job_with_output_and_similar_ones() -> None:
    buried = job(State="buried", Exited=True, Exitcode=3, FailReason="command exited "
                 "non-zero", Started=T0, Ended=T0 + 2, Walltime=2.5, CPUtime=0.001,
                 PeakRAM=5, PeakDisk=1, Host="h", HostIP="10.0.0.1", Pid=42, Attempts=1,
                 StdOut="out", StdErr="", Similar=4, Cwd="/u/cwd", ActualCwd="/work/u/cwd",
                 Env=["A=1", "B=2"])
    assert details(buried, show_env=True) == (
        "\n# echo hi\nCwd: /work/u/cwd\n"
        f"Id: grp ({'k' * 32}); Requirements group: echo; Priority: 0; Attempts: 1\n"
        "Expected requirements: { memory: 1024MB; time: 1h0m0s; cpus: 1 disk: 0GB }\n"
        "Status: buried - you need to fix the problem and then `wr retry` "
        "(attempted at 23/11/14-22:13:20)\n"
        "Previous problem: command exited non-zero\n"
        "Stats of previous attempt: { Exit code: 3; Peak memory: 5MB; Peak disk: 1MB; "
        "Wall time: 2.5s; CPU time: 1ms }\n"
        "Host: h (IP: 10.0.0.1); Pid: 42\n"
        "StdOut:\nout\nStdErr: [none]\n"
        "Env: [A=1 B=2]\n"
        "+ 4 other commands with the same status, exit code and problem\n\n")
    # -f mode shows neither output nor environment
    assert "StdOut" not in details(buried, show_extra=False, show_env=True)


@pytest.mark.parametrize(("over", "line"), [
    ({"State": "complete", "Started": T0, "Ended": T0 + 1, "Exited": True},
     "Status: complete (started 23/11/14-22:13:20; ended 23/11/14-22:13:21)"),
    ({"State": "running", "Started": T0},
     "Status: running (started 23/11/14-22:13:20)"),
    ({"State": "reserved"}, "Status: running (started 01/1/1-00:00:00)"),
    ({"State": "lost", "Started": T0, "Ended": T0 + 70},
     "Status: lost contact (started 23/11/14-22:13:20; lost 23/11/14-22:14:30)"),
    ({"State": "delayed", "Started": T0, "ReadyAt": T0 + 125.4},
     "Status: delayed following a problem, prior to retrying; will become ready in 25s "
     "(attempted at 23/11/14-22:13:20)"),
    ({"State": "ready", "WaitingFor": "time window 'time < 01:00:00' (closed; opens x)"},
     "Status: ready, but waiting for time window 'time < 01:00:00' (closed; opens x)"),
    ({"State": "ready", "WaitingFor": ""}, "Status: ready to be picked up by a `wr runner`"),
])
def test_status_lines(over: dict[str, Any], line: str) -> None:
    assert line + "\n" in details(job(**over))


def test_running_jobs_show_wall_time_and_host() -> None:
    text = details(job(State="running", Started=T0, Walltime=100, Host="h", HostIP="1.2.3.4",
                       HostID="i-1", Pid=9))
    assert "Stats: { Wall time: 1m40s }\nHost: h (IP: 1.2.3.4, ID: i-1); Pid: 9\n" in text


def test_not_run_jobs_show_stored_details() -> None:
    text = details(job(State="buried", StdErr="resource requirements cannot be met"))
    assert "Details: resource requirements cannot be met\n" in text


@pytest.mark.parametrize(("over", "tail"), [
    ({"Similar": 1}, "+ 1 other commands with the same status\n"),
    ({"Similar": 2, "FailReason": "lost contact with runner"},
     "+ 2 other commands with the same status and problem\n"),
    ({"Similar": 3, "Exited": True, "Exitcode": 1},
     "+ 3 other commands with the same status and exit code\n"),
])
def test_similar_lines(over: dict[str, Any], tail: str) -> None:
    assert details(job(**over)).endswith(tail + "\n")
