"""How the queue treats jobs added over REST: priority, retries, dependencies, limits,
behaviours, working directories, duplicates, reruns and learned memory.

One manager serves the module, started with ``--max_cores 1`` so that jobs asking for a core
run strictly one at a time (jobs asking for none may run two at a time). Every test names its
commands, rep groups and dependency groups after itself, and waits for its jobs to finish, so
tests neither see nor disturb each other's jobs. Jobs record what they did in files under the
test's ``tmp_path``, which is finer-grained than the whole seconds of ``Started``/``Ended``.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ManagerHandle, running_manager, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """One single-core manager for the module, in its own HOME, with fast timings."""
    with running_manager(tmp_path_factory.mktemp("home"), "--max_cores", "1") as handle:
        yield handle


@pytest.fixture(scope="module")
def api(mgr: ManagerHandle) -> Iterator[httpx.Client]:
    with mgr.http() as c:
        yield c



def add(api: httpx.Client, jobs: list[dict[str, Any]], **params: str) -> list[dict[str, Any]]:
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(jobs), params=params)
    assert r.status_code == 201, r.text
    return r.json()


def get(api: httpx.Client, ids: str = "", **params: str) -> list[dict[str, Any]]:
    r = api.get(f"/rest/v1/jobs/{ids}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def one(api: httpx.Client, key: str) -> dict[str, Any]:
    found = get(api, key)
    assert len(found) == 1, found
    return found[0]


def wait_state(api: httpx.Client, key: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the job with ``key`` until its State is one of ``states``; return it."""
    def reached() -> dict[str, Any] | None:
        found = get(api, key)
        return found[0] if found and found[0]["State"] in states else None

    return wait_for(reached, timeout, what=f"job {key} to become {'|'.join(states)}")


def q(path: Path) -> str:
    return shlex.quote(str(path))


# -- ordering -------------------------------------------------------------------------------

def test_priority_order(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    """Higher priority first among jobs waiting for the only core.

    1. A one-core blocker starts running.
    2. Four one-core jobs with priorities 1, 5, 3, 10 are added while it runs.
    3. They run one by one in the order 10, 5, 3, 1 (file log and Started times agree).
    """
    log = tmp_path / "order"
    blocker = add(api, [{"cmd": f"sleep 1 # {tag}", "cpus": 1}], rep_grp=tag)[0]["Key"]
    wait_state(api, blocker, "running")
    jobs = add(api, [{"cmd": f"echo {p} >> {q(log)} # {tag}", "cpus": 1, "priority": p}
                     for p in (1, 5, 3, 10)], rep_grp=tag)
    assert [j["State"] for j in jobs] == ["ready"] * 4
    for job in jobs:
        wait_state(api, job["Key"], "complete")
    assert log.read_text().split() == ["10", "5", "3", "1"]
    done = {j["Cmd"].split()[1]: j for j in get(api, tag)}
    started = [done[p]["Started"] for p in ("10", "5", "3", "1")]
    assert started == sorted(started)
    assert started[0] >= one(api, blocker)["Ended"]


# -- retries --------------------------------------------------------------------------------

def test_retries_then_buried(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    """retries=2: three attempts in all, then buried with the exit code and reason."""
    runs = tmp_path / "runs"
    key = add(api, [{"cmd": f"echo x >> {q(runs)}; exit 1 # {tag}", "retries": 2}],
              rep_grp=tag)[0]["Key"]
    buried = wait_state(api, key, "buried", timeout=30)
    assert buried["Attempts"] == 3
    assert (buried["Exited"], buried["Exitcode"]) == (True, 1)
    assert buried["FailReason"] == "command exited non-zero"
    assert runs.read_text().split() == ["x", "x", "x"]


def test_no_retries_after_success(api: httpx.Client, tag: str) -> None:
    key = add(api, [{"cmd": f"true # {tag}", "retries": 5}], rep_grp=tag)[0]["Key"]
    done = wait_state(api, key, "complete")
    assert done["Attempts"] == 1


# -- dependencies ---------------------------------------------------------------------------

def test_dependent_waits_for_its_dep_group(api: httpx.Client, tag: str) -> None:
    """B (deps g) stays dependent while A (dep_grps g) runs, and starts after A ends."""
    a, b = (j["Key"] for j in add(api, [
        {"cmd": f"sleep 1 # A {tag}", "dep_grps": [f"{tag}-g"]},
        {"cmd": f"echo B {tag}", "deps": [f"{tag}-g"]},
    ], rep_grp=tag))
    assert one(api, b)["State"] == "dependent"
    wait_state(api, a, "running")
    assert one(api, b)["State"] == "dependent"
    done_a = wait_state(api, a, "complete")
    done_b = wait_state(api, b, "complete")
    assert done_b["Dependencies"] == [f"{tag}-g"]
    assert done_a["DepGroups"] == [f"{tag}-g"]
    assert done_b["Started"] >= done_a["Ended"]


def test_deps_on_unknown_group_are_ready(api: httpx.Client, tag: str) -> None:
    key = add(api, [{"cmd": f"true # {tag}", "deps": [f"{tag}-x", f"{tag}-y"]}],
              rep_grp=tag)[0]["Key"]
    assert wait_state(api, key, "ready", "running", "complete")["State"] in (
        "ready", "running", "complete")
    wait_state(api, key, "complete")


def test_live_dependency(api: httpx.Client, tag: str) -> None:
    """A job added to a dep group later also holds back the group's dependants.

    1. A1 (dep_grps g, sleep 2) and B (deps g): B is dependent.
    2. While A1 runs, A2 (dep_grps g, sleep 3) is added.
    3. A1 completes; B is still dependent (A2 is in g and not done).
    4. B runs only after A2 ends.
    """
    group = f"{tag}-g"
    a1, b = (j["Key"] for j in add(api, [
        {"cmd": f"sleep 2 # A1 {tag}", "dep_grps": [group]},
        {"cmd": f"echo B {tag}", "deps": [group]},
    ], rep_grp=tag))
    assert one(api, b)["State"] == "dependent"
    wait_state(api, a1, "running")
    a2 = add(api, [{"cmd": f"sleep 3 # A2 {tag}", "dep_grps": [group]}],
             rep_grp=tag)[0]["Key"]
    wait_state(api, a1, "complete")
    assert one(api, a2)["State"] in ("ready", "running")
    assert one(api, b)["State"] == "dependent"
    done_a2 = wait_state(api, a2, "complete")
    done_b = wait_state(api, b, "complete")
    assert done_b["Started"] >= done_a2["Ended"]
    assert done_b["Attempts"] == 1


# -- limit groups ---------------------------------------------------------------------------

def test_limit_group_of_one_never_overlaps(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    """Three `sleep 1` jobs in limit group ``<tag>:1`` run one after another.

    Without the limit two of them could run at once (jobs with no cores are allowed two per
    core), so overlapping intervals would show.
    """
    jobs = add(api, [
        {"cmd": f"date +%s.%N > {q(tmp_path / f'{i}.start')} && sleep 1 && "
                f"date +%s.%N > {q(tmp_path / f'{i}.end')} # {tag}",
         "limit_grps": [f"{tag}:1"]}
        for i in range(3)
    ], rep_grp=tag)
    assert {tuple(j["LimitGroups"]) for j in jobs} == {(tag,)}
    done = [wait_state(api, j["Key"], "complete") for j in jobs]
    spans = sorted((float((tmp_path / f"{i}.start").read_text()),
                    float((tmp_path / f"{i}.end").read_text())) for i in range(3))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"jobs of a limit group of 1 overlapped: {spans}"
    by_start = sorted(done, key=lambda j: j["Started"])
    for before, after in zip(by_start, by_start[1:], strict=False):
        assert after["Started"] >= before["Ended"]


# -- behaviours -----------------------------------------------------------------------------

def test_on_failure_run(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    failed_marker, success_marker = tmp_path / "failed", tmp_path / "succeeded"
    fails, works = (j["Key"] for j in add(api, [
        {"cmd": f"exit 2 # {tag}", "on_failure": [{"run": f"touch {q(failed_marker)}"}],
         "on_success": [{"run": f"touch {q(success_marker)}"}]},
        {"cmd": f"true # {tag}", "on_failure": [{"run": f"touch {q(tmp_path / 'no')}"}]},
    ], rep_grp=tag))
    buried = wait_state(api, fails, "buried")
    assert buried["Behaviours"] == (
        f'{{"on_failure":[{{"run":"touch {failed_marker}"}}],'
        f'"on_success":[{{"run":"touch {success_marker}"}}]}}')
    wait_for(failed_marker.exists, 10, what="the on_failure command to run")
    wait_state(api, works, "complete")
    assert not success_marker.exists()
    assert not (tmp_path / "no").exists()
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


def test_on_success_cleanup(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    """cleanup removes the job's unique working dir and its emptied parents below cwd; a
    job without it keeps its dir."""
    clean_base, keep_base = tmp_path / "clean", tmp_path / "keep"
    clean, keep = (j["Key"] for j in add(api, [
        {"cmd": f"echo a > out.txt # clean {tag}", "on_success": [{"cleanup": True}],
         "cwd": str(clean_base)},
        {"cmd": f"echo b > out.txt # keep {tag}", "cwd": str(keep_base)},
    ], rep_grp=tag))
    cleaned = wait_state(api, clean, "complete")
    kept = wait_state(api, keep, "complete")
    for job, base in ((cleaned, clean_base), (kept, keep_base)):
        assert job["CwdBase"] == str(base)
        key = job["Key"]
        assert re.fullmatch(rf"/wr_cwd/{key[0]}/{key[1]}/{key[2]}/{key[3:]}\d+/cwd",
                            job["Cwd"]), job["Cwd"]
    assert (keep_base / kept["Cwd"][1:] / "out.txt").read_text() == "b\n"
    assert not (clean_base / cleaned["Cwd"][1:]).exists()
    assert clean_base.is_dir()
    assert list(clean_base.iterdir()) == []


def test_on_failure_remove(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    """A failed job with a remove behaviour is deleted from the queue once buried."""
    ran = tmp_path / "ran"
    key = add(api, [{"cmd": f"exit 1 # {tag}",
                     "on_failure": [{"run": f"touch {q(ran)}"}, {"remove": True}]}],
              rep_grp=tag)[0]["Key"]
    wait_for(ran.exists, 20, what="the job to run and fail")
    wait_for(lambda: get(api, tag) == [], 20, what="the buried job to be removed")
    assert get(api, key) == []
    assert key not in {j["Key"] for j in get(api)}


# -- working directory and environment ------------------------------------------------------

def test_cwd_matters(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    """cwd_matters runs the command in cwd itself; without it, in a unique dir below it."""
    here = tmp_path / "here"
    out_matters, out_unique = tmp_path / "pwd-matters", tmp_path / "pwd-unique"
    matters, unique = (j["Key"] for j in add(api, [
        {"cmd": f"pwd > {q(out_matters)} # {tag}", "cwd": str(here), "cwd_matters": True},
        {"cmd": f"pwd > {q(out_unique)} # {tag}", "cwd": str(here)},
    ], rep_grp=tag))
    done_matters = wait_state(api, matters, "complete")
    done_unique = wait_state(api, unique, "complete")
    assert os.path.realpath(out_matters.read_text().strip()) == os.path.realpath(here)
    assert (done_matters["Cwd"], done_matters["CwdBase"]) == ("", str(here))
    assert out_unique.read_text().strip() == str(here) + done_unique["Cwd"]
    assert "/wr_cwd/" in done_unique["Cwd"]


def test_change_home(api: httpx.Client, mgr: ManagerHandle, tag: str, tmp_path: Path) -> None:
    changed_out, plain_out = tmp_path / "home-changed", tmp_path / "home-plain"
    changed, plain = (j["Key"] for j in add(api, [
        {"cmd": f"echo $HOME > {q(changed_out)} # {tag}", "change_home": True},
        {"cmd": f"echo $HOME > {q(plain_out)} # {tag}"},
    ], rep_grp=tag, cwd=str(tmp_path / "base")))
    done = wait_state(api, changed, "complete")
    wait_state(api, plain, "complete")
    assert done["HomeChanged"] is True
    assert changed_out.read_text().strip() == str(tmp_path / "base") + done["Cwd"]
    assert plain_out.read_text().strip() == str(mgr.home)


def test_env_overrides_reach_the_command(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    out = tmp_path / "env"
    key = add(api, [{"cmd": f'echo "$A-$B-$C" > {q(out)} # {tag}', "env": ["C=3"]},
                    ], rep_grp=tag, env="A=1,B=2")[0]["Key"]
    wait_state(api, key, "complete")
    # A job's own env list replaces the query's (§2.2.3: a non-empty JSON list wins).
    assert out.read_text().strip() == "--3"


# -- duplicates and reruns ------------------------------------------------------------------

def test_duplicate_post_returns_the_existing_job(api: httpx.Client, tag: str,
                                                 tmp_path: Path) -> None:
    """The same command twice: one job, one run; a completed one is not added again.

    1. POST it in rep group <tag>-1 -> ready.
    2. POST it again in <tag>-2 (other memory) -> 201 with the existing job: same key, rep
       group <tag>-1, its memory, its current state.
    3. It runs once. POSTing it again once complete -> 201 [] (no rerun).
    """
    runs = tmp_path / "runs"
    cmd = f"echo run >> {q(runs)} && sleep 1 # {tag}"
    first = add(api, [{"cmd": cmd}], rep_grp=f"{tag}-1")[0]
    second = add(api, [{"cmd": cmd, "memory": "2G"}], rep_grp=f"{tag}-2")
    assert len(second) == 1
    assert second[0]["Key"] == first["Key"]
    assert second[0]["RepGroup"] == f"{tag}-1"
    # Its memory is the first POST's (2G is not taken), whatever the req_grp "echo" learned.
    assert second[0]["ExpectedRAM"] == first["ExpectedRAM"]
    assert second[0]["State"] in ("ready", "reserved", "running")
    twice = add(api, [{"cmd": cmd}, {"cmd": cmd}], rep_grp=f"{tag}-3")
    assert [j["Key"] for j in twice] == [first["Key"]] * 2
    done = wait_state(api, first["Key"], "complete")
    assert done["Attempts"] == 1
    assert add(api, [{"cmd": cmd}], rep_grp=f"{tag}-4") == []
    assert runs.read_text().split() == ["run"]
    assert [j["Key"] for j in get(api, f"{tag}-1")] == [first["Key"]]


def test_rerun_requeues_a_completed_job(api: httpx.Client, tag: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = f"echo run >> {q(runs)} # {tag}"
    key = add(api, [{"cmd": cmd}], rep_grp=tag)[0]["Key"]
    assert wait_state(api, key, "complete")["Attempts"] == 1
    again = add(api, [{"cmd": cmd}], rep_grp=tag, rerun="true")
    assert [(j["Key"], j["Attempts"]) for j in again] == [(key, 0)]
    assert again[0]["State"] in ("ready", "reserved", "running")
    wait_for(lambda: runs.exists() and len(runs.read_text().split()) == 2, 30,
             what="the job to run a second time")
    done = wait_state(api, key, "complete")
    assert done["Attempts"] == 1
    assert runs.read_text().split() == ["run", "run"]


# -- learning -------------------------------------------------------------------------------

def test_learned_memory(api: httpx.Client, tag: str) -> None:
    """Memory use learned from a req_grp's jobs replaces the 1G asked for, unless override=2.

    1. Three jobs of req_grp <tag> that use ~50 MB each, asking for 1G, complete.
    2. A fourth job of that req_grp asking for 1G expects the learned amount (a multiple of
       100 MB covering what the others used); one with override=2 keeps 1024; one with
       override=1 keeps 1024 too (the learned value is lower).
    """
    grp = f"learn-{tag}"
    alloc = (f"{shlex.quote(sys.executable)} -c "
             f"'b=bytearray(50*1024*1024); import time; time.sleep(1.5)'")
    jobs = add(api, [{"cmd": f"{alloc} # {i} {tag}", "memory": "1G", "req_grp": grp}
                     for i in range(3)], rep_grp=tag)
    done = [wait_state(api, j["Key"], "complete") for j in jobs]
    peak = max(j["PeakRAM"] for j in done)
    assert peak >= 50, [j["PeakRAM"] for j in done]

    learned, kept, higher_only = add(api, [
        {"cmd": f"echo learned {tag}", "memory": "1G", "req_grp": grp},
        {"cmd": f"echo override2 {tag}", "memory": "1G", "req_grp": grp, "override": 2},
        {"cmd": f"echo override1 {tag}", "memory": "1G", "req_grp": grp, "override": 1},
    ], rep_grp=tag)
    assert learned["ExpectedRAM"] in (100, 200), learned["ExpectedRAM"]
    assert learned["ExpectedRAM"] >= peak
    assert kept["ExpectedRAM"] == 1024
    assert higher_only["ExpectedRAM"] == 1024
    for job in (learned, kept, higher_only):
        wait_state(api, job["Key"], "complete")
    assert one(api, learned["Key"])["ExpectedRAM"] == learned["ExpectedRAM"]
    assert one(api, kept["Key"])["ExpectedRAM"] == 1024
