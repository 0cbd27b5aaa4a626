"""LSF emulation on a real manager with real runners (issue 15, spec §5): a job added with
``wr add --bsub`` calls ``bsub``, ``bjobs`` and ``bkill`` (links to wr on its PATH), and the
jobs it submits run as wr jobs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ManagerHandle, wait_for
from wr.client import ClientError

pytestmark = pytest.mark.integration

SUBMITTED = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <(\w+)>\.")


def _add_bsub_job(m: ManagerHandle, cmd: str, rep_grp: str, cwd: Path) -> None:
    m.wr("add", "--bsub", "-i", rep_grp, "--cwd", str(cwd), "--cwd_matters", "-r", "0",
         "--cpus", "0", input=cmd + "\n", check=True)


def _finished(c, rep_grp: str) -> list[dict]:
    jobs = c.status(rep_grp)
    return jobs if jobs and all(j["State"] in ("complete", "buried") for j in jobs) else []


def _done(c, rep_grp: str, m: ManagerHandle) -> dict:
    (job,) = wait_for(lambda: _finished(c, rep_grp), timeout=90, what=f"{rep_grp} to finish")
    if job["State"] != "complete":
        raise AssertionError(f"{rep_grp} {job['State']}: {c.status(rep_grp, std='true')}\n"
                             f"{m.log()}")
    return job


def test_a_script_piped_into_bsub_adds_a_job_that_bjobs_lists_and_that_runs(
        manager: ManagerHandle, tag: str, tmp_path: Path) -> None:
    """Steps: `wr add --bsub` a command that pipes a script with #BSUB lines into bsub and
    then runs bjobs.
    Expected: bsub prints wr's prompts and the new job's id; bjobs lists the child (and the
    parent, which has an id too); the child runs the script in the parent's directory
    with the #BSUB name, memory (kept as given) and cores."""
    child = f"{tag}-child"
    script = f"#!/bin/bash\\n#BSUB -J {child}\\n#BSUB -M 100\\n#BSUB -n 1\\n" \
             f"sleep 1; echo from-child > child.out\\n"
    cmd = (f"printf '{script}' | bsub > submit.txt && "
           f"bjobs -noheader -o 'JOBID STAT JOB_NAME delimiter=\",\"' > bjobs.txt")
    _add_bsub_job(manager, cmd, tag, tmp_path)
    with manager.client() as c:
        _done(c, tag, manager)
        submitted = (tmp_path / "submit.txt").read_text()
        found = SUBMITTED.search(submitted)
        assert submitted.startswith("bsub> bsub> ") and found, submitted
        assert found.group(2) == "wr"
        child_id = int(found.group(1))
        listed = dict(line.split(",", 1)[::-1] for line in
                      (tmp_path / "bjobs.txt").read_text().splitlines())
        assert str(child_id) in (listed.get(f"PEND,{child}"), listed.get(f"RUN,{child}")), \
            listed
        assert f"RUN,{tag}" in listed  # the --bsub parent, running bjobs
        job = _done(c, child, manager)
        details = c.details(child)[0]
    assert (tmp_path / "child.out").read_text() == "from-child\n"
    assert job["CwdBase"] == str(tmp_path) and job["ExpectedRAM"] == 100
    assert job["Cores"] == 1 and details["ReqGroup"] == "sleep"
    assert job["Cmd"] == "#!/bin/bash\nsleep 1; echo from-child > child.out\n"


def test_bsub_flags_write_output_files_and_wait_for_dependencies(
        manager: ManagerHandle, tag: str, tmp_path: Path) -> None:
    """Steps: inside a --bsub job, bsub a first job with -o/-e files (its id in one's name)
    and -R memory, then a second that waits for it with -w "done(name)" and reads its
    output file, then a third that waits for the first by id.
    Expected: the files hold what LSF would put there, the second ran after the first
    (it read the file), and each job asked for what the flags said."""
    first, second, third = f"{tag}-1", f"{tag}-2", f"{tag}-3"
    cmd = (f"bsub -J {first} -o first.%J.out -e first.err -R 'select[mem>=300] "
           f"rusage[mem=300] span[hosts=1]' -W 0:10 -q normal 'echo out1; echo err1 >&2; "
           f"sleep 2' > ids.txt && "
           f"bsub -J {second} -oo second.out -w 'done({first})' 'cat first.*.out' >> ids.txt"
           f" && bsub -J {third} -w \"$(sed -n 's/Job <\\([0-9]*\\)>.*/done(\\1)/p' ids.txt"
           f" | head -1)\" -o third.out 'echo third' >> ids.txt")
    _add_bsub_job(manager, cmd, tag, tmp_path)
    with manager.client() as c:
        _done(c, tag, manager)
        lines = (tmp_path / "ids.txt").read_text().splitlines()
        assert [SUBMITTED.fullmatch(line).group(2) for line in lines] == [
            "normal", "wr", "wr"], lines
        ids = [int(SUBMITTED.fullmatch(line).group(1)) for line in lines]
        waiting = {j["RepGroup"]: j for j in c.status(f"{tag}-", search="true")
                   if j["State"] == "dependent"}
        jobs = {name: _done(c, name, manager) for name in (first, second, third)}
    assert (tmp_path / f"first.{ids[0]}.out").read_text() == "out1\n"
    assert (tmp_path / "first.err").read_text() == "err1\n"
    assert (tmp_path / "second.out").read_text() == "out1\n"
    assert (tmp_path / "third.out").read_text() == "third\n"
    assert jobs[first]["ExpectedRAM"] == 300 and jobs[first]["ExpectedTime"] == 600
    assert jobs[second]["Ended"] >= jobs[first]["Ended"]
    assert jobs[third]["Ended"] >= jobs[first]["Ended"]
    if waiting:  # seen while the first ran: the others waited for it
        assert set(waiting) <= {second, third}


def test_bkill_kills_a_running_job_and_removes_it(manager: ManagerHandle, tag: str,
                                                  tmp_path: Path) -> None:
    """Steps: a --bsub job submits `sleep 300`; once it runs, `wr lsf bkill` its id, an id
    that finished and one never given.
    Expected: the running job is killed and leaves the queue ("is being terminated"); the
    others get LSF's answers."""
    long = f"{tag}-long"
    _add_bsub_job(manager, f"bsub -J {long} 'sleep 300' > submit.txt", tag, tmp_path)
    with manager.client() as c:
        _done(c, tag, manager)  # the parent, job 1
        job_id = int(SUBMITTED.search((tmp_path / "submit.txt").read_text()).group(1))
        wait_for(lambda: c.status(long)[0]["State"] == "running", what="the job to run")
        listed = manager.wr("lsf", "bjobs", str(job_id), check=True).stdout.splitlines()
        assert listed[0].split() == ["JOBID", "USER", "STAT", "QUEUE", "FROM_HOST",
                                     "EXEC_HOST", "JOB_NAME", "SUBMIT_TIME"]
        assert listed[1].split()[:3] == [str(job_id), listed[1].split()[1], "RUN"]
        assert len(listed) == 2
        killed = manager.wr("lsf", "bkill", str(job_id), "1", "999", check=True)
        assert killed.stdout.splitlines() == [
            f"Job <{job_id}> is being terminated",
            "Job <1>: Job has already finished",
            "Job <999>: No matching job found"]
        assert c.status(long, state="buried") == [] and not [
            j for j in c.status(long) if j["State"] != "complete"]
        none = manager.wr("lsf", "bjobs", check=True)
        assert none.stdout == "" and "No unfinished job found" in none.stderr


def test_refusals_name_what_is_not_supported(manager: ManagerHandle, tag: str) -> None:
    bad = manager.wr("lsf", "bsub", "-P", "project", "echo x")
    assert bad.returncode == 255
    assert "bsub: option -P is not supported by wr's LSF emulation" in bad.stderr
    bad = manager.wr("lsf", "bsub", "-w", "ended(x)", "echo x")
    assert bad.returncode == 255 and "'ended(x)' is not supported" in bad.stderr
    bad = manager.wr("lsf", "bjobs", "-o", "jobid:7")
    assert bad.returncode == 255 and "unsupported field 'JOBID:7'" in bad.stderr
    bad = manager.wr("lsf", "bkill", "0")
    assert bad.returncode == 255 and "job 0 (all of your jobs) is not supported" in bad.stderr
    empty = manager.wr("lsf", "bsub", input="\n#!/bin/bash\n#BSUB -J x\n\n")
    assert (empty.returncode, empty.stdout) == (
        255, "bsub> " * 5 + "No command is specified. Job not submitted.\n")
    with manager.client() as c:
        with pytest.raises(ClientError) as caught:
            c.add([{"cmd": "echo x", "bsub_mode": True}], rep_grp=tag)
        assert caught.value.status == 400 and "bsub_mode must be a string" in \
            caught.value.message


def test_job_ids_are_never_given_twice_across_restarts(manager: ManagerHandle,
                                                       tag: str) -> None:
    """Steps: add a bsub-mode job (REST bsub_mode) and let it finish; restart the manager;
    add another.
    Expected: the second gets the next id, not the first's again (wr's counter restarts)."""
    with manager.client() as c:
        c.add([{"cmd": "true", "bsub_mode": "production", "retries": 0}], rep_grp=tag)
        first = c.lsf_jobs()
        assert [j["JobID"] for j in first["Jobs"]] == [first["LastID"]]
        _done(c, tag, manager)
        assert c.lsf_jobs()["Jobs"] == []
    manager.stop()
    manager.start()
    with manager.client() as c:
        c.add([{"cmd": "false", "bsub_mode": "production"}], rep_grp=f"{tag}-2")
        second = c.lsf_jobs()
    assert [j["JobID"] for j in second["Jobs"]] == [first["LastID"] + 1]


def test_a_submitted_job_runs_with_bsubs_environment_not_shown_as_overrides(
        manager: ManagerHandle, tag: str, tmp_path: Path) -> None:
    """Steps: inside a --bsub job, export a variable and bsub a job that prints it.
    Expected: the submitted job sees the variable (bsub's environment, as LSF passes it);
    its `Env` (the overrides) is empty: the environment is stored once on the manager,
    never shown in status objects (issue 15, part 1)."""
    child = f"{tag}-child"
    cmd = (f"export WR_BSUB_TEST_VAR=from-parent; "
           f"bsub -J {child} 'echo \"$WR_BSUB_TEST_VAR\" > child.out'")
    _add_bsub_job(manager, cmd, tag, tmp_path)
    with manager.client() as c:
        _done(c, tag, manager)
        _done(c, child, manager)
        shown = c.status(child, env="true")[0]
    assert (tmp_path / "child.out").read_text() == "from-parent\n"
    assert not shown.get("Env"), shown.get("Env")
