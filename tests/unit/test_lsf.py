"""The LSF emulation's parsers and formatters (wr.lsf), without a manager (issue 15)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wr.lsf import (
    FIELDS,
    BsubRequest,
    LsfError,
    add_emulation,
    bjobs_rows,
    build_request,
    inherited_properties,
    job_environment,
    job_object,
    parse_bjobs_args,
    parse_bkill_args,
    parse_dependency,
    parse_memory,
    parse_output_format,
    parse_resources,
    parse_run_limit,
    read_script,
    render_bjobs,
    split_command_line,
    submitted_message,
    with_output_files,
)

# -- bsub --------------------------------------------------------------------------------------


def request_of(*args: str, script: list[str] | None = None) -> BsubRequest:
    options, command = split_command_line(args)
    given_options, text, first = read_script(script or [])
    return build_request(given_options, options, command, text, first, cwd="/work")


def test_the_command_line_is_joined_with_spaces_as_lsf_does() -> None:
    request = request_of("-J", "j", "-n", "2", "echo a | tr a b", "x")
    assert (request.name, request.cores, request.cmd) == ("j", 2.0, "echo a | tr a b x")
    assert request_of("--", "-J").cmd == "-J"


def test_a_script_is_read_as_wr_does() -> None:
    script = ["#!/bin/bash\n", "  #BSUB -J name  \n", "#BSUB -n 3\n", "#BSUB -M 500\n",
              "# a comment\n", "\n", "  tool --flag x\n", "echo done\n"]
    options, text, first = read_script(script)
    assert options == ["-J", "name", "-n", "3", "-M", "500"]
    assert text == "#!/bin/bash\n# a comment\n\ntool --flag x\necho done\n"
    assert first == "tool"
    request = request_of(script=script)
    assert (request.name, request.cores, request.memory_mb, request.req_grp) == (
        "name", 3.0, 500, "tool")


def test_several_options_on_a_bsub_line_and_quotes_are_read() -> None:
    options, _, _ = read_script(['#BSUB -R "rusage[mem=4000] span[hosts=1]" -J "a b"\n',
                                 "true\n"])
    assert options == ["-R", "rusage[mem=4000] span[hosts=1]", "-J", "a b"]


def test_the_command_line_wins_over_the_script() -> None:
    script = ["#BSUB -J old\n", "#BSUB -M 100\n", "#BSUB -R rusage[mem=900]\n",
              "#BSUB -n 4\n", "run\n"]
    request = request_of("-J", "new", "-R", "rusage[mem=200]", script=script)
    assert (request.name, request.memory_mb, request.reserve_mb, request.cores) == (
        "new", 100, 200, 4.0)
    assert request.cmd == "run\n"


@pytest.mark.parametrize("script", [[], ["\n", "  \n"], ["#!/bin/bash\n", "#BSUB -J x\n"]])
def test_a_script_without_a_command_submits_nothing(script: list[str]) -> None:
    assert request_of(script=script).cmd == ""


@pytest.mark.parametrize(("args", "says"), [
    (["-P", "proj", "x"], "option -P is not supported"),
    (["-K", "x"], "option -K is not supported"),
    (["-J"], "option -J needs a value"),
    (["-J", "a[1-5]", "x"], "job arrays are not supported"),
    (["-n", "2,4", "x"], "a range such as 2,4 is not supported"),
    (["-n", "0", "x"], "must be more than 0"),
    (["-M", "4XB", "x"], "give memory in MB"),
    (["-W", "1h", "x"], "as [hours:]minutes"),
    (["-o", "log.%d", "x"], "only %J (the job id) and %I"),
    (["-w", "ended(a)", "x"], "'ended(a)' is not supported"),
    (["-w", "done(a) || done(b)", "x"], "is not supported"),
    (["-w", "done(a*)", "x"], "wildcards are not supported"),
    (["-R", "rusage[mem=1:duration=5]", "x"], "is not supported"),
    (["-R", "span[ptile=4]", "x"], "span[ptile=4] is not supported"),
    (["-R", "order[r15s]", "x"], "order[...] is not supported"),
    (["-R", "select[type==any]", "x"], "select[type==any] is not supported"),
])
def test_what_cannot_be_honoured_is_refused_by_name(args: list[str], says: str) -> None:
    with pytest.raises(LsfError) as caught:
        request_of(*args)
    assert says in str(caught.value)


def test_an_unsupported_option_on_a_bsub_line_names_the_line() -> None:
    with pytest.raises(LsfError) as caught:
        read_script(["true\n", "#BSUB -G grp\n"])
    assert str(caught.value).startswith("line 2 ('#BSUB -G grp'): option -G is not supported")
    with pytest.raises(LsfError, match="a #BSUB line holds options only"):
        read_script(["#BSUB -J x extra\n"])


@pytest.mark.parametrize(("value", "mb"), [
    ("4000", 4000), ("4GB", 4096), ("4G", 4096), ("0.5g", 512), ("500MB", 500),
    ("2048 KB", 2), ("1T", 1024 * 1024)])
def test_memory_is_mb_or_has_a_unit(value: str, mb: int) -> None:
    assert parse_memory(value, "-M") == mb


@pytest.mark.parametrize(("value", "mb"), [
    ("rusage[mem=4000]", 4000),
    ("select[mem>=4096] rusage[mem=4096]", 4096),
    ("select[mem>8000] rusage[mem=2000] span[hosts=1]", 8000),
    ("span[hosts=1]", None),
    ("  RUSAGE[ MEM=3GB ]", 3072),
])
def test_resource_strings_ask_for_the_most_memory_they_name(value: str, mb: int | None
                                                            ) -> None:
    assert parse_resources(value) == mb


def test_memory_is_the_largest_of_m_and_r_and_kept_as_given() -> None:
    obj = job_object(request_of("-M", "100", "-R", "rusage[mem=300]", "x"),
                     deployment="production", env_key="e" * 32)
    assert (obj["memory"], obj["override"]) == ("300M", 2)
    plain = job_object(request_of("x"), deployment="production", env_key="e" * 32)
    assert (plain["memory"], plain["override"], plain["time"], plain["cpus"]) == (
        "1000M", 0, "1h", 1.0)


@pytest.mark.parametrize(("value", "duration"), [("90", "90m"), ("1:30", "90m"),
                                                 ("0:05", "5m")])
def test_run_limits_are_hours_and_minutes(value: str, duration: str) -> None:
    assert parse_run_limit(value) == duration


@pytest.mark.parametrize(("value", "names", "ids"), [
    ("done(a)", ["a"], []),
    ("done( 'a b' ) && done(\"c\")", ["a b", "c"], []),
    ("12 && name && done(7)", ["name"], [12, 7]),
])
def test_dependencies_are_done_conditions(value: str, names: list[str], ids: list[int]
                                          ) -> None:
    assert parse_dependency(value) == (names, ids)


def test_a_job_object_carries_names_dependencies_and_inherited_options() -> None:
    request = request_of("-J", "b", "-w", "done(a) && done(a) && 4", "-q", "long", "run")
    inherited, mode = inherited_properties({
        "BsubMode": "development", "MountConfigs": [{"Targets": [{"Path": "b/p"}]}],
        "Requirements": {"Other": {"scheduler_queue": "q1", "cloud_os_ram": "2048",
                                   "cloud_shared": "true", "unknown": "x"}}})
    obj = job_object(request, deployment=mode, env_key="e" * 32,
                     inherited=inherited, dep_keys=["k" * 32])
    assert obj == {
        "cmd": "run", "cwd": "/work", "cwd_matters": True, "rep_grp": "b", "cpus": 1.0,
        "memory": "1000M", "time": "1h", "retries": 0, "override": 0,
        "bsub_mode": "development", "env_key": "e" * 32, "dep_grps": ["b"], "deps": ["a"],
        "cmd_deps": [{"Essence": {"JobKey": "k" * 32}}],
        "mounts": [{"Targets": [{"Path": "b/p"}]}], "queue": "q1", "cloud_ram": 2048,
        "cloud_shared": True}
    assert submitted_message(5, request.queue) == "Job <5> is submitted to queue <long>."
    assert submitted_message(5, "") == "Job <5> is submitted to default queue <wr>."


def test_the_environment_passed_on_leaves_out_what_belongs_to_the_submitting_job() -> None:
    env = {"PATH": "/bin", "TMPDIR": "/tmp/x", "WR_EXECUTION_ID": "k.1", "LSB_JOBID": "3",
           "LSB_JOBNAME": "p", "WR_BSUB_CONFIG": "{}", "BAD": "\udcff", "KEEP": "a=b"}
    assert job_environment(env) == ["PATH=/bin", "KEEP=a=b"]


def test_output_files_take_stdout_and_stderr_as_lsf_does() -> None:
    out_only = request_of("-o", "log %J.txt", "echo hi")
    assert out_only.cmd == "{ echo hi\n} >>'log '\"$LSB_JOBID\".txt 2>&1"
    both = request_of("-oo", "o", "-eo", "e", "echo hi")
    assert both.cmd == "{ echo hi\n} >o 2>e"
    err_only = request_of("-e", "e.%I", "echo hi")
    assert err_only.cmd == "{ echo hi\n} 2>>e.0"


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00%"),
               min_size=1))
def test_output_file_names_reach_the_shell_as_given(name: str) -> None:
    request = BsubRequest(cmd="true", out=name + "%J")
    redirect = with_output_files(request).split("} >>", 1)[1].removesuffix(" 2>&1")
    assert shlex.split(redirect) == [name + "$LSB_JOBID"]


# -- bjobs and bkill ----------------------------------------------------------------------------

JOBS = [{"JobID": 3, "State": "running", "Host": "node1", "Name": "first",
         "Submitted": 1_700_000_000.0},
        {"JobID": 12, "State": "dependent", "Host": "", "Name": "a-longer-name",
         "Submitted": 1_700_000_000.0},
        {"JobID": 13, "State": "lost", "Host": "node2", "Name": "x",
         "Submitted": 1_700_000_000.0}]


def test_bjobs_aligns_columns_as_wr_does() -> None:
    request = parse_bjobs_args([], "me")
    text = render_bjobs(bjobs_rows(JOBS, request, "mgr"), request)
    lines = text.splitlines()
    assert lines[0] == ("JOBID   USER   STAT    QUEUE   FROM_HOST   EXEC_HOST   "
                        "JOB_NAME        SUBMIT_TIME")
    assert lines[1].startswith("3       me     RUN     wr      mgr         node1       first")
    assert lines[2].split()[:2] + [lines[2].split()[2]] == ["12", "me", "PEND"]
    assert lines[3].split()[2] == "UNKWN"
    assert text.endswith("\n") and len(lines) == 4


def test_bjobs_output_format_and_no_header() -> None:
    request = parse_bjobs_args(["-w", "-o", "jobid STAT  submit_time delimiter=','",
                                "-noheader", "-q", "normal", "-u", "all"], "me")
    assert (request.fields, request.delimiter, request.queue) == (
        ("JOBID", "STAT", "SUBMIT_TIME"), ",", "normal")
    rows = bjobs_rows(JOBS[:1], request, "mgr")
    assert render_bjobs(rows, request) == f"3,RUN,{rows[0][2]}\n"
    assert render_bjobs([], parse_bjobs_args([], "me")) == ""


@pytest.mark.parametrize(("args", "says"), [
    (["-o", "jobid:7"], "unsupported field 'JOBID:7'"),
    (["-o", ""], "names no field"),
    (["-a"], "option -a is not supported"),
    (["-u", "someone"], "runs only your jobs"),
    (["-q"], "needs a value"),
])
def test_bjobs_refuses_what_it_cannot_do(args: list[str], says: str) -> None:
    with pytest.raises(LsfError) as caught:
        parse_bjobs_args(args, "me")
    assert says in str(caught.value)


def test_output_format_fields_are_wrs() -> None:
    assert parse_output_format(" ".join(FIELDS) + ' DELIMITER="|"') == (FIELDS, "|")


def test_bkill_takes_ids_only() -> None:
    assert parse_bkill_args(["3", "1", "3"]) == [3, 1]
    for args, says in (([], "job ID must be specified"), (["x"], "could not convert jobID"),
                       (["0"], "job 0 (all of your jobs)"), (["-s", "9", "3"], "option -s")):
        with pytest.raises(LsfError) as caught:
            parse_bkill_args(args)
        assert says in str(caught.value)


# -- the emulation in a job ------------------------------------------------------------------


def test_a_bsub_mode_job_finds_the_lsf_commands_first_on_its_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    env = {"PATH": "/usr/bin"}
    add_emulation(env, {"id": 7, "name": "nm", "config": '{"BsubMode":"production"}'},
                  "bash")
    folder, rest = env["PATH"].split(os.pathsep, 1)
    assert rest == "/usr/bin" and Path(folder).parent == tmp_path
    assert Path(folder).name.startswith(".wr_lsf_emulation")
    for name in ("bsub", "bjobs", "bkill"):
        link = Path(folder, name)
        assert link.is_symlink() and Path(os.readlink(link)).name == "wr"
    assert (env["LSB_JOBID"], env["LSB_JOBNAME"], env["LSF_BINDIR"], env["SHELL"]) == (
        "7", "nm", folder, "bash")
    assert env["WR_BSUB_CONFIG"] == '{"BsubMode":"production"}'
    assert env["LSF_SERVERDIR"] == env["LSF_LIBDIR"] == env["LSF_ENVDIR"] == "/dev/null"


def test_without_a_wr_command_the_emulation_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import wr.lsf

    monkeypatch.setattr(wr.lsf, "_FOLDER", [])
    monkeypatch.setattr(wr.lsf.sys, "executable", "/nowhere/python")
    monkeypatch.setenv("PATH", "/nowhere")
    with pytest.raises(OSError, match="could not get path to wr: no executable 'wr'"):
        add_emulation({}, {"id": 1}, "bash")


# -- ids, from the queue -------------------------------------------------------------------------

def test_the_queue_gives_ids_to_bsub_mode_jobs_only_and_never_twice() -> None:
    from wr.jobs import Job
    from wr.queue import Queue

    q = Queue()
    a, b, c = (Job(key=k, cmd=k, bsub_mode=mode)
               for k, mode in (("a", "production"), ("b", ""), ("c", "development")))
    q.add([a, b, c], 0.0)
    assert (a.bsub_id, b.bsub_id, c.bsub_id, q.bsub_ids) == (1, 0, 2, 2)
    again = Job(key="d", cmd="d", bsub_mode="production", bsub_id=1)  # a rerun keeps its id
    q.prepare(again)
    assert again.bsub_id == 1
    restarted = Queue()
    restarted.bsub_ids = 2  # what the manager reads back from the store
    restarted.restore([Job.from_record(a.to_record())], 1.0)
    (e,) = restarted.add([Job(key="e", cmd="e", bsub_mode="production")], 2.0)
    assert (restarted.jobs["a"].bsub_id, e.bsub_id) == (1, 3)


def test_bsub_mode_names_a_deployment() -> None:
    from wr.errors import BadRequest
    from wr.submission import JobDefaults, job_from_object

    assert job_from_object({"cmd": "x", "bsub_mode": "development"},
                           JobDefaults()).bsub_mode == "development"
    for value, says in ((True, "bsub_mode must be a string: the deployment"),
                        ("yes", "bsub_mode must be the deployment (production or "
                                "development) whose manager 'bsub' inside the job adds its "
                                "jobs to, not 'yes'")):
        with pytest.raises(BadRequest) as caught:
            job_from_object({"cmd": "x", "bsub_mode": value}, JobDefaults())
        assert says in caught.value.message


def test_a_modified_bsub_mode_job_keeps_its_mode_and_id() -> None:
    from wr.modification import modified
    from wr.submission import JobDefaults, job_from_object

    job = job_from_object({"cmd": "x", "bsub_mode": "production"}, JobDefaults())
    job.bsub_id = 4
    new = modified(job, {"cmd": "y", "memory": "2G"}, 0.0)
    assert (new.cmd, new.bsub_mode, new.bsub_id) == ("y", "production", 4)
