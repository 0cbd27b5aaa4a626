"""Status objects, state filters and ``limit`` grouping (spec/rest-and-queue.md §2.1, §3)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from wr.errors import BadRequest
from wr.jobs import UNSET_TIME, Job, State
from wr.status import (
    STATE_FILTERS,
    display_env,
    encode,
    group_similar,
    job_status,
    json_array,
    matches_state,
    mounts_to_text,
    parse_limit,
    parse_state_filter,
    status_bytes,
    walltime,
)
from wr.submission import jobs_from_request

SEED_ORDER = [
    "Key", "RepGroup", "DepGroups", "Dependencies", "Cmd", "State", "Cwd", "CwdBase",
    "HomeChanged", "Behaviours", "Mounts", "MonitorDocker", "WithDocker", "WithSingularity",
    "ContainerMounts", "ExpectedRAM", "ExpectedTime", "RequestedDisk", "OtherRequests", "Cores",
    "PeakRAM", "PeakDisk", "Exited", "Exitcode", "FailReason", "Pid", "Host", "HostID",
    "HostIP", "Walltime", "CPUtime", "Started", "Ended", "StdErr", "StdOut", "Env", "Attempts",
    "Similar", "LimitGroups", "Modules", "IsPushUpdate",
]


def make(**fields: Any) -> Job:
    fields.setdefault("key", "0" * 32)
    fields.setdefault("cmd", "true")
    return Job(**fields)


def status(job: Job, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("now", 1000.0)
    return orjson.loads(encode(job_status(job, **kwargs)))


# -- the seed example ---------------------------------------------------------------------

def test_seed_post_answer():
    """POST the seed's body and query; the answer is the seed's (with Cores 1, see §3.1)."""
    body = (
        b'[{"cmd":"sleep 5 && echo mymsg && false","memory":"5M","cpus":1},'
        b'{"cmd":"sleep 5","cpus":1}]'
    )
    query = {"rep_grp": "myid", "cpus": "2", "memory": "3G", "time": "5s"}
    jobs, _ = jobs_from_request(body, query, now=1524225090.0)
    raw = encode([job_status(job, now=1524225091.0) for job in jobs])
    assert raw.endswith(b"]\n")
    first, second = orjson.loads(raw)
    assert list(first) == SEED_ORDER and list(second) == SEED_ORDER
    common = {
        "RepGroup": "myid", "DepGroups": None, "Dependencies": None, "State": "ready",
        "Cwd": "", "CwdBase": "/tmp", "HomeChanged": False, "Behaviours": "", "Mounts": "",
        "ExpectedTime": 5, "RequestedDisk": 0, "OtherRequests": None, "Cores": 1,
        "PeakRAM": 0, "Exited": False, "Exitcode": 0, "FailReason": "", "Pid": 0, "Host": "",
        "HostID": "", "HostIP": "", "Walltime": 0, "CPUtime": 0, "Started": -62135596800,
        "Ended": -62135596800, "StdErr": "", "StdOut": "", "Env": None, "Attempts": 0,
        "Similar": 0,
    }
    assert first == first | common | {
        "Key": "58cef10e7a340c3b7fa09ea304a3cb98", "Cmd": "sleep 5 && echo mymsg && false",
        "ExpectedRAM": 5,
    }
    assert second == second | common | {
        "Key": "ea4266bc0fc7dd493caeb2fff1963e4a", "Cmd": "sleep 5", "ExpectedRAM": 3072,
    }
    assert b'"ExpectedTime":5,' in raw and b'"Cores":1,' in raw and b'"Walltime":0,' in raw


def test_seed_buried_job():
    """The seed's GET answer for the failed job, rebuilt from a Job record."""
    job = make(
        key="58cef10e7a340c3b7fa09ea304a3cb98", cmd="sleep 5 && echo mymsg && false",
        rep_grp="myid", ram=5, time=5.0, cores=2.0, state=State.BURIED,
        actual_cwd="/tmp/wr_cwd/5/8/c/ef10e7a340c3b7fa09ea304a3cb98591997052/cwd",
        peak_ram=13, exited=True, exitcode=1, fail_reason="command exited non-zero",
        pid=25927, host="vr-2-2-02", host_ip="172.17.27.150", started=1524225096.1,
        ended=1524225101.102266249, attempts=1,
    )
    got = status(job, std=("mymsg", ""))
    assert got["Cwd"] == "/wr_cwd/5/8/c/ef10e7a340c3b7fa09ea304a3cb98591997052/cwd"
    assert (got["Started"], got["Ended"]) == (1524225096, 1524225101)
    assert got["Walltime"] == pytest.approx(5.002266249)
    assert (got["State"], got["Exitcode"], got["Cores"]) == ("buried", 1, 2)
    assert (got["StdOut"], got["StdErr"]) == ("mymsg", "")


# -- single properties --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("fields", "kwargs", "prop", "expected"),
    [
        ({}, {}, "Started", UNSET_TIME),
        ({"started": 10.9}, {}, "Started", 10),
        ({"ended": 20.0}, {}, "Ended", 20),
        ({"rep_grp": "a"}, {}, "RepGroup", "a"),
        ({"rep_grp": "a"}, {"rep_grp": "found-by"}, "RepGroup", "found-by"),
        ({"state": State.READY}, {"state": "deleted"}, "State", "deleted"),
        ({"state": State.RUNNING}, {}, "State", "running"),
        ({"dep_grps": ["a", "a"]}, {}, "DepGroups", ["a", "a"]),
        ({"deps": ["g"], "cmd_deps": ["k" * 32]}, {}, "Dependencies", ["g", "k" * 32]),
        ({"cmd_deps": ["k" * 32]}, {}, "Dependencies", ["k" * 32]),
        ({"limit_grps": ["b:3", "a", "b"]}, {}, "LimitGroups", ["a", "b"]),
        ({"modules": ["m"]}, {}, "Modules", ["m"]),
        ({"other": {"cloud_os": "u", "cloud_flavor": "o1.tiny"}}, {}, "OtherRequests",
         ["cloud_flavor:o1.tiny", "cloud_os:u"]),
        ({}, {"env": ["A=1"]}, "Env", ["A=1"]),
        ({"env": ["A=1"]}, {}, "Env", None),
        ({}, {"similar": 3}, "Similar", 3),
        ({"time": 1.5}, {}, "ExpectedTime", 1.5),
        ({"time": 3600.0}, {}, "ExpectedTime", 3600),
        ({"cores": 0.5}, {}, "Cores", 0.5),
        ({"cores": 0.0}, {}, "Cores", 0),
        ({"cpu_time": 0.25}, {}, "CPUtime", 0.25),
        ({"exitcode": -1, "state": State.RESERVED}, {}, "Exitcode", -1),
        ({"change_home": True}, {}, "HomeChanged", True),
        ({"cwd": "/base", "actual_cwd": "/base/wr_cwd/a/b/c/rest/cwd"}, {}, "Cwd",
         "/wr_cwd/a/b/c/rest/cwd"),
        ({"cwd": "/base/", "actual_cwd": "/base/x/cwd"}, {}, "Cwd", "/x/cwd"),
        ({"cwd": "/", "actual_cwd": "/wr_cwd/x/cwd"}, {}, "Cwd", "/wr_cwd/x/cwd"),
        ({"cwd": "/a", "actual_cwd": "/b/cwd"}, {}, "Cwd", "/../b/cwd"),
        ({"cwd": "/base", "cwd_matters": True, "actual_cwd": "/base"}, {}, "Cwd", ""),
        ({"behaviours": [{"when": "on_exit", "do": "cleanup_all", "arg": True},
                         {"when": "on_failure", "do": "run", "arg": "foo"},
                         {"when": "on_success", "do": "cleanup", "arg": True}]}, {},
         "Behaviours",
         '{"on_failure":[{"run":"foo"}],"on_success":[{"cleanup":true}],'
         '"on_exit":[{"cleanup_all":true}]}'),
        ({"mounts": [{"Mount": "/tmp/wr_mnt", "Targets": [
            {"Profile": "default", "Path": "mybucket/subdir", "Write": True}]}]}, {}, "Mounts",
         '[{"Mount":"/tmp/wr_mnt","Targets":[{"Profile":"default","Path":"mybucket/subdir",'
         '"Write":true}]}]'),
        ({}, {}, "IsPushUpdate", False),
    ],
)
def test_status_properties(fields, kwargs, prop, expected):
    assert status(make(**fields), **kwargs)[prop] == expected


def test_empty_lists_are_null():
    got = status(make())
    for prop in ("DepGroups", "Dependencies", "OtherRequests", "Env", "LimitGroups",
                 "Modules"):
        assert got[prop] is None, prop


def test_status_does_not_share_the_jobs_lists():
    job = make(dep_grps=["a"], modules=["m"])
    got = job_status(job, now=0)
    got["DepGroups"].append("x")
    got["Modules"].append("y")
    assert job.dep_grps == ["a"] and job.modules == ["m"]


def test_mounts_text_escapes_like_go_and_omits_zero_values():
    text = mounts_to_text([{
        "Mount": "/m<&>", "CacheBase": "", "Retries": 0, "Verbose": False,
        "Targets": [{"Profile": "", "Path": "b", "CacheDir": "", "Cache": False,
                     "Write": False}],
    }])
    assert text == '[{"Mount":"/m\\u003c\\u0026\\u003e","Targets":[{"Path":"b"}]}]'
    assert orjson.loads(text)[0]["Mount"] == "/m<&>"
    assert mounts_to_text([]) == ""


@pytest.mark.parametrize(
    ("fields", "now", "expected"),
    [
        ({}, 100.0, 0.0),
        ({"state": State.RUNNING, "started": 90.0}, 100.0, 10.0),
        ({"state": State.RESERVED, "started": 90.0}, 100.0, 10.0),
        ({"state": State.LOST, "started": 90.0}, 100.0, 10.0),
        ({"state": State.LOST, "started": 90.0, "ended": 95.0}, 100.0, 5.0),
        ({"state": State.BURIED, "started": 90.0, "ended": 95.5}, 100.0, 5.5),
        ({"state": State.COMPLETE, "started": 90.0, "ended": 91.0}, 100.0, 1.0),
        ({"state": State.BURIED, "started": 90.0}, 100.0, 0.0),
        ({"state": State.RUNNING, "started": 110.0}, 100.0, 0.0),
    ],
)
def test_walltime(fields, now, expected):
    assert walltime(make(**fields), now) == expected


def test_walltime_is_an_int_when_whole():
    got = encode(job_status(make(state=State.RUNNING, started=90.0), now=100.0))
    assert b'"Walltime":10,' in got


# -- env ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("base", "overrides", "expected"),
    [
        ({"A": "1", "B": "2"}, [], ["A=1", "B=2"]),
        ({"A": "1", "B": "2"}, ["A=9"], ["A=9", "B=2"]),
        ({"A": "1"}, ["C=3", "D=4"], ["A=1", "C=3", "D=4"]),
        ({}, ["C=3", "C=4"], ["C=4"]),
        ({"X": "a=b"}, ["X=c=d"], ["X=c=d"]),
    ],
)
def test_display_env(base, overrides, expected):
    assert display_env(make(env=overrides), base) == expected


# -- state filters ------------------------------------------------------------------------

ALL_STATES = ["delayed", "ready", "reserved", "running", "lost", "buried", "dependent",
              "complete"]
MATCHES = {
    "delayed": {"delayed"},
    "ready": {"ready"},
    "reserved": {"reserved", "running"},
    "running": {"reserved", "running"},
    "lost": {"lost"},
    "buried": {"buried"},
    "dependent": {"dependent"},
    "complete": {"complete"},
    "deletable": {"delayed", "ready", "buried", "dependent"},
}


@pytest.mark.parametrize("wanted", STATE_FILTERS)
@pytest.mark.parametrize("job_state", ALL_STATES)
def test_matches_state(job_state, wanted):
    assert matches_state(job_state, wanted) is (job_state in MATCHES[wanted])
    assert matches_state(State(job_state), wanted) is (job_state in MATCHES[wanted])


@pytest.mark.parametrize("wanted", ["x", "Ready", "deleted", " ready"])
def test_unknown_state_filter(wanted):
    message = (f'unknown state "{wanted}"; use one of '
               "delayed|ready|reserved|running|lost|buried|dependent|complete|deletable")
    for check in (lambda: matches_state("ready", wanted), lambda: parse_state_filter(wanted)):
        with pytest.raises(BadRequest) as info:
            check()
        assert info.value.message == message


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("lost", "lost")])
def test_parse_state_filter(value, expected):
    assert parse_state_filter(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 0), ("", 0), ("3", 3), ("+2", 2), ("-1", 0), ("0", 0)]
)
def test_parse_limit(value, expected):
    assert parse_limit(value) == expected


@pytest.mark.parametrize("value", ["x", "1.5", " 1", "1e3"])
def test_bad_limit(value):
    with pytest.raises(BadRequest) as info:
        parse_limit(value)
    assert info.value.message == f"limit value ({value}) is not an integer"


# -- limit grouping -----------------------------------------------------------------------

def named(name: str, state: State = State.READY, exitcode: int = 0, reason: str = "") -> Job:
    return make(key=name.ljust(32, "0"), cmd=name, state=state, exitcode=exitcode,
                fail_reason=reason)


def shown(groups: list[tuple[Job, int]]) -> list[tuple[str, int]]:
    return [(job.cmd, similar) for job, similar in groups]


def test_group_similar_spec_example():
    """A rep group with 2 ready jobs and limit=1 gives 1 job with Similar 1."""
    a, b = named("a"), named("b")
    assert shown(group_similar([a, b], 1)) == [("a", 1)]
    assert status(a, similar=1)["Similar"] == 1


@pytest.mark.parametrize(
    ("jobs", "limit", "expected"),
    [
        ([named("a"), named("b")], 0, [("a", 0), ("b", 0)]),
        ([named("a"), named("b")], -1, [("a", 0), ("b", 0)]),
        ([named("a"), named("b")], 5, [("a", 0), ("b", 0)]),
        ([named("a"), named("b"), named("c"), named("d")], 2, [("a", 0), ("b", 2)]),
        # running and reserved share a group; lost does not
        ([named("r", State.RUNNING, -1), named("s", State.RESERVED, -1),
          named("l", State.LOST, -1)], 1, [("r", 1), ("l", 0)]),
        # exit code and fail reason split groups; groups in order of first appearance
        ([named("b1", State.BURIED, 1, "command exited non-zero"), named("r1"),
          named("b2", State.BURIED, 2, "command exited non-zero"),
          named("b3", State.BURIED, 1, "command exited non-zero"), named("r2"),
          named("b4", State.BURIED, 1, "command used too much RAM")], 1,
         [("b1", 1), ("r1", 1), ("b2", 0), ("b4", 0)]),
        ([], 1, []),
    ],
)
def test_group_similar(jobs, limit, expected):
    assert shown(group_similar(jobs, limit)) == expected


def test_encode():
    assert encode([]) == b"[]\n"
    assert encode({"a": "<&>"}) == b'{"a":"<&>"}\n'


def test_statuses_encoded_from_templates_are_the_status_objects_encoded() -> None:
    """A POST's answer: never-run jobs spliced into encoded templates, others encoded
    whole; the bytes are those of the status objects, whatever mix of jobs."""
    body = orjson.dumps([
        {"cmd": "echo plain"}, {"cmd": 'echo "quoted" \\ é'}, {"cmd": "echo own", "env": ["A=1"]},
        {"cmd": "echo ran"}, {"cmd": "echo deps", "deps": ["d"], "dep_grps": ["g"]}])
    plain = jobs_from_request(body, {"rep_grp": "r"}, now=5.0)[0]
    shared = jobs_from_request(body, {"on_exit": '[{"cleanup":true}]'}, now=5.0)[0]
    jobs = plain + shared
    for job in jobs:
        job.compact()
    jobs[3].started, jobs[3].exitcode = 6.0, 1
    assert shared[0].rare is shared[1].rare and shared[0].rare.shared
    for _ in range(2):  # the second time from the cached templates
        assert json_array([status_bytes(job, now=10.0) for job in jobs]) == encode(
            [job_status(job, now=10.0) for job in jobs])
    assert json_array([]) == b"[]\n"


def test_jobs_that_never_ran_share_a_template_but_not_their_keys_or_commands() -> None:
    jobs = [Job(key=f"k{i}", cmd=f"echo {i}", rep_grp="r", dep_grps=["d"], deps=["e"],
                limit_grps=["l"], ram=5, time=5.0, cores=1.0) for i in range(3)]
    for job in jobs:
        job.compact()
    first, second = job_status(jobs[0], now=0.0), job_status(jobs[1], now=0.0)
    assert (first["Key"], first["Cmd"], second["Key"], second["Cmd"]) == (
        "k0", "echo 0", "k1", "echo 1")
    first["State"] = "changed"  # a caller's change stays in its own copy
    assert job_status(jobs[2], now=0.0)["State"] == "ready"
    # the same object as the general rendering gives, here forced by asking for std
    assert job_status(jobs[2], now=0.0) == job_status(jobs[2], now=0.0, std=("", ""))
    jobs[2].started = 100.0  # once it ran, its own figures show
    assert job_status(jobs[2], now=110.0)["Started"] == 100
