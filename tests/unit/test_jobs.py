"""Units, keys and the job record (spec rest-and-queue.md §2.2.6, §3.4, §4.2)."""

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wr.errors import BadRequest
from wr.job_fields import FIELD_NAMES, HOT_FIELDS, RARE_FIELDS, V1_NAMES
from wr.jobs import (
    DEFAULT_RAM_MB,
    MEMORY_ERROR,
    FailReason,
    Job,
    State,
    behaviours_from_json,
    behaviours_to_text,
    check_limit,
    check_limit_group,
    check_limit_name,
    compute_key,
    default_req_grp,
    format_duration,
    mounts_key,
    parse_duration,
    parse_memory,
    split_limit_group,
)

# -- memory -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mb"),
    [
        ("5M", 5),
        ("3G", 3072),
        ("1.5G", 1536),
        ("50M", 50),
        ("500K", 0),
        ("5 m", 5),
        ("2g", 2048),
        ("1GiB", 1024),
        ("2GB", 2048),
        ("1T", 1024 * 1024),
        (" 10MB ", 10),
        ("1048576K", 1024),
    ],
)
def test_parse_memory(text, mb):
    assert parse_memory(text) == mb


@pytest.mark.parametrize("text", ["1000", "0M", "-1G", "abc", "1X", "", "M", "1.2.3G", "nanG"])
def test_parse_memory_rejects(text):
    with pytest.raises(ValueError) as err:
        parse_memory(text)
    assert str(err.value) == MEMORY_ERROR


def test_default_memory_is_one_gigabyte():
    """DESIGN.md: the default is the seed's 1G, i.e. what ``1G`` parses to."""
    assert DEFAULT_RAM_MB == parse_memory("1G") == 1024
    assert Job(key="k", cmd="true").ram == 1024


# -- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h", 3600.0),
        ("5s", 5.0),
        ("4m", 240.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("0", 0.0),
        ("-5s", -5.0),
        ("+5s", 5.0),
        ("1m30.5s", 90.5),
        (".5s", 0.5),
        ("2us", 2e-6),
        ("2µs", 2e-6),
        ("7ns", 7e-9),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", 'time: missing unit in duration "5"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("abc", 'time: invalid duration "abc"'),
        ("", 'time: invalid duration ""'),
        ("-", 'time: invalid duration "-"'),
        ("1h5", 'time: missing unit in duration "1h5"'),
        (".s", 'time: invalid duration ".s"'),
    ],
)
def test_parse_duration_errors_use_gos_texts(text, message):
    with pytest.raises(ValueError) as err:
        parse_duration(text)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (3600, "1h0m0s"),
        (5400, "1h30m0s"),
        (5.002, "5.002s"),
        (90.5, "1m30.5s"),
        (60, "1m0s"),
        (0.3, "300ms"),
        (1.5e-6, "1.5µs"),
        (5e-9, "5ns"),
        (-5, "-5s"),
        (2 * 86400, "48h0m0s"),
    ],
)
def test_format_duration_like_go(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_then_parse_is_identity(ns):
    seconds = ns / 1e9
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)


# -- keys ---------------------------------------------------------------------------------

MOUNTS = [
    {"Mount": "/tmp/wr_mnt", "Targets": [{"Profile": "default", "Path": "mybucket/subdir",
                                          "Write": True}]}
]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"cmd": "sleep 5 && echo mymsg && false"}, "58cef10e7a340c3b7fa09ea304a3cb98"),
        ({"cmd": "sleep 5"}, "ea4266bc0fc7dd493caeb2fff1963e4a"),
        ({"cmd": "echo 1 && true"}, "de6d167c58701e55f5b9f9e1e91d7807"),
        ({"cmd": "echo 2 && true"}, "f5c0d6240167a6e0b803e23f74e3a085"),
        ({"cmd": "echo 3 && false", "cwd": "/tmp", "cwd_matters": True},
         "db1e7d99becace3306c1c2470331c78e"),
        ({"cmd": "echo defaults", "mounts": MOUNTS}, "b17c665295e0a3fcf2e07c6d7ad6ddd4"),
    ],
)
def test_compute_key_matches_wr(kwargs, key):
    """The six verified vectors of spec §4.2."""
    cmd = kwargs.pop("cmd")
    assert compute_key(cmd, **kwargs) == key


def test_cwd_only_counts_when_it_matters():
    assert compute_key("sleep 5", cwd="/elsewhere") == compute_key("sleep 5")
    assert compute_key("sleep 5", cwd="/a", cwd_matters=True) != compute_key(
        "sleep 5", cwd="/b", cwd_matters=True)


def test_containers_change_the_key():
    plain = compute_key("echo hi")
    docker = compute_key("echo hi", with_docker="ubuntu", container_mounts="/x:/y")
    sing = compute_key("echo hi", with_singularity="ubuntu", container_mounts="/x:/y")
    assert len({plain, docker, sing}) == 3
    assert docker == compute_key("echo hi", with_docker="ubuntu", container_mounts="/x:/y",
                                 with_singularity="other")


def test_mounts_key_sorts_by_mount_and_defaults_names():
    mounts = [
        {"Mount": "/z", "Targets": [{"Path": "b"}]},
        {"Targets": [{"Profile": "p", "Path": "a"}, {"Path": "c"}]},
    ]
    assert mounts_key(mounts) == "mnt:p-a;default-c;/z:default-b;"
    assert mounts_key([]) == mounts_key(None) == ""


# -- the record ---------------------------------------------------------------------------


def test_record_round_trip():
    job = Job(
        key="k1", cmd="echo hi", cwd="/work", cwd_matters=True, rep_grp="r", req_grp="echo",
        ram=2048, time=120.0, cores=2.5, disk=3, disk_set=True, other={"cloud_os": "x"},
        override=1, priority=7, retries=2, limit_grps=["a", "b"], dep_grps=["g"],
        deps=["h"], cmd_deps=["k0"], behaviours=behaviours_from_json("on_exit", [{"remove": True}]),
        mounts=MOUNTS, env=["A=1"], state=State.BURIED, until_buried=0, attempts=3,
        exited=True, exitcode=1, fail_reason=str(FailReason.EXIT), pid=42, host="h",
        started=10.0, ended=20.5, peak_ram=300, recovered=True, delay=31.5, seq=9, added=1.0,
    )
    record = job.to_record()
    stored = orjson.loads(orjson.dumps(record))  # what the store keeps is plain JSON
    assert stored[0] == "j4" and "buried" in stored
    back = Job.from_record(stored)
    assert back.state is State.BURIED
    assert orjson.dumps(back.to_record()) == orjson.dumps(record)
    for name in FIELD_NAMES:
        assert getattr(back, name) == getattr(job, name) or (
            list(getattr(back, name)) == list(getattr(job, name))), name


def stores_as_itself(job: Job) -> bytes:
    """The job's record bytes, checked: `to_record` encoded, perhaps without trailing
    defaults, and read back as the same job."""
    stored = job.record_bytes()
    full = orjson.dumps(job.to_record())
    assert full.startswith(stored[:-1]) and stored.endswith(b"]")
    assert orjson.dumps(Job.from_record(orjson.loads(stored)).to_record()) == full
    return stored


def test_record_bytes_leave_out_the_parts_a_job_lacks() -> None:
    plain = Job(key="k", cmd="echo plain")
    rare = Job(key="k1", cmd="echo rare", env=["A=1"])
    ran = Job(key="k2", cmd="echo ran", started=1.5, exitcode=2)
    shared = [Job(key=f"s{i}", cmd=f"echo {i}", behaviours=behaviours_from_json(
        "on_exit", [{"cleanup": True}])) for i in range(2)]
    for job in shared:
        job.compact()  # the two now hold one shared part, encoded once
    assert shared[0].rare is shared[1].rare and shared[0].rare.shared
    lengths = [len(orjson.loads(stores_as_itself(job)))
               for job in (plain, rare, ran, *shared, *shared)]
    hot, everything = 1 + len(HOT_FIELDS), 1 + len(FIELD_NAMES)
    assert lengths == [hot, hot + len(RARE_FIELDS), everything] + [hot + len(RARE_FIELDS)] * 4
    shared[0].env = ["B=2"]  # copies the shared part: its encoding must not follow
    assert b"B=2" in stores_as_itself(shared[0])
    assert b"B=2" not in stores_as_itself(shared[1])


def test_records_from_an_older_layout_get_defaults_for_new_fields():
    job = Job(key="k", cmd="true", seq=4, actual_cwd="/x", reserved_by="r1")
    record = orjson.loads(orjson.dumps(job.to_record()))
    back = Job.from_record(record[:-2])  # as if the last two fields were added since
    assert (back.key, back.seq, back.actual_cwd, back.reserved_by) == ("k", 4, "", "")


def test_records_of_the_layout_before_bsub_ids_are_still_read():
    # j2 = j3 without the rare part's last field, bsub_id (issue 15): a record with its
    # results part, one with only its rare part, and one with neither.
    from wr.job_fields import J2_NAMES

    job = Job(key="k", cmd="true", env=["A=1"], delay=2.5, exitcode=3, host="h", seq=5)
    values = dict(zip(FIELD_NAMES, job.to_record()[1:], strict=True))
    full = ["j2", *(values[name] for name in J2_NAMES)]
    for record in (full, full[:1 + len(HOT_FIELDS) + len(RARE_FIELDS) - 1],
                   full[:1 + len(HOT_FIELDS)]):
        back = Job.from_record(orjson.loads(orjson.dumps(record)))
        assert (back.key, back.seq, back.bsub_id) == ("k", 5, 0)
        if len(record) > 1 + len(HOT_FIELDS):
            assert (list(back.env), back.delay) == (["A=1"], 2.5)
    back = Job.from_record(full)
    assert (back.exitcode, back.host, back.delay) == (3, "h", 2.5)


def test_records_of_the_first_layout_are_still_read():
    # [tag, field...] in the order the j1 layout had: key, cmd, cwd, cwd_matters,
    # change_home, rep_grp, ... (wr.job_fields.V1_NAMES), as a database from before holds.
    values = {"key": "k", "cmd": "sleep 1", "rep_grp": "r", "change_home": True,
              "state": "buried", "exitcode": 3, "peak_disk": 7, "seq": 11, "env": ["A=1"]}
    record = ["j1", *(values.get(name, getattr(Job("k", "c"), name)) for name in V1_NAMES)]
    back = Job.from_record(orjson.loads(orjson.dumps(record)))
    assert (back.key, back.cmd, back.rep_grp, back.change_home, back.state, back.exitcode,
            back.peak_disk, back.seq, list(back.env)) == (
        "k", "sleep 1", "r", True, State.BURIED, 3, 7, 11, ["A=1"])


def test_a_queued_job_keeps_no_parts_until_a_rare_field_or_a_result_is_set():
    job = Job(key="k", cmd="true", rep_grp="r", limit_grps=["a"])
    assert job._rare is None and job._ran is None
    job.exitcode = 0  # a default: still nothing kept
    job.started = None
    job.with_docker = ""
    assert job._rare is None and job._ran is None
    assert job.other == {} and job.env == () and job.started is None
    job.started = 0.0  # falsy, but not the default
    assert job._ran is not None and job.started == 0.0 and job.ended is None
    job.with_docker = "ubuntu"
    assert job._rare is not None and job.with_docker == "ubuntu" and job.mounts == ()


def test_the_shared_empty_other_refuses_changes():
    job = Job(key="k", cmd="true")
    with pytest.raises(TypeError, match="cannot be changed"):
        job.other["cloud_os"] = "x"
    job.other = {"cloud_os": "x"}
    assert job.other == {"cloud_os": "x"} and Job(key="j", cmd="true").other == {}


def test_garbage_is_not_a_record():
    with pytest.raises(ValueError, match="not a job record"):
        Job.from_record(["x1", "k"])


def test_from_record_ignores_unknown_fields():
    record = {"key": "k", "cmd": "true", "no_such_field": 1}
    assert Job.from_record(record).key == "k"


# -- limit groups and req groups ----------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "split"),
    [
        ("name", ("name", None)),
        ("name:3", ("name", 3)),
        ("name:0", ("name", 0)),
        ("name:-1", ("name", -1)),
        (":3", (":3", None)),
        ("name:x", ("name:x", None)),
        ("name:--1", ("name:--1", None)),
        ("time < 12:00:00", ("time < 12:00:00", None)),
        ("08:00:00 < time < 17:30:00", ("08:00:00 < time < 17:30:00", None)),
        ("datetime < 2030-01-01 12:00:00", ("datetime < 2030-01-01 12:00:00", None)),
    ],
)
def test_split_limit_group(entry, split):
    """Time windows (spec §4.13) contain colons but are not count limits."""
    assert split_limit_group(entry) == split


def test_effective_limit_groups_strip_counts_sort_and_dedupe():
    job = Job(key="k", cmd="true", limit_grps=["b:2", "a", "b", "time < 12:00:00"])
    assert job.effective_limit_groups() == ["a", "b", "time < 12:00:00"]


@pytest.mark.parametrize(
    ("cmd", "req_grp"),
    [
        ("/usr/bin/x y", "x"),
        ("echo hi", "echo"),
        ("sleep", "sleep"),
        ("./run.sh --fast", "run.sh"),
        ("", "."),
    ],
)
def test_default_req_grp(cmd, req_grp):
    assert default_req_grp(cmd) == req_grp


# -- behaviours ---------------------------------------------------------------------------


def test_behaviours_spec_example():
    """Spec §3.4: the tested Behaviours string, keys in wr's order whatever the input order."""
    behaviours = (
        behaviours_from_json("on_exit", [{"cleanup_all": True}])
        + behaviours_from_json("on_success", [{"cleanup": True}])
        + behaviours_from_json("on_failure", [{"run": "foo"}])
    )
    assert behaviours_to_text(behaviours) == (
        '{"on_failure":[{"run":"foo"}],"on_success":[{"cleanup":true}],'
        '"on_exit":[{"cleanup_all":true}]}'
    )


@pytest.mark.parametrize(
    ("item", "record"),
    [
        ({"run": "echo x"}, {"do": "run", "arg": "echo x"}),
        ({"Run": "echo x"}, {"do": "run", "arg": "echo x"}),
        ({"copy_to_manager": ["a", "b"]}, {"do": "copy_to_manager", "arg": ["a", "b"]}),
        ({"cleanup": True}, {"do": "cleanup", "arg": True}),
        ({"cleanup_all": True}, {"do": "cleanup_all", "arg": True}),
        ({"remove": True}, {"do": "remove", "arg": True}),
        ({"cleanup": False}, {"do": "nothing", "arg": True}),
        ({}, {"do": "nothing", "arg": True}),
        (None, {"do": "nothing", "arg": True}),
        ({"run": ""}, {"do": "nothing", "arg": True}),
    ],
)
def test_behaviours_from_json(item, record):
    assert behaviours_from_json("on_failure", [item]) == [{"when": "on_failure", **record}]


def test_behaviours_from_json_none_and_errors():
    assert behaviours_from_json("on_exit", None) == []
    assert behaviours_to_text([]) == ""
    with pytest.raises(BadRequest, match="on_exit must be an array"):
        behaviours_from_json("on_exit", {"run": "x"})
    with pytest.raises(BadRequest, match="a behaviour must be an object"):
        behaviours_from_json("on_exit", ["run"])


def test_behaviours_text_keeps_order_within_a_trigger():
    behaviours = behaviours_from_json("on_failure|success", [{"run": "a"}, {"remove": True}])
    text = behaviours_to_text(behaviours)
    assert orjson.loads(text) == {"on_failure|success": [{"run": "a"}, {"remove": True}]}


def test_units_are_finite():
    assert math.isfinite(parse_duration("2562047h"))
    with pytest.raises(ValueError):
        parse_duration("2562048h")  # past Go's int64 nanoseconds


def test_jobs_with_the_same_rare_requests_share_one_part_until_one_changes() -> None:
    cleanup = behaviours_from_json("on_exit", [{"cleanup": True}])
    a, b = (Job(key=k, cmd=f"echo {k}", behaviours=list(cleanup), env=["A=1"])
            for k in ("a", "b"))
    record_of_b = b.to_record()
    a.compact()
    b.compact()
    assert a._rare is b._rare and a._rare.shared
    a.kill_called = True  # a change to one job copies the part first
    assert a._rare is not b._rare
    assert (a.kill_called, b.kill_called) == (True, False)
    assert list(a.behaviours) == list(b.behaviours) == cleanup
    assert orjson.dumps(b.to_record()) == orjson.dumps(record_of_b)
    c = Job(key="c", cmd="echo c", behaviours=list(cleanup), env=["A=2"])
    c.compact()
    assert c._rare is not b._rare and list(c.env) == ["A=2"]


# -- limits (issue 13: one rule for a job's name:N and for PUT /rest/v1/limits/) ------------

@pytest.mark.parametrize(("entry", "split"), [
    ("a:-1", ("a", -1)), ("a:9223372036854775807", ("a", 2**63 - 1)),
])
def test_split_limit_group_takes_the_whole_range(entry, split):
    assert split_limit_group(entry) == split


@pytest.mark.parametrize("entry", ["a:-2", "a:-7", "a:9223372036854775808",
                                   "a:99999999999999999999"])
def test_split_limit_group_refuses_limits_that_could_not_be_stored(entry):
    with pytest.raises(ValueError, match=f"limit group '{entry}': limit .* is out of range: "
                       "a limit is an integer from -1 "):
        split_limit_group(entry)


@pytest.mark.parametrize(("name", "why"), [
    ("", "must not be empty"), ("a\x00b", "must not contain NUL"),
    ("a,b", "must not contain ','"), ("a:b", "must not contain ':'"),
])
def test_check_limit_name(name, why):
    with pytest.raises(ValueError, match=why):
        check_limit_name(name)


@pytest.mark.parametrize("entry", ["a", "a:3", "a:-1", "a:0", "with space", "ünï:2",
                                   "time < 12:00:00", "2099-01-01 00:00:00 < datetime"])
def test_check_limit_group_takes_names_and_settings(entry):
    assert check_limit_group(entry) == entry


@pytest.mark.parametrize(("entry", "why"), [
    ("a:-7", "out of range"), ("a:1.5", "is not a name, name:N"),
    ("time < 1", "looks like a time window but is not one of the accepted forms"),
    ("time < 25:00:00", "is not a valid time window"), (":3", "not a name"),
    ("a,b:3", r"must not contain ',' \(in limit group 'a,b:3'\)"), ("", "must not be empty"),
])
def test_check_limit_group_refuses(entry, why):
    with pytest.raises(ValueError, match=why):
        check_limit_group(entry)


def test_check_limit_says_the_range_and_quotes_the_value():
    assert check_limit(-1, "-1") == -1
    with pytest.raises(ValueError) as info:
        check_limit(-3, "-003")
    assert str(info.value) == ("limit -003 is out of range: a limit is an integer from -1 "
                               "(which removes the limit) to 9223372036854775807")
