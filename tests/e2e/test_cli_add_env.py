"""Jobs run in the caller's environment (issue 15, part 1), against a real manager and real
runners: ``wr add`` sends its own, REST adds get the manager's unless they send one, the
job's ``env`` wins, and a stored environment is shown to nobody.

The manager is started with ``MANAGER_ONLY`` set; the shell that runs ``wr add`` has instead
a ``bin/`` of its own first on ``PATH`` (holding ``only-here-tool``, which nothing else can
find) and ``CALLER_SECRET``, whose value must never appear in any answer, event or log.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManagerHandle, running_manager, wait_for
from tests.integration.event_stream import blocks

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-value-0f-the-caller"


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    with running_manager(tmp_path_factory.mktemp("home"), MANAGER_ONLY="from-manager"
                         ) as handle:
        yield handle


@pytest.fixture(scope="module")
def caller(mgr: ManagerHandle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the caller's shell: a tool only it finds, a variable only it has."""
    tools = tmp_path_factory.mktemp("callerbin")
    tool = tools / "only-here-tool"
    tool.write_text('#!/bin/sh\necho "tool ran with $1"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in mgr.env.items() if k != "MANAGER_ONLY"}
    env.update(PATH=f"{tools}:{env['PATH']}", CALLER_VAR="from-caller",
               CALLER_SECRET=SECRET, OVERRIDDEN="from-caller")
    return env


def wr_add(mgr: ManagerHandle, env: dict[str, str], lines: str, *args: str) -> Any:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "wr.cli.main", "add", *args], env=env,
                          input=lines, capture_output=True, text=True, timeout=120,
                          cwd=str(mgr.home))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{mgr.log()}"
    return proc


def done(client: Any, rep_grp: str, n: int = 1) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        jobs = client.status(rep_grp)
        ok = len(jobs) == n and all(j["State"] in ("complete", "buried") for j in jobs)
        return jobs if ok else None

    return wait_for(finished, timeout=90, what=f"jobs of {rep_grp} to finish")


def test_wr_add_jobs_run_with_the_callers_path_and_variables(
        mgr: ManagerHandle, caller: dict[str, str], tmp_path: Path) -> None:
    """Steps: ``wr add`` from the caller's shell a command that runs a tool only the
    caller's PATH holds and prints the caller's variables, with ``--env`` overriding one.
    Expected: it completes (no 127), printing the caller's values and the override; the
    manager's own variable is not there."""
    out = tmp_path / "out.txt"
    wr_add(mgr, caller, f'only-here-tool x > {out}; echo "$CALLER_VAR $OVERRIDDEN '
                        f'${{MANAGER_ONLY:-none}}" >> {out}\n',
           "-i", "caller-env", "--env", "OVERRIDDEN=from-override")
    with mgr.client() as c:
        [job] = done(c, "caller-env")
    assert job["State"] == "complete", (job, mgr.log())
    assert out.read_text() == "tool ran with x\nfrom-caller from-override none\n"


def test_rest_jobs_without_an_environment_get_the_managers(
        mgr: ManagerHandle, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with mgr.client() as c:
        c.add([{"cmd": f'echo "${{MANAGER_ONLY:-none}} ${{CALLER_VAR:-none}}" > {out}'},
               {"cmd": "only-here-tool"}], rep_grp="rest-env", retries=0)
        jobs = {j["Cmd"]: j for j in done(c, "rest-env", 2)}
    assert out.read_text() == "from-manager none\n"
    assert jobs["only-here-tool"]["State"] == "buried"
    assert jobs["only-here-tool"]["Exitcode"] == 127


def test_the_client_sends_its_own_environment_and_env_wins(
        mgr: ManagerHandle, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    mine = {"PATH": "/usr/bin:/bin", "CLIENT_VAR": "from-client", "B": "base"}
    with mgr.client() as c:
        c.add([{"cmd": f'echo "$CLIENT_VAR $B ${{MANAGER_ONLY:-none}}" > {out}',
                "env": ["B=override"]}], rep_grp="client-env", environment=mine)
        [job] = done(c, "client-env")
    assert job["State"] == "complete"
    assert out.read_text() == "from-client override none\n"


def test_an_unknown_or_malformed_env_key_is_refused_and_nothing_is_added(
        mgr: ManagerHandle) -> None:
    with mgr.http() as api:
        r = api.post("/rest/v1/jobs/", params={"env_key": "f" * 32},
                     content=b'[{"cmd":"echo unknown-env"}]')
        assert r.status_code == 400 and f"env_key {'f' * 32} is not an environment" in r.text
        r = api.post("/rest/v1/jobs/", content=b'[{"cmd":"echo bad-env","env_key":"xyz"}]')
        assert r.status_code == 400 and "env_key (xyz) is not an environment's key" in r.text
        for body, why in ((b'{"A": 1}', "the value of environment variable 'A' must be a "
                           "string, not 1"),
                          (b'["NOEQUALS"]', "environment entry 'NOEQUALS' is not NAME=VALUE"),
                          (b'"PATH=/bin"', "an environment must be a JSON object"),
                          (b"", "the request body is empty")):
            r = api.put("/rest/v1/environments/", content=body)
            assert r.status_code == 400 and why in r.text, (body, r.text)
        assert api.get("/rest/v1/jobs/unknown-env,bad-env").json() == []


def test_equal_environments_are_stored_once(mgr: ManagerHandle) -> None:
    with mgr.http() as api:
        one = api.put("/rest/v1/environments/", json={"A": "1", "B": "2"}).json()["Key"]
        two = api.put("/rest/v1/environments/", json=["A=1", "B=2"]).json()["Key"]
        other = api.put("/rest/v1/environments/", json=["B=2", "A=1"]).json()["Key"]
    assert one == two != other
    import sqlite3

    db = sqlite3.connect(f"file:{mgr.dir / 'db'}?mode=ro", uri=True)
    try:
        keys = [row[0] for row in db.execute("SELECT key FROM envs")]
    finally:
        db.close()
    assert keys.count(one) == 1 and other in keys
    assert stat.S_IMODE(os.stat(mgr.dir / "db").st_mode) == 0o600


def test_the_stored_environment_is_shown_to_nobody(
        mgr: ManagerHandle, caller: dict[str, str]) -> None:
    """Steps: ``wr add`` a job from the caller's shell (whose CALLER_SECRET is in the
    stored environment), let it run, then read it every way there is. Expected: ``Env`` is
    the override alone; the secret is in no answer, event, page JSON or log line."""
    wr_add(mgr, caller, "echo shown-to-nobody\n", "-i", "secret-env", "--env", "X=1")
    with mgr.client() as c:
        [job] = done(c, "secret-env")
        key = job["Key"]
        [with_env] = c.status(key, env="true", std="true")
        assert with_env["Env"] == ["X=1"]
        seen = [str(c.status("secret-env", env="true")), str(c.details(key, env="true")),
                str(c.info()), str(c.summary("secret-env"))]
    wr_status = mgr.wr("status", "-i", "secret-env", "-o", "d", "--env", check=True)
    assert "Env: [X=1]" in wr_status.stdout
    seen.append(wr_status.stdout + wr_status.stderr)
    with mgr.http() as api:
        for path, params in (("/web/api/group", {"group": "secret-env"}),
                             ("/web/api/jobs", {"group": "secret-env", "state": "complete"}),
                             ("/web/api/search", {"q": "secret-env"}),
                             ("/rest/v1/jobs/", {"env": "true"})):
            seen.append(api.get(path, params=params).text)
        with api.stream("GET", "/rest/v1/events/", params={"after": "0"}) as r:
            for block in blocks(r):
                seen.append(str(block))
                if key in block.get("data", "") and '"complete"' in block.get("data", ""):
                    break
    seen.append(mgr.log())
    assert not [text for text in seen if SECRET in text]
    assert any(key in text for text in seen)


def test_a_stored_environment_outlives_a_restart(manager: ManagerHandle,
                                                 tmp_path: Path) -> None:
    """Steps: add a held job with the client's environment, restart the manager (its
    cache of environments is then empty), let the job run. Expected: it runs with the
    environment, read back from the db."""
    out = tmp_path / "out.txt"
    with manager.client() as c:
        c.add([{"cmd": f'echo "$KEPT" > {out}'}], rep_grp="kept-env",
              limit_grps="kept-hold:0", environment={"PATH": "/usr/bin:/bin", "KEPT": "yes"})
    assert manager.stop().returncode == 0
    manager.start()
    with manager.client() as c:
        c.set_limit("kept-hold", 1)
        [job] = done(c, "kept-env")
    assert job["State"] == "complete", manager.log()
    assert out.read_text() == "yes\n"
