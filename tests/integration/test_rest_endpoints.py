"""Every REST endpoint of the seed page (spec/seed-rest-api.txt), against a real manager.

One manager serves the whole module; each test works in rep groups, dependency groups and
commands named after itself, so tests neither see nor disturb each other's jobs. Jobs that
must stay put without running are held in a limit group whose limit is 0.

Status codes and error texts are the contract's (spec/rest-and-queue.md §1-§3), as settled
by DESIGN.md "Compatibility decisions" (unset times are -62135596800, memory defaults to
1024 MB, ``deletable`` excludes running jobs, JSON is read whatever the Content-Type).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import pytest

import wr
from tests.conftest import ManagerHandle, running_manager, wait_for

pytestmark = pytest.mark.integration

UNSET = -62135596800
JSON_TYPE = "application/json; charset=UTF-8"
TEXT_TYPE = "text/plain; charset=utf-8"


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """One manager for the module, in its own HOME, with the fast test timings."""
    with running_manager(tmp_path_factory.mktemp("home")) as handle:
        yield handle


@pytest.fixture(scope="module")
def api(mgr: ManagerHandle) -> Iterator[httpx.Client]:
    """An authenticated HTTPS client trusting only the manager's CA."""
    with mgr.http(timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def anon(mgr: ManagerHandle) -> Iterator[httpx.Client]:
    """An HTTPS client that sends no token."""
    with mgr.http(token=False, timeout=30) as c:
        yield c



# -- helpers --------------------------------------------------------------------------------

def add(api: httpx.Client, jobs: list[dict[str, Any]], **params: str) -> list[dict[str, Any]]:
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(jobs), params=params)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == JSON_TYPE
    return r.json()


def get(api: httpx.Client, ids: str = "", **params: str) -> list[dict[str, Any]]:
    r = api.get(f"/rest/v1/jobs/{ids}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def by_key(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {j["Key"]: j for j in jobs}


def wait_state(api: httpx.Client, key: str, *states: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the job with ``key`` until its State is one of ``states``; return it."""
    def reached() -> dict[str, Any] | None:
        found = get(api, key)
        return found[0] if found and found[0]["State"] in states else None

    return wait_for(reached, timeout, what=f"job {key} to become {'|'.join(states)}")


def held(cmd: str, tag: str, **extra: Any) -> dict[str, Any]:
    """A job that stays ``ready``: its limit group allows 0 jobs to run."""
    return {"cmd": cmd, "limit_grps": [f"{tag}-hold:0"], **extra}


def error(r: httpx.Response, status: int, body: str) -> None:
    assert r.status_code == status, r.text
    assert r.text == body
    assert r.headers["content-type"] == TEXT_TYPE


# -- version and info -----------------------------------------------------------------------

def test_version_needs_no_token(anon: httpx.Client) -> None:
    r = anon.get("/rest/version/")
    assert r.status_code == 200
    assert r.headers["content-type"] == JSON_TYPE
    assert r.text.endswith("\n")
    assert r.json() == {"Version": wr.__version__, "API": "1"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_version_only_answers_get(anon: httpx.Client, method: str) -> None:
    error(anon.request(method, "/rest/version/"), 400, "Only GET is supported\n")


@pytest.mark.parametrize("path", ["/rest/v1/info/", "/rest/v1/info/anything/below"])
def test_info_describes_the_manager(api: httpx.Client, mgr: ManagerHandle, path: str) -> None:
    r = api.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON_TYPE
    info = r.json()
    assert list(info) == ["Addr", "Host", "FQDN", "Port", "WebPort", "PID", "Deployment",
                          "Scheduler", "Mode"]
    assert info["Addr"].endswith(f":{mgr.port}")
    assert info["Host"] == "localhost"
    assert isinstance(info["FQDN"], str) and info["FQDN"]
    assert info["Port"] == str(mgr.port)
    assert info["WebPort"] == str(mgr.web_port)
    assert info["PID"] == mgr.pid
    assert info["Deployment"] == "production"
    assert info["Scheduler"] == "local"
    assert info["Mode"] == "started"


def test_info_only_answers_get(api: httpx.Client) -> None:
    error(api.post("/rest/v1/info/"), 400, "Only GET is supported\n")


# -- jobs: adding and getting ---------------------------------------------------------------

def test_seed_quick_start(api: httpx.Client) -> None:
    """The seed page's quick start, step by step.

    1. POST its two jobs with query defaults rep_grp=myid, cpus=2, memory=3G, time=5s.
       -> 201; wr's keys; JSON values beat query defaults (5M, cpus 1); unset times are
       -62135596800; both ready.
    2. Once they have run: GET all incomplete jobs -> the failed one (buried), not the other.
    3. GET the rep group with std=true -> both, the complete one too; the failed one has its
       stdout "mymsg".
    4. GET both keys -> both, the complete one from history, without std.

    The exact ExpectedRAM values need req_grp "sleep" to have learned nothing yet: no other
    test of this module completes a sleep job.
    """
    body = [{"cmd": "sleep 5 && echo mymsg && false", "memory": "5M", "cpus": 1},
            {"cmd": "sleep 5", "cpus": 1}]
    added = add(api, body, rep_grp="myid", cpus="2", memory="3G", time="5s")
    failing, fine = "58cef10e7a340c3b7fa09ea304a3cb98", "ea4266bc0fc7dd493caeb2fff1963e4a"
    assert [j["Key"] for j in added] == [failing, fine]
    first, second = added
    assert first == {
        "Key": failing, "RepGroup": "myid", "DepGroups": None, "Dependencies": None,
        "Cmd": "sleep 5 && echo mymsg && false", "State": "ready", "Cwd": "",
        "CwdBase": "/tmp", "HomeChanged": False, "Behaviours": "", "Mounts": "",
        "MonitorDocker": "", "WithDocker": "", "WithSingularity": "", "ContainerMounts": "",
        "ExpectedRAM": 5, "ExpectedTime": 5, "RequestedDisk": 0, "OtherRequests": None,
        "Cores": 1, "PeakRAM": 0, "PeakDisk": 0, "Exited": False, "Exitcode": 0,
        "FailReason": "", "Pid": 0, "Host": "", "HostID": "", "HostIP": "", "Walltime": 0,
        "CPUtime": 0, "Started": UNSET, "Ended": UNSET, "StdErr": "", "StdOut": "",
        "Env": None, "Attempts": 0, "Similar": 0, "LimitGroups": None, "Modules": None,
        "IsPushUpdate": False,
    }
    assert (second["ExpectedRAM"], second["ExpectedTime"], second["Cores"]) == (3072, 5, 1)
    assert second["State"] == "ready"

    buried = wait_state(api, failing, "buried")
    done = wait_state(api, fine, "complete")
    assert buried["FailReason"] == "command exited non-zero"
    assert (buried["Exited"], buried["Exitcode"], buried["Attempts"]) == (True, 1, 1)
    assert buried["Started"] != UNSET and buried["Ended"] >= buried["Started"]
    assert re.fullmatch(r"/wr_cwd/5/8/c/ef10e7a340c3b7fa09ea304a3cb98\d+/cwd", buried["Cwd"])
    assert buried["Pid"] > 0 and buried["Host"]
    assert 4.5 < buried["Walltime"] < 30
    assert buried["StdOut"] == ""  # only with std=true
    assert (done["Exited"], done["Exitcode"], done["FailReason"]) == (True, 0, "")

    incomplete = by_key(get(api))
    assert failing in incomplete and fine not in incomplete
    assert incomplete[failing]["State"] == "buried"

    with_std = get(api, "myid", std="true")
    assert [j["Key"] for j in with_std] == [failing, fine]
    assert [j["State"] for j in with_std] == ["buried", "complete"]
    assert (with_std[0]["StdOut"], with_std[0]["StdErr"]) == ("mymsg", "")
    assert (with_std[1]["StdOut"], with_std[1]["StdErr"]) == ("", "")

    keyed = get(api, f"{failing},{fine}")
    assert [(j["Key"], j["State"]) for j in keyed] == [(failing, "buried"), (fine, "complete")]
    assert keyed[0]["StdOut"] == ""
    # state and limit do not apply to lookups by key (§2.1.3).
    assert [j["Key"] for j in get(api, fine, state="buried", limit="1")] == [fine]
    api.delete("/rest/v1/jobs/myid", params={"state": "deletable"})


def test_jobs_path_without_slash(api: httpx.Client, tag: str) -> None:
    r = api.post("/rest/v1/jobs", content=orjson.dumps([held(f"echo {tag}", tag)]),
                 params={"rep_grp": tag})
    assert r.status_code == 201, r.text
    key = r.json()[0]["Key"]
    r = api.get("/rest/v1/jobs")
    assert r.status_code == 200, r.text
    assert key in by_key(r.json())
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


def test_get_all_lists_incomplete_jobs_only(api: httpx.Client, tag: str) -> None:
    done = add(api, [{"cmd": f"echo done {tag}"}], rep_grp=tag)[0]["Key"]
    wait_state(api, done, "complete")
    waiting = add(api, [held(f"echo waiting {tag}", tag)], rep_grp=tag)[0]["Key"]
    everything = by_key(get(api))
    assert waiting in everything and done not in everything
    assert everything[waiting]["State"] == "ready"
    assert [j["Key"] for j in get(api, tag)] == [waiting, done]
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


def test_state_filters(api: httpx.Client, tag: str) -> None:
    """One job in each of ready, running, dependent, buried and complete.

    ``running`` and ``reserved`` are the same filter; ``deletable`` is ready + dependent +
    buried; ``complete`` needs an id (without one only incomplete jobs are looked at).
    """
    jobs = add(api, [
        {"cmd": f"echo complete {tag}"},
        {"cmd": f"echo buried {tag} && false"},
        {"cmd": f"sleep 30 # running {tag}", "dep_grps": [f"{tag}-run"]},
        held(f"echo ready {tag}", tag),
    ], rep_grp=tag)
    complete, buried, running, ready = (j["Key"] for j in jobs)
    dependent = add(api, [{"cmd": f"echo dependent {tag}", "deps": [f"{tag}-run"]}],
                    rep_grp=tag)[0]["Key"]
    wait_state(api, complete, "complete")
    wait_state(api, buried, "buried")
    wait_state(api, running, "running")
    keys = {complete, buried, running, ready, dependent}

    def states(**params: str) -> dict[str, str]:
        return {j["Key"]: j["State"] for j in get(api, tag, **params)}

    assert states() == {complete: "complete", buried: "buried", running: "running",
                        ready: "ready", dependent: "dependent"}
    assert states(state="ready") == {ready: "ready"}
    assert states(state="running") == {running: "running"}
    assert states(state="reserved") == {running: "running"}
    assert states(state="buried") == {buried: "buried"}
    assert states(state="dependent") == {dependent: "dependent"}
    assert states(state="complete") == {complete: "complete"}
    assert states(state="deletable") == {ready: "ready", dependent: "dependent",
                                         buried: "buried"}
    assert states(state="delayed") == {}
    assert states(state="lost") == {}

    everything = {j["Key"]: j["State"] for j in get(api, state="running") if j["Key"] in keys}
    assert everything == {running: "running"}
    assert [j for j in get(api, state="complete") if j["Key"] in keys] == []

    # A running job is not deletable, even named by its key.
    r = api.delete(f"/rest/v1/jobs/{running}", params={"state": "deletable"})
    assert (r.status_code, r.json()) == (200, [])
    assert get(api, running)[0]["State"] == "running"

    r = api.delete(f"/rest/v1/jobs/{tag}", params={"state": "running"})
    assert r.status_code == 202, r.text
    assert [(j["Key"], j["State"]) for j in r.json()] == [(running, "running")]
    wait_state(api, running, "buried")
    r = api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})
    assert r.status_code == 200, r.text
    assert {j["Key"] for j in r.json()} == {buried, running, ready, dependent}
    assert states() == {complete: "complete"}


def test_limit_groups_similar_jobs(api: httpx.Client, tag: str) -> None:
    add(api, [held(f"echo {i} {tag}", tag) for i in range(3)], rep_grp=tag)
    grouped = get(api, tag, limit="1")
    assert len(grouped) == 1
    assert grouped[0]["Similar"] == 2
    two = get(api, tag, limit="2")
    assert [j["Similar"] for j in two] == [0, 1]
    assert [j["Similar"] for j in get(api, tag)] == [0, 0, 0]
    assert [j["Similar"] for j in get(api, tag, limit="0")] == [0, 0, 0]
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


def test_std_shown_only_for_failed_jobs(api: httpx.Client, tag: str) -> None:
    failed, fine = (j["Key"] for j in add(api, [
        {"cmd": f"echo out-{tag} && echo err-{tag} >&2 && exit 3"},
        {"cmd": f"echo out-{tag} && echo err-{tag} >&2"},
    ], rep_grp=tag))
    assert wait_state(api, failed, "buried")["Exitcode"] == 3
    wait_state(api, fine, "complete")
    shown = by_key(get(api, tag, std="true"))
    assert (shown[failed]["StdOut"], shown[failed]["StdErr"]) == (f"out-{tag}", f"err-{tag}")
    assert (shown[fine]["StdOut"], shown[fine]["StdErr"]) == ("", "")
    plain = by_key(get(api, tag))
    assert (plain[failed]["StdOut"], plain[failed]["StdErr"]) == ("", "")
    assert get(api, failed, std="true")[0]["StdOut"] == f"out-{tag}"
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


def test_env_shows_the_jobs_overrides(api: httpx.Client, mgr: ManagerHandle, tag: str) -> None:
    key = add(api, [held(f"echo {tag}", tag)], rep_grp=tag, env="A=1,B=2")[0]["Key"]
    assert get(api, tag)[0]["Env"] is None
    env = get(api, tag, env="true")[0]["Env"]
    # The overrides alone, in order: the environment a job runs with (here the manager's)
    # is never shown (issue 15).
    assert env == ["A=1", "B=2"]
    assert get(api, key, env="true")[0]["Env"] == env
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


def test_search_matches_rep_group_substrings(api: httpx.Client, tag: str) -> None:
    alpha = add(api, [held(f"echo alpha {tag}", tag)], rep_grp=f"x-{tag}-alpha")[0]["Key"]
    beta = add(api, [held(f"echo beta {tag}", tag)], rep_grp=f"y-{tag}-beta")[0]["Key"]
    assert get(api, tag) == []
    found = get(api, tag, search="true")
    assert {j["Key"]: j["RepGroup"] for j in found} == {alpha: f"x-{tag}-alpha",
                                                         beta: f"y-{tag}-beta"}
    assert [j["Key"] for j in get(api, f"{tag}-al", search="true")] == [alpha]
    r = api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable", "search": "true"})
    assert r.status_code == 200, r.text
    assert {j["Key"] for j in r.json()} == {alpha, beta}


# -- jobs: cancelling -----------------------------------------------------------------------

def test_delete_deletable_removes_ready_buried_and_dependent(api: httpx.Client,
                                                             tag: str) -> None:
    ready, buried = (j["Key"] for j in add(api, [
        held(f"echo ready {tag}", tag, dep_grps=[f"{tag}-parent"]),
        {"cmd": f"echo buried {tag} && false"},
    ], rep_grp=tag))
    dependent = add(api, [{"cmd": f"echo dep {tag}", "deps": [f"{tag}-parent"]}],
                    rep_grp=tag)[0]["Key"]
    wait_state(api, buried, "buried")
    assert wait_state(api, dependent, "dependent")["Dependencies"] == [f"{tag}-parent"]

    r = api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON_TYPE
    gone = by_key(r.json())
    assert set(gone) == {ready, buried, dependent}
    assert {j["State"] for j in gone.values()} == {"deleted"}
    assert get(api, tag) == []
    assert not {ready, buried, dependent} & set(by_key(get(api)))


def test_delete_skips_a_job_with_dependants(api: httpx.Client, tag: str) -> None:
    """A parent is only deleted together with the jobs that depend on it.

    1. DELETE the parent's key alone -> 200 [], it is still queued.
    2. DELETE the parent and its dependant -> 200, both "deleted".
    """
    parent = add(api, [held(f"echo parent {tag}", tag, dep_grps=[f"{tag}-p"])],
                 rep_grp=tag)[0]["Key"]
    child = add(api, [{"cmd": f"echo child {tag}", "deps": [f"{tag}-p"]}],
                rep_grp=tag)[0]["Key"]
    r = api.delete(f"/rest/v1/jobs/{parent}", params={"state": "deletable"})
    assert r.status_code == 200, r.text
    assert r.json() == []
    assert {j["Key"]: j["State"] for j in get(api, tag)} == {parent: "ready",
                                                            child: "dependent"}
    r = api.delete(f"/rest/v1/jobs/{parent},{child}", params={"state": "deletable"})
    assert r.status_code == 200, r.text
    assert {j["Key"]: j["State"] for j in r.json()} == {parent: "deleted", child: "deleted"}
    assert get(api, tag) == []


def test_delete_running_kills_the_job(api: httpx.Client) -> None:
    """DELETE state=running: 202 with the job as it was; it ends buried, its process gone."""
    key = add(api, [{"cmd": "sleep 100"}], rep_grp="killme")[0]["Key"]
    running = wait_state(api, key, "running")
    pid = running["Pid"]
    assert pid > 0 and psutil.pid_exists(pid)

    r = api.delete(f"/rest/v1/jobs/{key}", params={"state": "running"})
    assert r.status_code == 202, r.text
    before = r.json()
    assert [(j["Key"], j["State"]) for j in before] == [(key, "running")]

    buried = wait_state(api, key, "buried", timeout=20)
    assert buried["FailReason"] == "killed by user request"
    assert buried["Exited"] is True

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, 10, what=f"the killed job's process {pid} to go")
    r = api.delete(f"/rest/v1/jobs/{key}", params={"state": "running"})
    assert (r.status_code, r.json()) == (202, [])
    api.delete("/rest/v1/jobs/killme", params={"state": "deletable"})


@pytest.mark.parametrize("query", [{}, {"state": ""}, {"state": "ready"},
                                   {"state": "complete"}, {"state": "Running"}])
def test_delete_needs_a_cancel_state(api: httpx.Client, query: dict[str, str]) -> None:
    error(api.delete("/rest/v1/jobs/", params=query), 400,
          "state must be supplied as one of running|lost|deletable\n")


def test_kill_only_touches_jobs_held_by_runners(api: httpx.Client, tag: str) -> None:
    """DELETE state=running|lost of a ready job: 202 [], and the job is untouched."""
    add(api, [held(f"echo {tag}", tag)], rep_grp=tag)
    for state in ("running", "lost"):
        r = api.delete(f"/rest/v1/jobs/{tag}", params={"state": state})
        assert (r.status_code, r.json()) == (202, [])
    assert get(api, tag)[0]["State"] == "ready"
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


# -- upload, warnings, servers --------------------------------------------------------------

def test_upload_to_a_home_path(api: httpx.Client, mgr: ManagerHandle) -> None:
    r = api.put("/rest/v1/upload/", params={"path": "~/scripts/my_cloud_script"},
                content=b"echo hello\n")
    assert r.status_code == 200, r.text
    target = mgr.home / "scripts" / "my_cloud_script"
    assert r.json() == {"path": str(target)}
    assert target.read_bytes() == b"echo hello\n"
    # Uploading something shorter over it leaves no trace of the old content.
    r = api.put("/rest/v1/upload/", params={"path": "~/scripts/my_cloud_script"},
                content=b"ls\n")
    assert r.status_code == 200, r.text
    assert target.read_bytes() == b"ls\n"


def test_upload_to_an_absolute_path(api: httpx.Client, mgr: ManagerHandle) -> None:
    target = mgr.home / "abs" / "file.txt"
    r = api.put("/rest/v1/upload/", params={"path": str(target)}, content=b"data")
    assert (r.status_code, r.json()) == (200, {"path": str(target)})
    assert target.read_bytes() == b"data"


def test_upload_without_path_uses_the_md5_layout(api: httpx.Client, mgr: ManagerHandle) -> None:
    content = b"echo 1\n"
    assert hashlib.md5(content).hexdigest() == "334d5669e1fb34a7d0583a9773e1b237"
    expected = mgr.dir / "uploads" / "3" / "3" / "4" / "d5669e1fb34a7d0583a9773e1b237"
    r = api.put("/rest/v1/upload/", content=content)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON_TYPE
    assert r.json() == {"path": str(expected)}
    assert expected.read_bytes() == content
    mtime = expected.stat().st_mtime_ns
    again = api.put("/rest/v1/upload/", content=content)
    assert again.json() == {"path": str(expected)}
    assert expected.stat().st_mtime_ns == mtime


def test_upload_only_answers_put(api: httpx.Client) -> None:
    error(api.post("/rest/v1/upload/", content=b"x"), 400, "Only PUT is supported\n")


def test_upload_then_use_as_cloud_script(api: httpx.Client, tag: str) -> None:
    r = api.put("/rest/v1/upload/", params={"path": f"~/{tag}.sh"}, content=b"#!/bin/sh\n")
    assert r.status_code == 200, r.text
    job = add(api, [held(f"echo {tag}", tag, cloud_script=f"~/{tag}.sh")], rep_grp=tag)[0]
    assert job["OtherRequests"] == ["cloud_script:#!/bin/sh\n"]
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


def test_warnings_none(api: httpx.Client) -> None:
    r = api.get("/rest/v1/warnings/")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == JSON_TYPE
    assert r.json() == []
    error(api.delete("/rest/v1/warnings/"), 400, "Only GET is supported\n")


def test_servers(api: httpx.Client) -> None:
    r = api.get("/rest/v1/servers/")
    assert (r.status_code, r.json()) == (200, [])
    error(api.delete("/rest/v1/servers/"), 400, "id parameter is required\n")
    error(api.delete("/rest/v1/servers/", params={"id": ""}), 400, "id parameter is required\n")
    error(api.delete("/rest/v1/servers/", params={"id": "nosuch"}), 404,
          "Server was not known to be bad\n")
    error(api.post("/rest/v1/servers/"), 400, "Only GET and DELETE are supported\n")


# -- authentication and transport -----------------------------------------------------------

AUTHED = [("GET", "/rest/v1/jobs/"), ("POST", "/rest/v1/jobs/"), ("DELETE", "/rest/v1/jobs/"),
          ("GET", "/rest/v1/info/"), ("GET", "/rest/v1/warnings/"),
          ("GET", "/rest/v1/servers/"), ("PUT", "/rest/v1/upload/")]


@pytest.mark.parametrize(("method", "path"), AUTHED)
def test_token_required(anon: httpx.Client, method: str, path: str) -> None:
    error(anon.request(method, path), 401, "Authorization header required\n")


@pytest.mark.parametrize(("method", "path"), AUTHED)
def test_bearer_scheme_required(anon: httpx.Client, mgr: ManagerHandle, method: str,
                                path: str) -> None:
    for header in ("Basic x", f"bearer {mgr.token}", f"Bearer{mgr.token}", "Token abc"):
        r = anon.request(method, path, headers={"Authorization": header})
        error(r, 401, "Authorization requires Bearer scheme\n")


@pytest.mark.parametrize(("method", "path"), AUTHED)
def test_wrong_token(anon: httpx.Client, mgr: ManagerHandle, method: str, path: str) -> None:
    for token in ("wrong", mgr.token[:-1], mgr.token + "x", f" {mgr.token}"):
        r = anon.request(method, path, headers={"Authorization": f"Bearer {token}"})
        error(r, 401, "Invalid token\n")
    error(anon.request(method, path, params={"token": "wrong"}), 401, "Invalid token\n")


def test_token_in_query(anon: httpx.Client, mgr: ManagerHandle) -> None:
    r = anon.get("/rest/v1/info/", params={"token": mgr.token})
    assert r.status_code == 200, r.text
    assert r.json()["PID"] == mgr.pid
    # The query token is the one checked, whatever the header says.
    r = anon.get("/rest/v1/info/", params={"token": mgr.token},
                 headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 200, r.text


def test_auth_comes_before_method_dispatch(anon: httpx.Client, api: httpx.Client) -> None:
    error(anon.patch("/rest/v1/jobs/"), 401, "Authorization header required\n")
    error(anon.put("/rest/v1/info/"), 401, "Authorization header required\n")
    error(api.patch("/rest/v1/jobs/"), 400,
          "So far only GET, POST and DELETE are supported\n")
    error(api.put("/rest/v1/jobs/"), 400, "So far only GET, POST and DELETE are supported\n")


@pytest.mark.parametrize("path", ["/rest/version/", "/rest/v1/jobs/"])
def test_plain_http_gets_no_http_response(mgr: ManagerHandle, path: str) -> None:
    with httpx.Client(trust_env=False, timeout=10) as plain, \
            pytest.raises(httpx.TransportError):
        plain.get(f"http://localhost:{mgr.web_port}{path}",
                  headers={"Authorization": f"Bearer {mgr.token}"})


def test_untrusted_certificate_is_refused(mgr: ManagerHandle) -> None:
    with httpx.Client(trust_env=False, timeout=10) as default_trust, \
            pytest.raises(httpx.ConnectError):
        default_trust.get(f"{mgr.url}/rest/version/")


def test_curl_default_form_content_type_still_reads_json(mgr: ManagerHandle,
                                                         api: httpx.Client, tag: str) -> None:
    """curl -d sends application/x-www-form-urlencoded; the body is still read as JSON."""
    body = orjson.dumps([held(f"echo {tag}", tag)]).decode()
    proc = mgr.curl("-H", f"Authorization: Bearer {mgr.token}", "-X", "POST", "-d", body,
                    "-w", "\n%{http_code}", f"{mgr.url}/rest/v1/jobs/?rep_grp={tag}")
    assert proc.returncode == 0, proc.stderr
    text, _, code = proc.stdout.rpartition("\n")
    assert code == "201", proc.stdout
    added = orjson.loads(text)
    assert [(j["Cmd"], j["RepGroup"]) for j in added] == [(f"echo {tag}", tag)]
    assert [j["Key"] for j in get(api, tag)] == [added[0]["Key"]]

    proc = mgr.curl("-H", f"Authorization: Bearer {mgr.token}", "-H",
                    "Content-Type: text/plain", "-X", "POST", "-d",
                    orjson.dumps([held(f"echo 2 {tag}", tag)]).decode(),
                    "-w", "\n%{http_code}", f"{mgr.url}/rest/v1/jobs/?rep_grp={tag}")
    assert proc.stdout.rpartition("\n")[2] == "201", proc.stdout
    assert len(get(api, tag)) == 2
    api.delete(f"/rest/v1/jobs/{tag}", params={"state": "deletable"})


def test_curl_upload_file(mgr: ManagerHandle, tmp_path: Path) -> None:
    """The seed's upload example: curl --upload-file with ?path=~/..."""
    local = tmp_path / "my_cloud_script"
    local.write_text("touch /tmp/file_created_by_my_cloud_script\n")
    proc = mgr.curl(f"{mgr.url}/rest/v1/upload/?path=~/my_cloud_script", "-H",
                    f"Authorization: Bearer {mgr.token}", "--upload-file", str(local))
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout) == {"path": str(mgr.home / "my_cloud_script")}
    assert (mgr.home / "my_cloud_script").read_text() == local.read_text()
