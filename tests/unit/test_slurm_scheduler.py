"""The Slurm scheduler's pure parts: sbatch arguments, squeue and partition parsing, what
a runner job's end is called, and which partition a group goes to."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wr.runner import Runner
from wr.schedulers.base import GroupRequirements, ImpossibleError, RunnerCommand, runner_ref
from wr.schedulers.slurm import (
    batch_script,
    choose_partition,
    job_name,
    name_prefix,
    runner_cpus,
    runner_env,
    runner_mem,
    runner_minutes,
    sbatch_args,
)
from wr.schedulers.slurm_parse import (
    Partition,
    describe_end,
    exit_code_words,
    format_minutes,
    is_transient,
    job_fields,
    killed_for_memory,
    memory_seen_mb,
    parse_partitions,
    parse_slurm_time,
    parse_squeue,
    size_mb,
    slurm_words,
)

REQ = GroupRequirements(ram_mb=500, time_s=1800.0, cores=2, disk_gb=0)

SCONTROL = (
    "PartitionName=debug AllowGroups=ALL Default=YES MaxNodes=UNLIMITED MaxTime=UNLIMITED "
    "MaxCPUsPerNode=UNLIMITED Nodes=vm State=UP TotalCPUs=2 TotalNodes=1 "
    "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=4000M,node=1\n"
    "PartitionName=short Default=NO MaxTime=00:30:00 MaxCPUsPerNode=16 Nodes=n[1-4] "
    "State=UP MaxMemPerNode=64000\n"
    "PartitionName=old Default=NO MaxTime=1-00:00:00 Nodes=o1 State=INACTIVE "
    "MaxMemPerCPU=1000\n"
)
SINFO = "debug|1|2|4000\nshort|3|32|128000\nshort|1|8|16000\nold|1|4|8000\n"


def test_runner_resources_come_from_the_group() -> None:
    assert runner_cpus(REQ) == 2
    assert runner_cpus(GroupRequirements(100, 60.0, 0, 0)) == 1  # no zero-cpu Slurm jobs
    assert runner_cpus(GroupRequirements(100, 60.0, 1.5, 0)) == 2
    assert runner_mem(REQ) == 600  # the runner's own 100 MB on top
    assert runner_minutes(REQ) == 31  # the group's 30 min plus a minute
    assert runner_minutes(GroupRequirements(100, 3600.0, 1, 0)) == 61
    half_hour = Partition("short", max_time_s=1800.0)
    assert runner_minutes(REQ, half_hour) == 30  # all the partition allows
    assert runner_minutes(REQ, Partition("any")) == 31


def test_sbatch_arguments_for_one_runner() -> None:
    args = sbatch_args(name="wrp_x_y", group="600:30:2:0", req=REQ, minutes=31, count=1,
                       log_dir=Path("/m/slurm"))
    assert args == [
        "sbatch", "--parsable", "--job-name=wrp_x_y", "--nodes=1", "--ntasks=1",
        "--cpus-per-task=2", "--mem=600M", "--time=31", "--no-requeue", "--chdir=/m/slurm",
        "--comment=wr runner for scheduler group 600:30:2:0", "--output=/m/slurm/%j.log",
    ]


def test_sbatch_arguments_for_an_array_with_partition_account_and_options() -> None:
    args = sbatch_args(name="n", group="g\nx", req=REQ, minutes=31, count=5, log_dir=Path("/l"),
                       partition="short", account="lab", options=["--qos=long", "-x", "n3"])
    assert args[:7] == ["sbatch", "--parsable", "--qos=long", "-x", "n3",
                        "--partition=short", "--account=lab"]
    assert args[-2:] == ["--array=0-4", "--output=/l/%A_%a.log"]
    assert "--comment=wr runner for scheduler group g?x" in args


def test_batch_script_runs_the_runner_with_its_slurm_name_and_time() -> None:
    command = RunnerCommand(argv=["/venv/bin/python", "-m", "wr.runner", "--group",
                                  "1024:60:1:0~a b"], env={})
    script = batch_script(command, "1024:60:1:0~a b", 61)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[-1] == ("exec /venv/bin/python -m wr.runner --group '1024:60:1:0~a b' "
                         '--ref "slurm:${ref:-$SLURM_JOB_ID}" --max-time 3660')
    assert 'ref="${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"' in lines


def test_job_names_tell_managers_and_groups_apart() -> None:
    a = job_name("production", "/home/u/.wr_production", "1024:60:1:0")
    assert a.startswith(name_prefix("production", "/home/u/.wr_production"))
    assert a.startswith("wrp_") and len(a) == len("wrp_") + 8 + 1 + 12
    assert job_name("development", "/home/u/.wr_development", "1024:60:1:0").startswith("wrd_")
    assert a != job_name("production", "/home/v/.wr_production", "1024:60:1:0")
    assert a != job_name("production", "/home/u/.wr_production", "1024:60:2:0")
    assert a == job_name("production", "/home/u/.wr_production", "1024:60:1:0")


def test_parse_squeue() -> None:
    text = ("12|RUNNING|12|vm|None|wrp_a_b\n"
            "13_[2-3]|PENDING|13||Resources|x\n"
            "13_1|CANCELLED by 0|14|vm|None|name|with|bars\n"
            "garbage\n")
    jobs = parse_squeue(text)
    assert [(j.id, j.state, j.job_id, j.node, j.reason, j.name) for j in jobs] == [
        ("12", "RUNNING", "12", "vm", "None", "wrp_a_b"),
        ("13_[2-3]", "PENDING", "13", "", "Resources", "x"),
        ("13_1", "CANCELLED", "14", "vm", "None", "name|with|bars"),
    ]
    assert jobs[2].sort_key == (13, 1) and jobs[0].sort_key == (12, 0)


@pytest.mark.parametrize(("text", "seconds"), [
    ("UNLIMITED", None), ("infinite", None), ("30", 1800), ("30:15", 1815),
    ("1:00:00", 3600), ("2-12", 216000), ("1-00:00:00", 86400), ("1-2:30", 95400),
])
def test_parse_slurm_time(text: str, seconds: float | None) -> None:
    assert parse_slurm_time(text) == seconds


def test_format_minutes() -> None:
    assert format_minutes(31) == "0:31:00"
    assert format_minutes(90) == "1:30:00"
    assert format_minutes(2880 + 61) == "2-01:01:00"


def test_parse_partitions() -> None:
    parts = {p.name: p for p in parse_partitions(SCONTROL, SINFO)}
    assert parts["debug"] == Partition("debug", True, "UP", None, None, None, None,
                                       ((1, 2, 4000),))
    short = parts["short"]
    assert short.max_time_s == 1800 and short.max_cpus_per_node == 16
    assert short.max_mem_per_node == 64000 and short.nodes == ((3, 32, 128000), (1, 8, 16000))
    assert parts["old"].state == "INACTIVE" and parts["old"].max_mem_per_cpu == 1000


def test_capacity_counts_runners_that_fit_at_once() -> None:
    parts = {p.name: p for p in parse_partitions(SCONTROL, SINFO)}
    assert parts["debug"].capacity(1, 1124) == 2  # 2 cpus; 3 x 1124 MB would fit in memory
    assert parts["debug"].capacity(1, 3000) == 1
    assert parts["debug"].capacity(2, 600) == 1
    # short: 3 nodes capped at 16 cpus and 64000 MB, plus one of 8 cpus and 16000 MB
    assert parts["short"].capacity(4, 1000) == 3 * 4 + 2
    assert parts["old"].capacity(1, 2000) == 0  # over MaxMemPerCPU


def test_choosing_a_partition() -> None:
    parts = parse_partitions(SCONTROL, SINFO)
    small = GroupRequirements(1000, 1800.0, 1, 0)  # a 30-minute group fits "short"
    assert choose_partition(parts, small).name == "debug"  # the default one first
    wide = GroupRequirements(1000, 60.0, 8, 0)
    assert choose_partition(parts, wide).name == "short"
    assert choose_partition(parts, small, "short").name == "short"
    with pytest.raises(ImpossibleError, match=r"^Slurm partition 'nope' does not exist "
                                              r"\(partitions: debug, short, old\)$"):
        choose_partition(parts, small, "nope")
    long_wide = GroupRequirements(1000, 7200.0, 8, 0)
    with pytest.raises(ImpossibleError) as err:
        choose_partition(parts, long_wide)
    assert str(err.value) == (
        "no Slurm partition can run a runner needing 8 cpus, 1100 MB of memory and 2:00:00: "
        "partition debug offers at most 2 cpus and 4000 MB of memory on one node; "
        "partition short allows at most 0:30:00")
    with pytest.raises(ImpossibleError, match="Slurm cannot run a runner needing 1 cpu, "
                                              "200000 MB"):
        choose_partition(parts, GroupRequirements(199_900, 60.0, 1, 0), "debug")


def test_runner_env_drops_the_managers_own_slurm_job() -> None:
    env = runner_env({"PATH": "/bin", "SLURM_JOB_ID": "5", "SLURM_CONF": "/c",
                      "SBATCH_QOS": "q"}, {"WR_DEPLOYMENT": "production"})
    assert env == {"PATH": "/bin", "SLURM_CONF": "/c", "SBATCH_QOS": "q",
                   "WR_DEPLOYMENT": "production"}


OOM_LOG = (
    "slurmstepd-vm: error: StepId=2.batch exceeded memory limit (644460544 > 104857600), "
    "being killed\n"
    "slurmstepd-vm: error: Exceeded job memory limit\n"
    "slurmstepd-vm: error: *** JOB 2 ON vm CANCELLED AT 2026-11-28T17:49:05 ***\n"
    "slurmstepd-vm: error: Exceeded job memory limit\n"
)


def test_slurm_words_quotes_the_end_of_a_log() -> None:
    assert slurm_words(OOM_LOG) == (
        "StepId=2.batch exceeded memory limit (644460544 > 104857600), being killed; "
        "JOB 2 ON vm CANCELLED AT 2026-11-28T17:49:05; Exceeded job memory limit")
    assert slurm_words("") == ""
    assert len(slurm_words("x" * 2000)) == 500


@pytest.mark.parametrize(("state", "extra", "expected"), [
    ("FAILED", {"exit_code": "0, signal 9", "log_text": OOM_LOG},
     "Slurm job 7 ran out of memory: StepId=2.batch exceeded memory limit"),
    ("OUT_OF_MEMORY", {}, "Slurm job 7 ran out of memory"),
    ("TIMEOUT", {"log_text": "slurmstepd: error: *** JOB 7 ON vm CANCELLED AT 2026 DUE TO "
                             "TIME LIMIT ***\n"},
     "Slurm job 7 hit its time limit: JOB 7 ON vm CANCELLED AT 2026 DUE TO TIME LIMIT"),
    ("CANCELLED", {}, "Slurm job 7 was cancelled"),
    ("FAILED", {"exit_code": "1", "log_text": "ERROR: could not reach the manager\n"},
     "Slurm job 7 failed (exit code 1): ERROR: could not reach the manager"),
    ("NODE_FAIL", {"reason": "NodeDown"},
     "Slurm job 7 was lost with its node (NODE_FAIL) (reason: NodeDown)"),
    ("NODE_FAIL", {"node": "n2"}, "Slurm job 7 was lost with its node n2 (NODE_FAIL)"),
    ("PREEMPTED", {"reason": "None"}, "Slurm job 7 was preempted"),
    ("BOOT_FAIL", {}, "Slurm job 7 ended in state BOOT_FAIL"),
])
def test_describe_end(state: str, extra: dict, expected: str) -> None:
    assert describe_end("7", state, **extra).startswith(expected)


@pytest.mark.parametrize(("state", "log_text", "killed"), [
    ("FAILED", OOM_LOG, True),  # OverMemoryKill (no cgroups): FAILED, and the log says why
    ("OUT_OF_MEMORY", "", True),  # cgroups
    ("FAILED", "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=3.batch.", True),
    ("FAILED", "ERROR: could not reach the manager", False),
    ("NODE_FAIL", "", False),
    ("TIMEOUT", "*** JOB 7 ON vm CANCELLED AT 2026 DUE TO TIME LIMIT ***", False),
])
def test_which_ends_were_memory_kills(state: str, log_text: str, killed: bool) -> None:
    assert killed_for_memory(state, log_text) is killed


def test_memory_seen_is_read_from_slurmstepds_words_in_bytes_or_kb() -> None:
    # Slurm 22.05 prints bytes: 644460544 B is 615 MB, the limit 100 MB.
    assert memory_seen_mb(OOM_LOG, 100) == 615
    assert memory_seen_mb(OOM_LOG) == 615  # bytes when the allocation is not known
    # Older Slurm printed KB: the limit (the 200 MB allocation) tells which.
    old = "slurmstepd: error: Job 3 exceeded memory limit (452804 > 204800), being killed\n"
    assert memory_seen_mb(old, 200) == 443
    # The largest of several.
    both = ("StepId=4.batch exceeded memory limit (300000000 > 209715200), being killed\n"
            "StepId=4.batch exceeded memory limit (463671296 > 209715200), being killed\n")
    assert memory_seen_mb(both, 200) == 443
    assert memory_seen_mb("slurmstepd: error: Exceeded job memory limit", 200) == 0


@pytest.mark.parametrize(("text", "bare", "mb"), [
    ("600M", 1 << 20, 600), ("2G", 1 << 20, 2048), ("1.5G", 1 << 20, 1536),
    ("463671K", 1 << 20, 453), ("512", 1 << 20, 512), ("463671296", 1, 443),
    ("1T", 1 << 20, 1 << 20), ("", 1 << 20, 0), ("Unknown", 1 << 20, 0), ("0", 1, 0),
])
def test_size_mb(text: str, bare: int, mb: int) -> None:
    assert size_mb(text, bare) == mb


def test_scontrol_job_fields_and_exit_code() -> None:
    fields = job_fields("JobId=1 JobName=wrap JobState=FAILED Reason=JobLaunchFailure "
                        "ExitCode=0:9 MinMemoryNode=200M TRES=cpu=1,mem=200M,node=1")
    assert fields["MinMemoryNode"] == "200M"
    assert fields["TRES"] == "cpu=1,mem=200M,node=1"
    assert exit_code_words(fields) == "0, signal 9"
    assert exit_code_words({"ExitCode": "1:0"}) == "1"
    assert exit_code_words({}) == ""


@pytest.mark.parametrize(("error", "transient"), [
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller "
     "(connect failure)", True),
    ("sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying", True),
    ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
     True),
    ("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job "
     "submit limit, user's size and/or time limits)", True),
    ("sbatch: error: Batch job submission failed: Invalid feature specification", False),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition "
     "combination specified", False),
    ("sbatch: error: Batch job submission failed: Requested node configuration is not "
     "available", False),
])
def test_which_refusals_are_worth_retrying(error: str, transient: bool) -> None:
    assert is_transient(error) is transient


def test_runner_ref_comes_from_the_runner_id() -> None:
    assert runner_ref("0123abcd@slurm:12_3") == "slurm:12_3"
    assert runner_ref("0123abcd") == ""


def test_a_runner_takes_no_job_that_would_outlive_its_time_limit() -> None:
    """A runner in a 31-minute Slurm job: a 30-minute job fits at first, not 2 minutes on."""
    class Link:
        on_push = None

    async def scenario() -> None:
        runner = Runner(Link(), idle=1, touch=1, max_time=31 * 60)
        runner.born = asyncio.get_running_loop().time()
        assert runner.fits({"expected_time_s": 1800})
        runner.born -= 120
        assert not runner.fits({"expected_time_s": 1800})
        assert runner.fits({"expected_time_s": 60})
        assert Runner(Link(), idle=1, touch=1).fits({"expected_time_s": 1e9})

    asyncio.run(scenario())
