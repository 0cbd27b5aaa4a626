"""Turning POST bodies and URL queries into jobs (spec/rest-and-queue.md §2.2)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wr.errors import BadRequest
from wr.jobs import State
from wr.submission import (
    JobDefaults,
    job_from_object,
    jobs_from_request,
    parse_jobs_body,
    parse_query_defaults,
)

PROBLEM = "there was a problem interpreting your job: "


def convert(obj: dict[str, Any], query: dict[str, str] | None = None, now: float = 0.0):
    defaults, _ = parse_query_defaults(query or {})
    return job_from_object(obj, defaults, now=now)


def problem(obj: dict[str, Any], query: dict[str, str] | None = None) -> str:
    with pytest.raises(BadRequest) as info:
        convert(obj, query)
    assert info.value.status == 400
    return info.value.message


# -- the seed example ---------------------------------------------------------------------

SEED_BODY = (
    b'[{"cmd":"sleep 5 && echo mymsg && false","memory":"5M","cpus":1},'
    b'{"cmd":"sleep 5","cpus":1}]'
)
SEED_QUERY = {"rep_grp": "myid", "cpus": "2", "memory": "3G", "time": "5s"}


def test_seed_post_gives_the_seed_jobs():
    jobs, rerun = jobs_from_request(SEED_BODY, SEED_QUERY, now=1524225090.5)
    assert rerun is False
    assert [j.key for j in jobs] == [
        "58cef10e7a340c3b7fa09ea304a3cb98",
        "ea4266bc0fc7dd493caeb2fff1963e4a",
    ]
    assert [j.ram for j in jobs] == [5, 3072]
    assert [j.time for j in jobs] == [5.0, 5.0]
    assert [j.cores for j in jobs] == [1.0, 1.0]  # JSON wins; the seed's "Cores":2 is wrong
    for job in jobs:
        assert job.rep_grp == "myid"
        assert job.cwd == "/tmp"
        assert job.req_grp == "sleep"
        assert job.state is State.READY
        assert job.other == {}
        assert job.added == 1524225090.5
        assert job.until_buried == 1
        assert (job.user_ram, job.user_time, job.user_disk) == (job.ram, job.time, job.disk)


# -- keys ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("obj", "key"),
    [
        ({"cmd": "echo 1 && true"}, "de6d167c58701e55f5b9f9e1e91d7807"),
        ({"cmd": "echo 2 && true", "cwd": "/elsewhere"}, "f5c0d6240167a6e0b803e23f74e3a085"),
        ({"cmd": "echo 3 && false", "cwd_matters": True}, "db1e7d99becace3306c1c2470331c78e"),
        (
            {"cmd": "echo defaults", "mounts": [
                {"Mount": "/tmp/wr_mnt",
                 "Targets": [{"Profile": "default", "Path": "mybucket/subdir", "Write": True}]},
            ]},
            "b17c665295e0a3fcf2e07c6d7ad6ddd4",
        ),
    ],
)
def test_keys_are_wrs(obj, key):
    assert convert(obj).key == key


def test_key_includes_containers():
    plain = convert({"cmd": "x"}).key
    docker = convert({"cmd": "x", "with_docker": "ubuntu"}).key
    sing = convert({"cmd": "x", "with_singularity": "ubuntu"}).key
    assert len({plain, docker, sing}) == 3
    assert convert({"cmd": "x"}, {"with_docker": "ubuntu"}).key == docker


# -- merge rules --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("obj", "query", "attr", "expected"),
    [
        # strings: JSON non-empty > query > default
        ({}, {}, "cwd", "/tmp"),
        ({}, {"cwd": "/q"}, "cwd", "/q"),
        ({"cwd": "/j"}, {"cwd": "/q"}, "cwd", "/j"),
        ({"cwd": ""}, {"cwd": "/q"}, "cwd", "/q"),
        ({}, {}, "rep_grp", "manually_added"),
        ({}, {"rep_grp": ""}, "rep_grp", "manually_added"),
        ({}, {"rep_grp": "q"}, "rep_grp", "q"),
        ({"rep_grp": "j"}, {"rep_grp": "q"}, "rep_grp", "j"),
        ({}, {}, "req_grp", "echo"),
        ({"cmd": "/usr/bin/foo x"}, {}, "req_grp", "foo"),
        ({"cmd": " leading space"}, {}, "req_grp", "."),
        ({}, {"req_grp": "q"}, "req_grp", "q"),
        ({"req_grp": "j"}, {"req_grp": "q"}, "req_grp", "j"),
        ({}, {"monitor_docker": "?"}, "monitor_docker", "?"),
        ({"monitor_docker": "c"}, {"monitor_docker": "?"}, "monitor_docker", "c"),
        ({}, {"container_mounts": "/a:/b"}, "container_mounts", "/a:/b"),
        ({}, {"bsub_mode": "production"}, "bsub_mode", "production"),
        ({"bsub_mode": "development"}, {"bsub_mode": "production"}, "bsub_mode",
         "development"),
        ({"group": "staff"}, {}, "group", "staff"),
        # lists: JSON non-empty > query (comma-separated)
        ({}, {"dep_grps": "a,b"}, "dep_grps", ["a", "b"]),
        ({}, {"dep_grps": "a,,b"}, "dep_grps", ["a", "b"]),
        ({"dep_grps": ["j"]}, {"dep_grps": "a,b"}, "dep_grps", ["j"]),
        ({"dep_grps": []}, {"dep_grps": "a"}, "dep_grps", ["a"]),
        ({}, {"deps": "x,y"}, "deps", ["x", "y"]),
        ({"deps": ["j"]}, {"deps": "x,y"}, "deps", ["j"]),
        ({}, {"limit_grps": "l1,l2:3"}, "limit_grps", ["l1", "l2:3"]),
        ({"limit_grps": ["j:2"]}, {"limit_grps": "q"}, "limit_grps", ["j:2"]),
        ({}, {"env": "A=1,B=2"}, "env", ["A=1", "B=2"]),
        ({"env": ["C=3"]}, {"env": "A=1"}, "env", ["C=3"]),
        ({"modules": ["m/1"]}, {}, "modules", ["m/1"]),
        # numbers: JSON non-null > query
        ({}, {}, "cores", 0.0),
        ({}, {"cpus": "2"}, "cores", 2.0),
        ({}, {"cpus": "0.5"}, "cores", 0.5),
        ({"cpus": 1}, {"cpus": "2"}, "cores", 1.0),
        ({"cpus": 0}, {"cpus": "2"}, "cores", 0.0),
        ({"cpus": None}, {"cpus": "2"}, "cores", 2.0),
        ({"cpus": 1.5}, {}, "cores", 1.5),
        ({}, {"priority": "7"}, "priority", 7),
        ({"priority": 3}, {"priority": "7"}, "priority", 3),
        ({"priority": 0}, {"priority": "7"}, "priority", 0),
        ({"priority": 255.0}, {}, "priority", 255),
        ({}, {"override": "2"}, "override", 2),
        ({"retries": 4}, {"retries": "2"}, "retries", 4),
        ({}, {"retries": "2"}, "until_buried", 3),
        ({"retries": 0}, {"retries": "2"}, "until_buried", 1),
        ({}, {}, "disk", 0),
        ({}, {}, "disk_set", False),
        ({}, {"disk": ""}, "disk_set", True),
        ({}, {"disk": "5"}, "disk", 5),
        ({"disk": 0}, {}, "disk_set", True),
        ({"disk": 3}, {"disk": "5"}, "disk", 3),
        ({"disk": 3}, {}, "user_disk", 3),
        ({"reserve_timeout": 30}, {}, "reserve_timeout", 30),
        # booleans are OR-ed
        ({}, {"cwd_matters": "true"}, "cwd_matters", True),
        ({"cwd_matters": False}, {"cwd_matters": "true"}, "cwd_matters", True),
        ({"cwd_matters": True}, {}, "cwd_matters", True),
        ({}, {"cwd_matters": "yes"}, "cwd_matters", False),
        ({"change_home": True}, {}, "change_home", True),
        ({}, {"change_home": "true"}, "change_home", True),
        # memory: JSON parsed > query if >= 1 MB > 1G
        ({}, {}, "ram", 1024),
        ({}, {"memory": "3G"}, "ram", 3072),
        ({}, {"memory": "500K"}, "ram", 1024),
        ({"memory": "500K"}, {"memory": "3G"}, "ram", 0),
        ({"memory": "1.5G"}, {}, "ram", 1536),
        ({"memory": "5 m"}, {}, "ram", 5),
        ({"memory": "2g"}, {}, "user_ram", 2048),
        # time: JSON parsed > query if non-zero > 1h
        ({}, {}, "time", 3600.0),
        ({}, {"time": "5s"}, "time", 5.0),
        ({}, {"time": "0"}, "time", 3600.0),
        ({"time": "0"}, {"time": "5s"}, "time", 0.0),
        ({"time": "1h30m"}, {}, "time", 5400.0),
        ({"time": "300ms"}, {}, "user_time", 0.3),
        ({}, {"no_retry_over_walltime": "5m"}, "no_retry_over_walltime", 300.0),
        ({"no_retry_over_walltime": "1m"}, {"no_retry_over_walltime": "5m"},
         "no_retry_over_walltime", 60.0),
    ],
)
def test_merge_rules(obj, query, attr, expected):
    job = convert({"cmd": "echo hi", **obj}, query)
    value = getattr(job, attr)
    # Jobs that share a part of rare requests hold its lists as tuples (compacted).
    assert (list(value) if isinstance(value, tuple) else value) == expected


def test_wr_clients_send_every_key_with_zero_values():
    """rest_test.go's body (every key, zero values) means "not provided" throughout."""
    body = {
        "mounts": None, "limit_grps": None, "modules": None, "dep_grps": None, "deps": None,
        "cmd_deps": None, "on_failure": None, "on_success": None, "on_exit": None,
        "env": None, "cmd": "echo 1 && true", "cwd": "", "req_grp": "", "group": "",
        "memory": "", "time": "", "rep_grp": "rp1", "monitor_docker": "", "with_docker": "",
        "with_singularity": "", "container_mounts": "", "cloud_os": "", "cloud_username": "",
        "cloud_script": "", "cloud_config_files": "", "cloud_flavor": "", "queue": "",
        "queues_avoid": "", "misc": "", "bsub_mode": "", "cpus": None, "disk": None,
        "override": None, "priority": None, "retries": 2, "no_retry_over_walltime": "5m",
        "cloud_ram": None, "reserve_timeout": None, "cwd_matters": False,
        "change_home": False, "cloud_shared": False,
    }
    job = convert(body, {"cpus": "1", "priority": "4", "dep_grps": "g"})
    assert job.key == "de6d167c58701e55f5b9f9e1e91d7807"
    assert (job.rep_grp, job.cwd, job.ram, job.time) == ("rp1", "/tmp", 1024, 3600.0)
    assert (job.cores, job.priority, job.retries, job.until_buried) == (1.0, 4, 2, 3)
    assert job.no_retry_over_walltime == 300.0
    assert job.dep_grps == ("g",)
    assert job.other == {}
    assert job.behaviours == [] and job.mounts == []


@pytest.mark.parametrize("key", ["CMD", "Cmd", "cMd"])
def test_keys_match_case_insensitively(key):
    job = convert({key: "sleep 5", "MEMORY": "5M", "Rep_Grp": "r", "CPUs": 2})
    assert (job.cmd, job.ram, job.rep_grp, job.cores) == ("sleep 5", 5, "r", 2.0)


def test_unknown_keys_are_ignored():
    assert convert({"cmd": "sleep 5", "colour": "blue", "Similar": 3}).cmd == "sleep 5"


def test_cmd_deps_and_deps():
    job = convert({
        "cmd": "x",
        "deps": ["g2"],
        "cmd_deps": [
            {"DepGroup": "g1"},
            {"Essence": {"JobKey": "ea4266bc0fc7dd493caeb2fff1963e4a"}},
            {"essence": {"cmd": "sleep 5"}},
            {"Essence": {"Cmd": "echo 3 && false", "Cwd": "/tmp"}},
        ],
    }, {"deps": "q"})
    assert job.deps == ("g1", "g2")
    assert job.cmd_deps == [
        "ea4266bc0fc7dd493caeb2fff1963e4a",
        "ea4266bc0fc7dd493caeb2fff1963e4a",
        "db1e7d99becace3306c1c2470331c78e",
    ]


def test_query_deps_only_when_json_has_none():
    assert convert({"cmd": "x", "cmd_deps": [{"DepGroup": "g"}]}, {"deps": "q"}).deps == ("g",)
    assert convert({"cmd": "x"}, {"deps": "q"}).deps == ("q",)


# -- behaviours and mounts ----------------------------------------------------------------

BEHAVIOURS = {
    "on_failure": [{"run": "foo"}],
    "on_success": [{"cleanup": True}],
    "on_exit": [{"cleanup_all": True}],
}


def test_behaviours_from_json():
    job = convert({"cmd": "x", **BEHAVIOURS})
    assert job.behaviours == [
        {"when": "on_failure", "do": "run", "arg": "foo"},
        {"when": "on_success", "do": "cleanup", "arg": True},
        {"when": "on_exit", "do": "cleanup_all", "arg": True},
    ]


@pytest.mark.parametrize(
    "encoded",
    [
        '[{"run":"echo 50% + more"}]',  # as the framework hands it over: decoded once
        "%5B%7B%22run%22%3A%22echo+50%25+%2B+more%22%7D%5D",  # still escaped once more
    ],
)
def test_query_behaviours(encoded):
    defaults, _ = parse_query_defaults({"on_failure": encoded})
    job = job_from_object({"cmd": "x"}, defaults)
    assert list(job.behaviours) == [
        {"when": "on_failure", "do": "run", "arg": "echo 50% + more"}]
    own = job_from_object({"cmd": "x", "on_failure": [{"remove": True}]}, defaults)
    assert own.behaviours == [{"when": "on_failure", "do": "remove", "arg": True}]


def test_query_and_json_behaviours_merge_per_trigger():
    defaults, _ = parse_query_defaults({"on_success": '[{"cleanup":true}]'})
    job = job_from_object({"cmd": "x", "on_failure": [{"run": "f"}]}, defaults)
    assert [b["when"] for b in job.behaviours] == ["on_failure", "on_success"]


def test_mounts_are_normalised_and_sorted():
    job = convert({"cmd": "x", "mounts": [
        {"mount": "/b", "targets": [{"path": "bucket/b", "cache": True, "profile": ""}],
         "retries": 2, "verbose": False},
        {"MOUNT": "/a", "CacheBase": "/c", "Targets": [{"Path": "bucket/a", "Write": False}]},
    ]})
    assert job.mounts == [
        {"Mount": "/a", "CacheBase": "/c", "Targets": [{"Path": "bucket/a"}]},
        {"Mount": "/b", "Retries": 2, "Targets": [{"Path": "bucket/b", "Cache": True}]},
    ]


def test_query_mounts():
    text = '[{"Mount":"/tmp/wr_mnt","Targets":[{"Profile":"default","Path":"mybucket/subdir"}]}]'
    defaults, _ = parse_query_defaults({"mounts": text})
    assert job_from_object({"cmd": "echo defaults"}, defaults).key == (
        "b17c665295e0a3fcf2e07c6d7ad6ddd4"
    )


# -- OtherRequests ------------------------------------------------------------------------

def test_other_requests():
    job = convert({
        "cmd": "x", "cloud_os": "ubuntu", "cloud_username": "ub", "cloud_flavor": "o1.tiny",
        "cloud_config_files": "~/.s3cfg:~/.s3cfg", "cloud_ram": 2000, "cloud_shared": True,
        "queue": "long", "queues_avoid": "short", "misc": "-R x", "reserve_timeout": 5,
    })
    assert job.other == {
        "cloud_os": "ubuntu", "cloud_user": "ub", "cloud_flavor": "o1.tiny",
        "cloud_config_files": "~/.s3cfg:~/.s3cfg", "cloud_os_ram": "2000",
        "cloud_shared": "true", "scheduler_queue": "long", "scheduler_queues_avoid": "short",
        "scheduler_misc": "-R x", "rtimeout": "5",
    }


@pytest.mark.parametrize(
    ("obj", "query", "expected"),
    [
        ({}, {"cloud_os": "q", "cloud_username": "u", "cloud_flavor": "f"},
         {"cloud_os": "q", "cloud_user": "u", "cloud_flavor": "f"}),
        ({"cloud_os": "j"}, {"cloud_os": "q"}, {"cloud_os": "j"}),
        ({}, {"cloud_config_files": "a:b"}, {"cloud_config_files": "a:b"}),
        ({}, {"cloud_ram": "500"}, {"cloud_os_ram": "500"}),
        ({}, {"cloud_ram": "0"}, {}),
        ({"cloud_ram": 0}, {"cloud_ram": "500"}, {"cloud_os_ram": "0"}),
        ({}, {"cloud_shared": "true"}, {"cloud_shared": "true"}),
        ({"cloud_shared": False}, {}, {}),
    ],
)
def test_other_requests_merge(obj, query, expected):
    assert convert({"cmd": "x", **obj}, query).other == expected


def test_cloud_script_content_is_read(tmp_path, monkeypatch):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    assert convert({"cmd": "x", "cloud_script": str(script)}).other == {
        "cloud_script": "#!/bin/sh\necho hi\n"
    }
    monkeypatch.setenv("HOME", str(tmp_path))
    assert convert({"cmd": "x"}, {"cloud_script": "~/script.sh"}).other["cloud_script"] == (
        "#!/bin/sh\necho hi\n"
    )


def test_cloud_script_is_read_once_per_request(tmp_path):
    script = tmp_path / "s"
    script.write_text("a")
    body = orjson.dumps([{"cmd": f"c{i}"} for i in range(3)])
    jobs, _ = jobs_from_request(body, {"cloud_script": str(script)}, now=0)
    assert [j.other["cloud_script"] for j in jobs] == ["a"] * 3


def test_a_query_default_is_used_only_by_jobs_that_do_not_give_their_own(tmp_path):
    """A query's cloud script that cannot be read, or a priority out of range, fails the
    jobs that would take it, not those that give their own (a request's jobs share what
    they take from the query, wr.job_shape)."""
    script = tmp_path / "s"
    script.write_text("mine")
    query = {"cloud_script": str(tmp_path / "missing"), "priority": "300"}
    body = orjson.dumps([{"cmd": f"c{i}", "cloud_script": str(script), "priority": i}
                         for i in range(3)])
    jobs, _ = jobs_from_request(body, query, now=0)
    assert [(j.other["cloud_script"], j.priority) for j in jobs] == [("mine", i)
                                                                    for i in range(3)]
    for obj, says in (({"cloud_script": str(script)}, "priority value (300) is not in"),
                      ({"priority": 1}, f"path [{tmp_path / 'missing'}] could not be read")):
        body = orjson.dumps([{"cmd": "c", "cloud_script": str(script), "priority": 2},
                             {"cmd": "d", **obj}])
        with pytest.raises(BadRequest) as info:
            jobs_from_request(body, query, now=0)
        assert info.value.message.startswith(PROBLEM + says)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "no such file or directory"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: p.write_bytes(b"\xff\xfe"), "not UTF-8 text"),
        (lambda p: p.write_bytes(b"x" * ((1 << 20) + 1)), "larger than 1048576 bytes"),
    ],
)
def test_unreadable_cloud_script(tmp_path, make, reason):
    path = tmp_path / "script"
    make(path)
    message = problem({"cmd": "x", "cloud_script": str(path)})
    assert message.startswith(PROBLEM + f"path [{path}] could not be read: ")
    assert message.endswith(reason)


def test_cloud_script_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert problem({"cmd": "x", "cloud_script": str(fifo)}).endswith("not a regular file")


# -- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("obj", "query", "reason"),
    [
        ({"cmd": ""}, {}, "cmd was not specified"),
        ({"cmd": None}, {}, "cmd was not specified"),
        ({"CMD": ""}, {}, "cmd was not specified"),
        ({"cmd": 5}, {}, "cmd must be a string, not 5"),
        ({"cmd": "a\x00b"}, {}, "cmd must not contain NUL characters"),
        ({"cwd": ["/tmp"]}, {}, 'cwd must be a string, not ["/tmp"]'),
        ({"cpus": "abc"}, {}, 'cpus must be a number, not "abc"'),
        ({"cpus": True}, {}, "cpus must be a number, not true"),
        ({"cpus": -1}, {}, "cpus must not be negative (got -1)"),
        ({"cpus": 1e300}, {}, "cpus value (1e+300) is too large (at most 2147483647)"),
        ({"priority": 300}, {}, "priority value (300) is not in the range 0..255"),
        ({"priority": -1}, {}, "priority value (-1) is not in the range 0..255"),
        ({"priority": 1e300}, {}, "priority value (1e+300) is not in the range 0..255"),
        ({"priority": 300.0}, {}, "priority value (300.0) is not in the range 0..255"),
        ({}, {"priority": "300"}, "priority value (300) is not in the range 0..255"),
        ({"priority": 1.5}, {}, "priority must be an integer, not 1.5"),
        ({"priority": "1"}, {}, 'priority must be an integer, not "1"'),
        ({"priority": False}, {}, "priority must be an integer, not false"),
        ({"override": 3}, {}, "override value (3) is not in the range 0..2"),
        ({}, {"override": "-1"}, "override value (-1) is not in the range 0..2"),
        ({"retries": 256}, {}, "retries value (256) is not in the range 0..255"),
        ({"disk": 1e300}, {}, "disk value (1e+300) is too large"),
        ({"disk": 2**63}, {}, "disk value (9223372036854775808) is too large"),
        ({"disk": -1}, {}, "disk must not be negative (got -1)"),
        ({"disk": 1.5}, {}, "disk must be an integer, not 1.5"),
        ({"cloud_ram": "1G"}, {}, 'cloud_ram must be an integer, not "1G"'),
        ({"reserve_timeout": -5}, {}, "reserve_timeout must not be negative (got -5)"),
        ({"memory": "1000"}, {}, "memory value (1000) was not specified correctly: byte "
         "quantity must be a positive integer with a unit of measurement like M, MB, MiB, G, "
         "GiB, or GB"),
        ({"memory": 5}, {}, "memory must be a string, not 5"),
        ({"time": "abc"}, {}, 'time value (abc) was not specified correctly: '
         'time: invalid duration "abc"'),
        ({"time": "5"}, {}, 'time value (5) was not specified correctly: '
         'time: missing unit in duration "5"'),
        ({"time": "1d"}, {}, 'time value (1d) was not specified correctly: '
         'time: unknown unit "d" in duration "1d"'),
        ({"no_retry_over_walltime": "x"}, {}, 'no_retry_over_walltime value (x) was not '
         'specified correctly: time: invalid duration "x"'),
        ({"cwd_matters": "true"}, {}, 'cwd_matters must be true or false, not "true"'),
        ({"cloud_shared": 1}, {}, "cloud_shared must be true or false, not 1"),
        ({"dep_grps": "a,b"}, {}, 'dep_grps must be an array of strings, not "a,b"'),
        ({"deps": [1]}, {}, "deps must be an array of strings, not [1]"),
        ({"env": ["NOEQUALS"]}, {}, "env value (NOEQUALS) is not of the form NAME=VALUE"),
        ({"on_failure": {"run": "x"}}, {}, 'on_failure must be an array of behaviour '
         'objects, not {"run":"x"}'),
        ({"on_exit": ["cleanup"]}, {}, 'a behaviour in on_exit must be an object like '
         '{"cleanup":true}, not "cleanup"'),
        ({"on_success": [{"run": 5}]}, {}, "behaviour run in on_success must be a string, "
         "not 5"),
        ({"on_success": [{"cleanup": "yes"}]}, {}, "behaviour cleanup in on_success must be "
         'true or false, not "yes"'),
        ({"mounts": {"Mount": "/m"}}, {}, 'mounts must be an array of mount configs, not '
         '{"Mount":"/m"}'),
        ({"mounts": [{"Mount": "/m"}]}, {}, 'a mount config needs "Targets", an array of at '
         'least one target like {"Path":"bucket/dir"}, not null'),
        ({"mounts": [{"Targets": [{"Profile": "p"}]}]}, {}, 'a mount target needs a "Path": '
         '{"Profile":"p"}'),
        ({"mounts": [{"Targets": [{"Path": "p", "Write": "yes"}]}]}, {}, "mount target Write "
         'must be true or false, not "yes"'),
        ({"mounts": [{"Retries": "3", "Targets": [{"Path": "p"}]}]}, {}, "mount config "
         'Retries must be an integer, not "3"'),
        ({"cmd_deps": [{}]}, {}, "a cmd_deps entry needs an Essence or a DepGroup: {}"),
        ({"cmd_deps": [{"Essence": {"Cwd": "/x"}}]}, {}, "a cmd_deps Essence needs a JobKey "
         'or a Cmd: {"Cwd":"/x"}'),
        # issue 13: what no job can ask for
        ({"limit_grps": ["a:99999999999999999999"]}, {}, "limit group 'a:99999999999999999999'"
         ": limit 99999999999999999999 is out of range: a limit is an integer from -1 (which "
         "removes the limit) to 9223372036854775807"),
        ({"limit_grps": ["ok", "a:-7"]}, {}, "limit group 'a:-7': limit -7 is out of range: a "
         "limit is an integer from -1 (which removes the limit) to 9223372036854775807"),
        ({"limit_grps": ["a,b"]}, {}, "limit group name 'a,b' must not contain ','"),
        ({"limit_grps": [""]}, {}, "a limit group name must not be empty"),
        ({"limit_grps": ["time < 25:00:00"]}, {}, "limit group 'time < 25:00:00' is not a "
         "valid time window: '25:00:00' is not a time of day (hh 00-23, mm and ss 00-59)"),
        ({"limit_grps": ["a\x00b"]}, {}, "limit_grps must not contain NUL characters"),
        ({"cwd": "../../etc"}, {}, "cwd value (../../etc) is not an absolute path: give one "
         "that starts with /"),
        ({"cwd": "~/x"}, {}, "cwd value (~/x) is not an absolute path: give one that starts "
         "with /"),
        ({"time": "-1h"}, {}, "time value (-1h) must not be negative"),
        ({"time": "-1ns"}, {}, "time value (-1ns) must not be negative"),
        ({"no_retry_over_walltime": "-5m"}, {}, "no_retry_over_walltime value (-5m) must not "
         "be negative"),
    ],
)
def test_job_errors(obj, query, reason):
    assert problem({"cmd": "echo", **obj}, query) == PROBLEM + reason


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"memory": "3"}, "byte quantity must be a positive integer with a unit of "
         "measurement like M, MB, MiB, G, GiB, or GB"),
        ({"time": "abc"}, 'time: invalid duration "abc"'),
        ({"no_retry_over_walltime": "5"}, 'time: missing unit in duration "5"'),
        ({"priority": "abc"}, "priority value (abc) is not an integer"),
        ({"override": "1.0"}, "override value (1.0) is not an integer"),
        ({"retries": " 1"}, "retries value ( 1) is not an integer"),
        ({"disk": "x"}, "disk value (x) is not an integer"),
        ({"disk": "-2"}, "disk must not be negative (got -2)"),
        ({"disk": "99999999999999999999"}, "disk value (99999999999999999999) is too large"),
        ({"cloud_ram": "1G"}, "cloud_ram value (1G) is not an integer"),
        ({"cpus": "abc"}, "cpus value (abc) is not a number"),
        ({"cpus": "nan"}, "cpus value (nan) is not a number"),
        ({"cpus": "-1"}, "cpus must not be negative (got -1)"),
        ({"cpus": "1e300"}, "cpus value (1e300) is too large (at most 2147483647)"),
        ({"env": "A=1,B"}, "env value (B) is not of the form NAME=VALUE"),
        ({"on_failure": "[{"}, "on_failure: invalid JSON: "),
        ({"on_exit": '{"run":"x"}'}, 'on_exit must be an array of behaviour objects, not '
         '{"run":"x"}'),
        ({"mounts": "[1]"}, "a mount config must be an object, not 1"),
        ({"mounts": "%5Bnot json"}, "mounts: invalid JSON: "),
        # issue 13
        ({"limit_grps": "big:9223372036854775808"}, "limit group 'big:9223372036854775808': "
         "limit 9223372036854775808 is out of range: a limit is an integer from -1"),
        ({"limit_grps": "a,b:-2"}, "limit group 'b:-2': limit -2 is out of range"),
        ({"limit_grps": "a:x"}, "limit group 'a:x' is not a name, name:N"),
        ({"cwd": "../../etc"}, "cwd value (../../etc) is not an absolute path: give one that "
         "starts with /"),
        ({"time": "-1h"}, "time value (-1h) must not be negative"),
        ({"no_retry_over_walltime": "-1s"}, "no_retry_over_walltime value (-1s) must not be "
         "negative"),
    ],
)
def test_query_errors(query, message):
    with pytest.raises(BadRequest) as info:
        parse_query_defaults(query)
    assert info.value.message.startswith(message)
    assert not info.value.message.startswith(PROBLEM)


def test_query_defaults_and_rerun():
    defaults, rerun = parse_query_defaults({})
    assert defaults == JobDefaults() and rerun is False
    assert parse_query_defaults({"rerun": "true"})[1] is True
    assert parse_query_defaults({"rerun": "1"})[1] is False
    assert parse_query_defaults({"cmd": "ignored", "unknown": "x"})[0] == JobDefaults()


# -- the body -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"null", []),
        (b"[]", []),
        (b' [{"cmd":"x"}] ', [{"cmd": "x"}]),
        (b'[null, {"cmd":"x"}]', [{}, {"cmd": "x"}]),
    ],
)
def test_parse_jobs_body(body, expected):
    assert parse_jobs_body(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the request body is empty; expected a JSON array of job objects"),
        (b"  \n", "the request body is empty; expected a JSON array of job objects"),
        (b'{"cmd":"x"}', "expected a JSON array of job objects, got an object"),
        (b'"x"', "expected a JSON array of job objects, got a string"),
        (b"5", "expected a JSON array of job objects, got a number"),
        (b'[{"cmd":"x"}, 5]', "expected a JSON array of job objects, but element 1 is a "
         "number: 5"),
        (b'[["cmd"]]', 'expected a JSON array of job objects, but element 0 is an array: '
         '["cmd"]'),
        (b"[{", "the request body is not valid JSON: "),
        (b'[{"cmd":"x"}] trailing', "the request body is not valid JSON: "),
        (b'[{"cmd":"\xff"}]', "the request body is not valid JSON: "),
        (b'[{"cmd":"\\ud800"}]', "the request body is not valid JSON: "),
    ],
)
def test_bad_bodies(body, message):
    with pytest.raises(BadRequest) as info:
        parse_jobs_body(body)
    assert info.value.message.startswith(message)


def test_null_element_fails_as_a_job_without_cmd():
    with pytest.raises(BadRequest) as info:
        jobs_from_request(b"[null]", {}, now=0)
    assert info.value.message == PROBLEM + "cmd was not specified"


def test_nul_in_body_string_is_rejected():
    with pytest.raises(BadRequest) as info:
        jobs_from_request(b'[{"cmd":"a\\u0000b"}]', {}, now=0)
    assert info.value.message == PROBLEM + "cmd must not contain NUL characters"


def test_request_is_all_or_nothing():
    body = b'[{"cmd":"ok"},{"cmd":"bad","priority":300},{"cmd":"ok2"}]'
    with pytest.raises(BadRequest) as info:
        jobs_from_request(body, {}, now=0)
    assert info.value.message == PROBLEM + "priority value (300) is not in the range 0..255"


def test_query_is_checked_before_body():
    with pytest.raises(BadRequest) as info:
        jobs_from_request(b"not json", {"time": "abc"}, now=0)
    assert info.value.message == 'time: invalid duration "abc"'


def test_ranges_are_checked_per_job():
    """An empty array with priority=300 in the query is fine: there is no job to check."""
    assert jobs_from_request(b"[]", {"priority": "300"}, now=0) == ([], False)


def test_duplicates_in_one_post_are_kept():
    jobs, _ = jobs_from_request(b'[{"cmd":"a"},{"cmd":"a"}]', {}, now=0)
    assert len(jobs) == 2 and jobs[0].key == jobs[1].key


# -- robustness ---------------------------------------------------------------------------

FIELDS = [
    "cmd", "cwd", "cwd_matters", "change_home", "rep_grp", "req_grp", "group", "memory",
    "time", "cpus", "disk", "override", "priority", "retries", "no_retry_over_walltime",
    "limit_grps", "modules", "dep_grps", "deps", "cmd_deps", "env", "on_failure",
    "on_success", "on_exit", "mounts", "monitor_docker", "with_docker", "with_singularity",
    "container_mounts", "cloud_os", "cloud_username", "cloud_flavor", "cloud_config_files",
    "cloud_ram", "cloud_shared", "queue", "queues_avoid", "misc", "bsub_mode",
    "reserve_timeout", "CMD", "Targets", "Path", "run", "Essence", "DepGroup",
]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False) | text
    | st.sampled_from(["5M", "3G", "1h", "0", "echo x", "A=1", "/tmp", "-1"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(FIELDS) | text, children, max_size=4),
    max_leaves=12,
)
job_objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)


@settings(max_examples=400, deadline=None)
@given(obj=job_objects, cmd=st.none() | st.just("echo hi"))
def test_job_from_object_only_raises_bad_request(obj, cmd):
    if cmd is not None:
        obj = {**obj, "cmd": cmd}
    try:
        job = job_from_object(obj, JobDefaults())
    except BadRequest as e:
        assert e.message.startswith(PROBLEM)
    else:
        assert len(job.key) == 32
        assert 0 <= job.priority <= 255 and job.cores >= 0
        orjson.dumps(job.to_record())  # storable and serialisable


@settings(max_examples=200, deadline=None)
@given(query=st.dictionaries(
    st.sampled_from(["memory", "time", "cpus", "disk", "priority", "env", "on_failure",
                     "mounts", "deps", "rerun", "cloud_ram", "no_retry_over_walltime"]),
    text | st.sampled_from(["[]", "%5B%5D", "[{}]", "5M", "1", "-1"]),
    max_size=5,
))
def test_parse_query_defaults_only_raises_bad_request(query):
    with contextlib.suppress(BadRequest):
        parse_query_defaults(query)


@pytest.mark.parametrize(("query", "message"), [
    ({"priority": "300"}, "priority value (300) is not in the range 0..255"),
    ({"retries": "-1"}, "retries value (-1) is not in the range 0..255"),
    ({"override": "3"}, "override value (3) is not in the range 0..2"),
])
def test_a_query_default_out_of_range_fails_each_job_that_does_not_set_it(query, message):
    body = orjson.dumps([{"cmd": "true"}])
    with pytest.raises(BadRequest) as info:
        jobs_from_request(body, query, now=0.0)
    assert info.value.message == "there was a problem interpreting your job: " + message
    name = next(iter(query))
    ok = orjson.dumps([{"cmd": "true", name: 1}])  # a job that sets it is fine
    assert getattr(jobs_from_request(ok, query, now=0.0)[0][0], name) == 1


def test_jobs_of_a_request_share_their_rare_requests_until_one_changes() -> None:
    """wr add gives every job the default on_exit cleanup: a request's jobs that name no
    rare key hold one part for it (a million copies were 250 MB), and changing one job's
    rare field changes only that job."""
    body = orjson.dumps([{"cmd": "a"}, {"cmd": "b", "priority": 3}, {"cmd": "c"},
                         {"cmd": "d", "change_home": True}, {"cmd": "e", "group": "x"}])
    a, b, c, d, e = jobs_from_request(body, {"on_exit": '[{"cleanup":true}]'}, now=0)[0]
    assert a.rare is b.rare is c.rare
    assert [list(j.behaviours) for j in (a, d, e)] == [
        [{"when": "on_exit", "do": "cleanup", "arg": True}]] * 3
    assert (d.change_home, a.change_home, e.group, a.group) == (True, False, "x", "")
    a.group = "mine"
    assert (a.group, b.group, c.group) == ("mine", "", "")
    assert b.rare is c.rare is not a.rare


# -- issue 13: limits, cwd and times a job may give ------------------------------------------

@pytest.mark.parametrize("group", ["a:-1", "a:0", "a:9223372036854775807", "a", "a b",
                                   "ünï", "a.b-c_d"])
def test_limit_groups_in_range_are_taken(group):
    assert convert({"cmd": "echo", "limit_grps": [group]}).limit_grps == (group,)
    defaults, _ = parse_query_defaults({"limit_grps": group})
    assert defaults.limit_grps == [group]


def test_a_refused_limit_refuses_the_whole_request():
    """Nothing of a POST with one bad name:N comes back, so nothing of it is stored."""
    body = orjson.dumps([{"cmd": "echo ok", "limit_grps": ["a:2"]},
                         {"cmd": "echo bad", "limit_grps": ["a:99999999999999999999"]}])
    with pytest.raises(BadRequest, match="out of range"):
        jobs_from_request(body, {}, now=1.0)


@pytest.mark.parametrize("cwd", ["/", "/tmp", "/a/../b", "/x y"])
def test_absolute_cwds_are_taken(cwd):
    assert convert({"cmd": "echo", "cwd": cwd, "cwd_matters": True}).cwd == cwd


def test_zero_and_minus_zero_times_are_zero():
    for text in ("0s", "-0s", "0"):
        assert convert({"cmd": "echo", "time": text}).time == 0.0
        assert str(convert({"cmd": "echo", "no_retry_over_walltime": text})
                   .no_retry_over_walltime) == "0.0"
