"""The real ``wr kill``, ``wr retry``, ``wr remove`` and ``wr mod`` against a real manager.

One manager serves the module. Jobs are added through the Python client (``wr add`` is not
what is under test here) and checked over REST; every test uses rep groups named after
itself. Jobs that must stay queued without running sit in a limit group whose limit is 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ManagerHandle, running_manager, wait_for
from wr.jobs import compute_key

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    with running_manager(tmp_path_factory.mktemp("home")) as handle:
        yield handle


@pytest.fixture(scope="module")
def client(mgr: ManagerHandle) -> Iterator[Any]:
    with mgr.client() as c:
        yield c



def jobs_of(client: Any, rep_grp: str) -> dict[str, dict[str, Any]]:
    """Status of a rep group's jobs (complete ones too), by command."""
    return {j["Cmd"]: j for j in client.status(rep_grp)}


def wait_states(client: Any, rep_grp: str, want: dict[str, str], timeout: float = 30
                ) -> dict[str, dict[str, Any]]:
    def reached() -> dict[str, dict[str, Any]] | None:
        found = jobs_of(client, rep_grp)
        ok = all(cmd in found and found[cmd]["State"] == st for cmd, st in want.items())
        return found if ok else None

    return wait_for(reached, timeout, 0.1, f"{rep_grp} to reach {want}")


def held(tag: str, *cmds: str, **extra: Any) -> list[dict[str, Any]]:
    """Job objects that stay queued: their limit group allows no job to run."""
    return [{"cmd": c, "cpus": 0, "limit_grps": [f"{tag}-hold:0"], **extra} for c in cmds]


def test_kill_running_job(mgr: ManagerHandle, client: Any, tag: str) -> None:
    """Steps: add `sleep 100`; wait until it runs; `wr kill -i`; kill again.
    Expected: wr's message; the job ends buried "killed by user request" and its process is
    gone; the second kill finds nothing to kill and exits 1."""
    client.add([{"cmd": f"sleep 100 # {tag}", "cpus": 0}], rep_grp=tag)
    job = wait_states(client, tag, {f"sleep 100 # {tag}": "running"})[f"sleep 100 # {tag}"]
    pid = wait_for(lambda: client.status(tag)[0]["Pid"], 10, 0.05, "the job's pid")
    assert psutil.pid_exists(pid)
    out = mgr.wr("kill", "-i", tag, check=True)
    assert out.stderr == ("info: Initiated the termination of 1 running commands "
                          "(out of 1 eligible)\n")
    job = wait_states(client, tag, {f"sleep 100 # {tag}": "buried"})[f"sleep 100 # {tag}"]
    assert job["FailReason"] == "killed by user request"

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, 10, 0.05, f"process {pid} to end")
    again = mgr.wr("kill", "-i", tag)
    assert (again.returncode, again.stderr) == (1, "Error: No matching jobs found\n")
    mgr.wr("remove", "-i", tag, check=True)


def test_kill_age_keeps_young_jobs(mgr: ManagerHandle, client: Any, tag: str) -> None:
    """Steps: add `sleep 100`; when it runs, `wr kill -a --age 1h`.
    Expected: wr's "No matching jobs were older than 1h"; the job still runs."""
    cmd = f"sleep 100 # {tag}"
    client.add([{"cmd": cmd, "cpus": 0}], rep_grp=tag)
    wait_states(client, tag, {cmd: "running"})
    out = mgr.wr("kill", "-l", cmd, "--age", "1h")
    assert (out.returncode, out.stderr) == (1, "Error: No matching jobs were older than 1h\n")
    assert jobs_of(client, tag)[cmd]["State"] == "running"
    mgr.wr("kill", "-l", cmd, check=True)
    wait_states(client, tag, {cmd: "buried"})
    mgr.wr("remove", "-i", tag, check=True)


def test_retry_buried_job_runs_again(mgr: ManagerHandle, client: Any, tag: str,
                                     tmp_path: Path) -> None:
    """Steps: add a job that fails on its first run only, with no retries; `wr retry -i`.
    Expected: it is buried after one attempt; retry says 1 of 1; it runs again and
    completes (2 attempts); a second retry finds nothing buried."""
    cmd = f"if [ -e {tmp_path}/ran ]; then exit 0; else touch {tmp_path}/ran; exit 1; fi"
    client.add([{"cmd": cmd, "cpus": 0, "retries": 0}], rep_grp=tag)
    job = wait_states(client, tag, {cmd: "buried"})[cmd]
    assert (job["Attempts"], job["Exitcode"]) == (1, 1)
    out = mgr.wr("retry", "-i", tag, check=True)
    assert out.stderr == "info: Initiated retry of 1 buried commands (out of 1 eligible)\n"
    job = wait_states(client, tag, {cmd: "complete"})[cmd]
    assert job["Attempts"] == 2
    again = mgr.wr("retry", "-i", tag)
    assert (again.returncode, again.stderr) == (1, "Error: No matching jobs found\n")


def test_retry_by_substring_and_key(mgr: ManagerHandle, client: Any, tag: str) -> None:
    """Steps: bury jobs in two rep groups sharing a substring; `wr retry -z` on the
    substring, then bury again and `wr retry -y` on one key.
    Expected: 2 of 2, then 1 of 1."""
    client.add([{"cmd": f"exit 3 # {tag} a", "cpus": 0, "rep_grp": f"{tag}-a"},
                {"cmd": f"exit 3 # {tag} b", "cpus": 0, "rep_grp": f"{tag}-b"}], retries=0)
    wait_states(client, f"{tag}-a", {f"exit 3 # {tag} a": "buried"})
    wait_states(client, f"{tag}-b", {f"exit 3 # {tag} b": "buried"})
    out = mgr.wr("retry", "-i", tag, "-z", check=True)
    assert out.stderr == "info: Initiated retry of 2 buried commands (out of 2 eligible)\n"
    key = wait_states(client, f"{tag}-a", {f"exit 3 # {tag} a": "buried"})[
        f"exit 3 # {tag} a"]["Key"]
    wait_states(client, f"{tag}-b", {f"exit 3 # {tag} b": "buried"})
    out = mgr.wr("retry", "-i", key, "-y", check=True)
    assert out.stderr == "info: Initiated retry of 1 buried commands (out of 1 eligible)\n"
    wait_states(client, f"{tag}-a", {f"exit 3 # {tag} a": "buried"})
    mgr.wr("remove", "-i", tag, "-z", check=True)


def test_remove_buried_then_the_rest(mgr: ManagerHandle, client: Any, tag: str) -> None:
    """Steps: one buried and two held jobs; `wr remove -b -i`; then `wr remove -i`.
    Expected: -b removes only the buried one; then the two others go; nothing is left."""
    client.add([{"cmd": f"exit 1 # {tag}", "cpus": 0, "retries": 0},
                *held(tag, f"true # {tag} 1", f"true # {tag} 2")], rep_grp=tag)
    wait_states(client, tag, {f"exit 1 # {tag}": "buried", f"true # {tag} 1": "ready"})
    out = mgr.wr("remove", "-b", "-i", tag, check=True)
    assert out.stderr == "info: Removed 1 buried commands (out of 1 eligible)\n"
    assert sorted(jobs_of(client, tag)) == [f"true # {tag} 1", f"true # {tag} 2"]
    out = mgr.wr("remove", "-i", tag, check=True)
    assert out.stderr == ("info: Removed 2 incomplete, non-running commands "
                          "(out of 2 eligible)\n")
    assert jobs_of(client, tag) == {}


def test_remove_by_file_and_cmdline(mgr: ManagerHandle, client: Any, tag: str,
                                    tmp_path: Path) -> None:
    """Steps: four held jobs, one added with cwd_matters; `wr remove -f FILE` naming three
    of them in the three `wr add` line formats (the cwd_matters one by its cwd); then
    `wr remove -l CMD -c DIR` cannot find an already-removed job; `-l` removes the last.
    Expected: 3 of 3 removed by file, then "No matching jobs found", then 1 of 1."""
    cwd = str(tmp_path)
    client.add([*held(tag, f"echo {tag} 1", f"echo {tag} 2", f"echo {tag} 4"),
                *held(tag, f"echo {tag} 3", cwd=cwd, cwd_matters=True)], rep_grp=tag)
    wait_states(client, tag, {f"echo {tag} 1": "ready", f"echo {tag} 3": "ready"})
    listing = tmp_path / "cmds.txt"
    listing.write_text(
        f"echo {tag} 1\n"
        f'{{"cmd": "echo {tag} 2", "memory": "1G"}}\n'
        "\n"
        f'echo {tag} 3\t{{"cwd": "{cwd}", "cwd_matters": true}}\n')
    out = mgr.wr("remove", "-f", str(listing), check=True)
    assert out.stderr == ("info: Removed 3 incomplete, non-running commands "
                          "(out of 3 eligible)\n")
    assert sorted(jobs_of(client, tag)) == [f"echo {tag} 4"]
    gone = mgr.wr("remove", "-l", f"echo {tag} 3", "-c", cwd)
    assert (gone.returncode, gone.stderr) == (1, "Error: No matching jobs found\n")
    out = mgr.wr("remove", "-l", f"echo {tag} 4", check=True)
    assert "Removed 1 incomplete, non-running commands (out of 1 eligible)" in out.stderr


def test_mod_requirements_and_key(mgr: ManagerHandle, client: Any, tag: str) -> None:
    """Steps: two held jobs; `wr mod -i` their memory, time, priority and retries; then
    `wr mod -i KEY -y --cmdline` of one; then `wr mod --limit_grps ""` to let them run.
    Expected: wr's "Modified 2 ... (out of 2 eligible)" with " key => key" lines and the
    new requirements in REST; the new command has the key wr computes for it, printed as
    " old => new"; once out of the held limit group, both run to completion."""
    a, b = f"echo {tag} a", f"echo {tag} b"
    added = client.add(held(tag, a, b), rep_grp=tag)
    keys = {j["Cmd"]: j["Key"] for j in added}
    out = mgr.wr("mod", "-i", tag, "--memory", "2G", "--time", "2h", "--priority", "5",
                 "-r", "1", check=True)
    assert out.stderr == ("info: Modified 2 incomplete, non-running commands "
                          "(out of 2 eligible)\n")
    assert sorted(out.stdout.splitlines()) == sorted(f" {k} => {k}" for k in keys.values())
    found = jobs_of(client, tag)
    assert {(j["ExpectedRAM"], j["ExpectedTime"]) for j in found.values()} == {(2048, 7200)}

    many = mgr.wr("mod", "-i", tag, "--cmdline", "echo other")
    assert many.returncode == 1 and "2 jobs matched" in many.stderr

    new_cmd = f"echo {tag} c"
    new_key = compute_key(new_cmd)
    out = mgr.wr("mod", "-i", keys[a], "-y", "--cmdline", new_cmd, check=True)
    assert out.stdout == f" {keys[a]} => {new_key}\n"
    found = jobs_of(client, tag)
    assert sorted(found) == [b, new_cmd]
    assert found[new_cmd]["Key"] == new_key and found[new_cmd]["ExpectedRAM"] == 2048

    out = mgr.wr("mod", "-i", tag, "--limit_grps", "", check=True)
    assert "Modified 2" in out.stderr
    wait_states(client, tag, {b: "complete", new_cmd: "complete"})


def test_mod_cwd_matters_changes_key(mgr: ManagerHandle, client: Any, tag: str,
                                     tmp_path: Path) -> None:
    """Steps: a held job added with cwd_matters; `wr mod --unset_cwd_matters`.
    Expected: its key becomes the one without the cwd; the old key is gone."""
    cmd = f"echo {tag}"
    [job] = client.add(held(tag, cmd, cwd=str(tmp_path), cwd_matters=True), rep_grp=tag)
    assert job["Key"] == compute_key(cmd, cwd=str(tmp_path), cwd_matters=True)
    out = mgr.wr("mod", "-i", tag, "--unset_cwd_matters", check=True)
    assert out.stdout == f" {job['Key']} => {compute_key(cmd)}\n"
    assert [j["Key"] for j in client.status(tag)] == [compute_key(cmd)]
    mgr.wr("remove", "-i", tag, check=True)


def test_mod_refuses_what_add_refuses(mgr: ManagerHandle, client: Any, tag: str) -> None:
    """Issue 13: a relative cwd, a negative time, a limit out of range and dependencies that
    would close a cycle are one-line errors, and the jobs stay as they were."""
    up, down = f"echo {tag} up", f"echo {tag} down"
    client.add(held(tag, up, dep_grps=[f"{tag}-up"]), rep_grp=tag)
    client.add(held(tag, down, dep_grps=[f"{tag}-down"], deps=[f"{tag}-up"]), rep_grp=tag)
    before = jobs_of(client, tag)
    for args, message in [
        (["--cwd", "rel"], "cwd value (rel) is not an absolute path: give one that starts "
         "with /"),
        (["-t", "-1h"], "time value (-1h) must not be negative"),
        (["-l", "x:-2"], "limit group 'x:-2': limit -2 is out of range"),
    ]:
        out = mgr.wr("mod", "-i", tag, *args)
        assert out.returncode == 1, out.stderr
        assert out.stderr.startswith("Error: there was a problem interpreting your job: "
                                     + message), out.stderr
    out = mgr.wr("mod", "-i", compute_key(up), "-y", "-d", f"{tag}-down")
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("Error: these jobs would wait for each other in a cycle")
    assert out.stderr.strip().endswith("; nothing was modified")
    assert jobs_of(client, tag) == before
    mgr.wr("remove", "-i", tag, check=True)


@pytest.mark.parametrize(("args", "message"), [
    (["kill"], "Error: 1 of -f, -i, -l or -a is required"),
    (["retry", "-i", "x", "-a"],
     "Error: -f, -i, -l and -a are mutually exclusive; only specify one of them"),
    (["remove", "-l", "x", "-f", "y"],
     "Error: -f, -i, -l and -a are mutually exclusive; only specify one of them"),
    (["retry", "-z", "-a"], "Error: -z and -y require -i"),
    (["kill", "-a", "--age", "soon"], "Error: Invalid value for --age: 'soon'"),
    (["remove", "-f", "/nonexistent/file"], "Error: could not open file '/nonexistent/file'"),
    (["kill", "-i", "x", "-c", "/tmp"], "only apply to commands given by -l or -f"),
    (["retry", "-l", "true", "-j", "[oops"], "had a problem with the provided mount JSON"),
    (["mod", "--priority", "3"], "Error: one of -i or -a is required"),
    (["mod", "-a", "-i", "x", "--priority", "3"], "Error: -a and -i are mutually exclusive"),
    (["mod", "-a", "--cmdline", "x"], "Error: -a is not compatible with --cmdline"),
    (["mod", "-a"], "Error: nothing to modify"),
    (["mod", "-a", "--priority", "256"], "Error: Invalid value for '-p' / '--priority'"),
    (["mod", "-a", "--memory", "lots"], "Error: Invalid value for '-m' / '--memory'"),
    (["mod", "-a", "--on_exit", "[{"], "Error: Invalid value for '--on_exit'"),
    (["mod", "-a", "--cmd_deps", "a,b,c"],
     "Error: --cmd_deps must have an even number of comma-separated entries"),
    (["mod", "-a", "--cwd_matters", "--unset_cwd_matters"], "contradict each other"),
])
def test_bad_input_is_one_line_error(mgr: ManagerHandle, args: list[str], message: str
                                     ) -> None:
    out = mgr.wr(*args)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr


def test_bad_file_line_names_the_line(mgr: ManagerHandle, tmp_path: Path) -> None:
    listing = tmp_path / "cmds.txt"
    listing.write_text('true\n{"cmd": "x", "memory": "lots"}\n')
    out = mgr.wr("kill", "-f", str(listing))
    assert out.returncode == 1
    assert out.stderr.startswith("Error: line 2 had a problem: memory value (lots)")
    listing.write_text("true\na\tb\tc\n")
    out = mgr.wr("retry", "-f", str(listing))
    assert out.stderr == "Error: line 2 has too many columns; check `wr add -h`\n"
    listing.write_text("true\n{oops\n")
    out = mgr.wr("remove", "-f", "-", input=listing.read_text())
    assert out.stderr.startswith("Error: line 2 had a problem with the JSON:")


def test_commands_have_help(mgr: ManagerHandle) -> None:
    for verb in ("kill", "retry", "remove", "mod", "limit"):
        out = mgr.wr(verb, "--help", check=True)
        assert f"Usage: wr {verb}" in out.stdout
