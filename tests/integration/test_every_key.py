"""No silent option (issue 15, part 6): every job key the table accepts acts, is refused at
add, or fails the job definitely on its runner, against a real manager and real runners.

`CASES` has one entry per key of `wr.job_table.KEYS`, so a new key fails
`test_every_key_has_a_case` until someone says what proves it acts. An entry is one of:

* `Shown`: the key's value, and what a job's details object (`GET /rest/v1/details/`) then
  says: where what the key does is what users read (its report group, its dependencies,
  its container image), or the value the runner and scheduler are given to act on.
* `Ran`: a test of this module runs a job with the key and checks what it did, or that it
  failed definitely (buried, with the reason) instead of running without it.
* `Elsewhere`: a named test of another module does that (containers, mounts, the LSF
  emulation and the caller's environment need their own set-ups); this module checks the
  test is still there.
* `NoEffect`: a key only a scheduler this wr does not have would use: stored as wr stores
  it (``OtherRequests``), and ``wr add`` says in one line that it does nothing here.

Every `Shown` and `NoEffect` key is also added for real here, each in a job of its own, held
by a limit group of 0 so that none of them runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManagerHandle, running_manager, wait_for
from wr.job_table import KEYS, NO_EFFECT_KEYS
from wr.jobs import compute_key

HOLD = "hold-every-key:0"


@dataclass(frozen=True)
class Shown:
    value: Any
    check: Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Ran:
    test: str
    """The test of this module that runs it."""


@dataclass(frozen=True)
class Elsewhere:
    test: str
    """``module::function`` of the test that runs it."""


@dataclass(frozen=True)
class NoEffect:
    value: Any
    shown: str
    """Its entry in OtherRequests."""


OTHER_WAYS = "tests.integration.test_containers"
CASES: dict[str, Shown | Ran | Elsewhere | NoEffect] = {
    "cmd": Shown("true every-key cmd", lambda d: d["Cmd"] == "true every-key cmd"),
    "cwd": Shown("/var/tmp", lambda d: d["CwdBase"] == "/var/tmp"),
    "cwd_matters": Ran("test_cwd_matters_and_change_home_choose_where_and_home"),
    "rep_grp": Shown("every-key-reports", lambda d: d["RepGroup"] == "every-key-reports"),
    "req_grp": Shown("aligners", lambda d: d["ReqGroup"] == "aligners"),
    "memory": Shown("3G", lambda d: d["ExpectedRAM"] == 3072),
    "time": Shown("1h30m", lambda d: d["ExpectedTime"] == 5400),
    "cpus": Shown(2.5, lambda d: d["Cores"] == 2.5),
    "disk": Shown(4, lambda d: d["RequestedDisk"] == 4),
    "priority": Shown(7, lambda d: d["Priority"] == 7),
    "retries": Shown(5, lambda d: d["Retries"] == 5),
    "limit_grps": Shown(["every-key-fast:0"], lambda d: d["LimitGroups"] == ["every-key-fast"]),
    "dep_grps": Shown(["every-key-stage1"], lambda d: d["DepGroups"] == ["every-key-stage1"]),
    "deps": Shown(["every-key-stage0"], lambda d: d["Dependencies"] == ["every-key-stage0"]),
    "change_home": Ran("test_cwd_matters_and_change_home_choose_where_and_home"),
    "override": Ran("test_override_decides_between_learned_and_given_memory"),
    "no_retry_over_walltime": Ran("test_no_retry_over_walltime_buries_a_long_failure"),
    "modules": Ran("test_modules_that_cannot_be_loaded_fail_the_job"),
    "cmd_deps": Shown([{"Essence": {"JobKey": "0123456789abcdef0123456789abcdef"}}],
                      lambda d: d["Dependencies"] == ["0123456789abcdef0123456789abcdef"]),
    "on_failure": Ran("test_behaviours_run_when_they_should"),
    "on_success": Ran("test_behaviours_run_when_they_should"),
    "on_exit": Ran("test_behaviours_run_when_they_should"),
    "mounts": Elsewhere("tests.integration.test_mounts_jobs::"
                        "test_a_job_reads_its_input_and_writes_its_output_through_its_mount"),
    "monitor_docker": Elsewhere(f"{OTHER_WAYS}::"
                                "test_monitor_docker_adds_a_started_containers_memory"),
    "with_docker": Elsewhere(f"{OTHER_WAYS}::test_a_docker_job_sees_the_image_not_the_host"),
    "with_singularity": Elsewhere(f"{OTHER_WAYS}::"
                                  "test_a_singularity_job_on_a_host_without_it_is_buried"),
    "container_mounts": Elsewhere(f"{OTHER_WAYS}::"
                                  "test_container_mounts_bind_host_directories"),
    "env": Elsewhere("tests.e2e.test_cli_add_env::"
                     "test_wr_add_jobs_run_with_the_callers_path_and_variables"),
    "env_key": Elsewhere("tests.e2e.test_cli_add_env::"
                         "test_an_unknown_or_malformed_env_key_is_refused_and_nothing_is_added"),
    "group": Elsewhere(f"{OTHER_WAYS}::test_an_unknown_group_buries_naming_it"),
    "bsub_mode": Elsewhere("tests.integration.test_lsf::"
                           "test_a_script_piped_into_bsub_adds_a_job_that_bjobs_lists_and_that_runs"),
    "reserve_timeout": Ran("test_reserve_timeout_is_how_long_its_runners_wait"),
    "cloud_os": NoEffect("ubuntu", "cloud_os:ubuntu"),
    "cloud_username": NoEffect("admin", "cloud_user:admin"),
    "cloud_flavor": NoEffect("m1.small", "cloud_flavor:m1.small"),
    "cloud_script": NoEffect(None, "cloud_script:echo set up\n"),  # (a file: see below)
    "cloud_config_files": NoEffect("~/.s3cfg", "cloud_config_files:~/.s3cfg"),
    "cloud_ram": NoEffect(2048, "cloud_os_ram:2048"),
    "cloud_shared": NoEffect(True, "cloud_shared:true"),
    "queue": NoEffect("long", "scheduler_queue:long"),
    "queues_avoid": NoEffect("short", "scheduler_queues_avoid:short"),
    "misc": NoEffect("-R avx", "scheduler_misc:-R avx"),
}


def test_every_key_has_a_case() -> None:
    assert sorted(CASES) == sorted(k.name for k in KEYS)
    assert sorted(k for k, c in CASES.items() if isinstance(c, NoEffect)) == sorted(
        NO_EFFECT_KEYS)


def test_every_run_case_names_a_test_that_exists() -> None:
    here = sys.modules[__name__]
    for key, case in CASES.items():
        if isinstance(case, Ran):
            assert callable(getattr(here, case.test, None)), (key, case.test)
        elif isinstance(case, Elsewhere):
            module, _, name = case.test.partition("::")
            assert callable(getattr(importlib.import_module(module), name, None)), key


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    with running_manager(tmp_path_factory.mktemp("home")) as handle:
        yield handle


@pytest.fixture(scope="module")
def client(mgr: ManagerHandle) -> Iterator[Any]:
    with mgr.client() as c:
        yield c


def _value(key: str, case: Shown | NoEffect, tmp_path: Path) -> Any:
    if key == "cloud_script":
        script = tmp_path / "setup.sh"
        script.write_text("echo set up\n")
        return str(script)
    return case.value


def test_each_shown_or_stored_key_is_what_its_job_says(client: Any, tmp_path: Path) -> None:
    """Steps: add one job per `Shown` and `NoEffect` key, each giving only that key (held
    by a limit group of 0). Expected: each job's details show what the key asked for."""
    cases = {k: c for k, c in CASES.items() if isinstance(c, Shown | NoEffect)}
    jobs = [{"cmd": f"true every-key {key}", key: _value(key, case, tmp_path)}
            for key, case in cases.items()]
    jobs[0]["cmd"] = cases["cmd"].value  # type: ignore[union-attr]
    client.add(jobs, rep_grp="every-key", limit_grps=HOLD)
    found = {j["Cmd"]: j for j in client.details("every-key")
             + client.details("every-key-reports")}
    for key, case in cases.items():
        cmd = case.value if key == "cmd" else f"true every-key {key}"
        details = found[cmd]
        if isinstance(case, Shown):
            assert case.check(details), (key, details)
        else:
            assert case.shown in (details["OtherRequests"] or []), (key, details)


def test_no_effect_keys_are_named_by_wr_add_in_one_line(mgr: ManagerHandle) -> None:
    lines = ('{"cmd":"true every-key note 1","cloud_os":"ubuntu","queue":"long"}\n'
             '{"cmd":"true every-key note 2","misc":"-R avx"}\n'
             'true every-key note 3\n')
    proc = mgr.wr("add", "-i", "every-key-notes", "-l", HOLD, input=lines, check=True)
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: cloud_os, misc, queue have no effect with this manager's local "
                     "scheduler (they are stored, as wr stores them)"]
    plain = mgr.wr("add", "-i", "every-key-notes", "-l", HOLD, input="true every-key 4\n",
                   check=True)
    assert "note:" not in plain.stderr


# -- what running them shows ----------------------------------------------------------------

def finished(client: Any, rep_grp: str, n: int = 1) -> list[dict[str, Any]]:
    def over() -> list[dict[str, Any]] | None:
        jobs = client.details(rep_grp)
        return jobs if len(jobs) == n and all(
            j["State"] in ("complete", "buried") for j in jobs) else None

    return wait_for(over, timeout=90, what=f"the jobs of {rep_grp} to end")


def test_cwd_matters_and_change_home_choose_where_and_home(client: Any,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    client.add([{"cmd": f"pwd > {out}.matters", "cwd": str(tmp_path), "cwd_matters": True},
                {"cmd": f'echo "$HOME $PWD" > {out}.home', "cwd": str(tmp_path),
                 "change_home": True}], rep_grp="every-key-where")
    jobs = {j["Cmd"].split(" > ")[0]: j for j in finished(client, "every-key-where", 2)}
    assert Path(f"{out}.matters").read_text() == f"{tmp_path}\n"
    assert jobs["pwd"]["Key"] == compute_key(f"pwd > {out}.matters", cwd=str(tmp_path),
                                               cwd_matters=True)
    home, cwd = Path(f"{out}.home").read_text().split()
    assert home == cwd != str(tmp_path) and cwd.startswith(str(tmp_path))


def test_override_decides_between_learned_and_given_memory(client: Any) -> None:
    """Steps: complete a job of req_grp G (it uses a few MB), then add three held jobs of
    G asking for 5G with override 0, 1 and 2. Expected: 0 takes the learned memory, 1 and 2
    keep the 5G (higher than learned)."""
    client.add([{"cmd": "true every-key learn", "req_grp": "every-key-learn"}],
               rep_grp="every-key-learn")
    finished(client, "every-key-learn")
    client.add([{"cmd": f"true every-key override {n}", "req_grp": "every-key-learn",
                 "memory": "5G", "override": n} for n in (0, 1, 2)],
               rep_grp="every-key-override", limit_grps=HOLD)
    ram = {j["Cmd"][-1]: j["ExpectedRAM"] for j in client.details("every-key-override")}
    assert ram["0"] < 5120 and ram["1"] == ram["2"] == 5120, ram


def test_no_retry_over_walltime_buries_a_long_failure(client: Any) -> None:
    client.add([{"cmd": "sleep 0.2; false # every-key long", "retries": 3,
                 "no_retry_over_walltime": "100ms"},
                {"cmd": "sleep 0.2; false # every-key retried", "retries": 1}],
               rep_grp="every-key-walltime")
    jobs = {j["Cmd"].split("# ")[1]: j for j in finished(client, "every-key-walltime", 2)}
    assert jobs["every-key long"]["State"] == "buried"
    assert jobs["every-key long"]["Attempts"] == 1
    assert jobs["every-key retried"]["Attempts"] == 2


def test_modules_that_cannot_be_loaded_fail_the_job(client: Any, tmp_path: Path) -> None:
    """A job never runs bare without the modules it asked for: on a machine without
    environment modules (as here) it is buried, its command never run."""
    ran = tmp_path / "ran"
    client.add([{"cmd": f"touch {ran}", "modules": ["every-key-no-such-module"],
                 "retries": 0}], rep_grp="every-key-modules")
    [job] = finished(client, "every-key-modules")
    assert job["State"] == "buried" and job["Exitcode"] != 0, job
    assert not ran.exists()


def test_behaviours_run_when_they_should(client: Any, tmp_path: Path) -> None:
    client.add([{"cmd": "true", "on_success": [{"run": f"touch {tmp_path}/ok-success"}],
                 "on_failure": [{"run": f"touch {tmp_path}/ok-failure-not"}],
                 "on_exit": [{"run": f"touch {tmp_path}/ok-exit"}]},
                {"cmd": "false", "retries": 0,
                 "on_failure": [{"run": f"touch {tmp_path}/bad-failure"}],
                 "on_success": [{"run": f"touch {tmp_path}/bad-success-not"}]}],
               rep_grp="every-key-behaviours")
    finished(client, "every-key-behaviours", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad-failure", "ok-exit",
                                                          "ok-success"]


def test_reserve_timeout_is_how_long_its_runners_wait(mgr: ManagerHandle, client: Any) -> None:
    """The runners of jobs with ``reserve_timeout`` wait that long for another job (their
    ``--idle``), not the manager's ``runneridletimeout`` (1 s in these tests)."""
    import psutil

    client.add([{"cmd": "sleep 2 # every-key rtimeout", "reserve_timeout": 37}],
               rep_grp="every-key-rtimeout")

    def idle_of_runners() -> list[str]:
        found = []
        for pid in mgr.runner_pids("wr-keeper") + mgr.runner_pids():
            try:
                argv = psutil.Process(pid).cmdline()
            except psutil.Error:
                continue
            if "--idle" in argv:
                found.append(argv[argv.index("--idle") + 1])
        return found

    assert wait_for(lambda: "37" in idle_of_runners(), timeout=60,
                    what="a runner waiting 37 s for jobs")
    finished(client, "every-key-rtimeout")
