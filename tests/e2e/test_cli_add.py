"""The real ``wr add`` against a real manager (spec cli §1.2).

One manager serves the module; every test uses rep groups named after itself. Jobs that must
stay queued, so that their properties can be read back unchanged, are added in the limit
group ``hold`` whose limit is 0 (``-l hold:0``), so they never start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManagerHandle, running_manager
from wr.jobs import compute_key

pytestmark = pytest.mark.e2e

HOLD = ("-l", "hold:0")


@pytest.fixture(scope="module")
def mgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    with running_manager(tmp_path_factory.mktemp("home")) as handle:
        yield handle


@pytest.fixture(scope="module")
def client(mgr: ManagerHandle) -> Iterator[Any]:
    with mgr.client() as c:
        yield c



def by_cmd(client: Any, rep_grp: str) -> dict[str, dict[str, Any]]:
    return {j["Cmd"]: j for j in client.details(rep_grp)}


def added(n: int, dups: int, default: str | None) -> str:
    suffix = f" using default identifier '{default}'" if default else ""
    return f"info: Added {n} new commands ({dups} were duplicates) to the queue{suffix}\n"


# -- input formats -------------------------------------------------------------------------------

LINES = ('echo {t} plain\n'
         '{{"cmd":"echo {t} json","memory":"50M","rep_grp":"{t}-own","priority":9}}\n'
         '\n'
         'echo {t} tab\t{{"cmd":"ignored","cpus":2.5,"retries":0,"env":["A=1"]}}\r\n')


def check_three_formats(client: Any, t: str, cwd: Path) -> None:
    jobs = by_cmd(client, t)
    assert set(jobs) == {f"echo {t} plain", f"echo {t} tab"}
    plain, tab = jobs[f"echo {t} plain"], jobs[f"echo {t} tab"]
    assert plain["ExpectedRAM"] == 1024 and plain["Cores"] == 1 and plain["Retries"] == 3
    assert plain["ReqGroup"] == "echo" and plain["CwdBase"] == str(cwd)
    assert plain["Behaviours"] == '{"on_exit":[{"cleanup":true}]}'
    assert tab["Cores"] == 2.5 and tab["Retries"] == 0
    own = by_cmd(client, f"{t}-own")[f"echo {t} json"]
    assert own["ExpectedRAM"] == 50 and own["Priority"] == 9


def test_stdin_in_each_line_format(mgr: ManagerHandle, client: Any, tag: str) -> None:
    """Steps: pipe a bare command, a JSON object (own rep group) and command TAB JSON (with a
    CRLF ending and a blank line between) into wr add -i tag.
    Expected: 3 added, the default identifier named (one line lacked its own); each job has
    the options of its line, the flags' defaults otherwise, cwd the current directory."""
    out = mgr.wr("add", "-i", tag, *HOLD, input=LINES.format(t=tag), check=True)
    assert out.stderr == added(3, 0, tag) and out.stdout == ""
    check_three_formats(client, tag, mgr.home)


def test_file_in_each_line_format(mgr: ManagerHandle, client: Any, tag: str,
                                  tmp_path: Path) -> None:
    commands = tmp_path / "cmds.txt"
    commands.write_text(LINES.format(t=tag))
    out = mgr.wr("add", "-f", str(commands), "-i", tag, *HOLD, check=True)
    assert out.stderr == added(3, 0, tag)
    check_three_formats(client, tag, mgr.home)


def test_no_default_identifier_named_when_every_line_has_its_own(mgr: ManagerHandle,
                                                                 tag: str) -> None:
    line = f'{{"cmd":"echo {tag}","rep_grp":"{tag}"}}\n'
    assert mgr.wr("add", *HOLD, input=line, check=True).stderr == added(1, 0, None)


def test_flags_are_defaults_and_lines_win(mgr: ManagerHandle, client: Any, tag: str,
                                         tmp_path: Path) -> None:
    lines = (f"echo {tag} a\n"
             f'echo {tag} b\t{{"memory":"20M","time":"5m","cwd":"/","req_grp":"own",'
             f'"limit_grps":["hold"],"env":["X=2"]}}\n')
    mgr.wr("add", "-i", tag, "-g", "grpx", "-m", "2G", "-t", "30m", "--cpus", "0.5",
           "--disk", "3", "-o", "always", "-p", "200", "-r", "1", "-n", "10m",
           "--cwd", str(tmp_path), "--change_home", "-e", f"{tag}-dg", "-d", f"{tag}-up",
           "--env", "X=1,Y=2", "--on_failure", '[{"run":"echo failed"}]',
           "--modules", "m1,m2", "-l", "hold:0,other", input=lines, check=True)
    jobs = by_cmd(client, tag)
    a, b = jobs[f"echo {tag} a"], jobs[f"echo {tag} b"]
    assert (a["ExpectedRAM"], a["ExpectedTime"], a["Cores"], a["RequestedDisk"]) == (
        2048, 1800, 0.5, 3)
    assert a["ReqGroup"] == "grpx" and a["Priority"] == 200 and a["Retries"] == 1
    assert a["CwdBase"] == str(tmp_path) and a["HomeChanged"] is True
    assert a["DepGroups"] == [f"{tag}-dg"] and a["Dependencies"] == [f"{tag}-up"]
    assert a["Modules"] == ["m1", "m2"]
    assert a["LimitGroups"] == ["hold", "other"]
    assert a["Behaviours"] == ('{"on_failure":[{"run":"echo failed"}],'
                               '"on_exit":[{"cleanup":true}]}')
    env = client.details(a["Key"], env="true")[0]["Env"]
    assert "X=1" in env and "Y=2" in env
    assert (b["ExpectedRAM"], b["ExpectedTime"], b["CwdBase"], b["ReqGroup"]) == (
        20, 300, "/", "own")
    assert b["LimitGroups"] == ["hold"]
    assert "X=2" in client.details(b["Key"], env="true")[0]["Env"]


def test_cwd_matters_is_part_of_the_key(mgr: ManagerHandle, client: Any, tag: str,
                                        tmp_path: Path) -> None:
    cmd = f"echo {tag}"
    mgr.wr("add", "-i", tag, *HOLD, "--cwd", str(tmp_path), "--cwd_matters", input=cmd,
           check=True)
    job = by_cmd(client, tag)[cmd]
    assert job["Key"] == compute_key(cmd, cwd=str(tmp_path), cwd_matters=True)


def test_cmd_deps_in_the_documented_form(mgr: ManagerHandle, client: Any, tag: str) -> None:
    line = f'{{"cmd":"echo {tag}","cmd_deps":[{{"cmd":"echo {tag} up","cwd":""}}]}}'
    mgr.wr("add", "-i", tag, *HOLD, input=line, check=True)
    job = by_cmd(client, tag)[f"echo {tag}"]
    assert job["Dependencies"] == [compute_key(f"echo {tag} up")]


def test_lines_with_the_same_options_each_get_them(mgr: ManagerHandle, client: Any,
                                                  tag: str) -> None:
    """wr add reads an options text that many lines repeat once; each line still gets the
    options, its own command and the flags' defaults."""
    options = f'{{"priority":7,"cmd_deps":[{{"cmd":"echo {tag} up","cwd":""}}]}}'
    lines = "".join(f"echo {tag} {i}\t{options}\n" for i in range(3))
    mgr.wr("add", "-i", tag, *HOLD, "--modules", "m1", input=lines, check=True)
    jobs = by_cmd(client, tag)
    assert sorted(jobs) == [f"echo {tag} {i}" for i in range(3)]
    for job in jobs.values():
        assert job["Priority"] == 7 and job["Modules"] == ["m1"]
        assert job["Dependencies"] == [compute_key(f"echo {tag} up")]


def test_simple_prints_the_ids_of_queued_commands(mgr: ManagerHandle, tag: str) -> None:
    out = mgr.wr("add", "-s", "-i", tag, *HOLD, input=f"echo {tag} 1\necho {tag} 2\n",
                 check=True)
    assert out.stdout.split() == [compute_key(f"echo {tag} 1"), compute_key(f"echo {tag} 2")]
    assert out.stderr == ""


def test_relative_paths_are_warned_about_once(mgr: ManagerHandle, tag: str,
                                             tmp_path: Path) -> None:
    """Steps: in a directory holding data.txt, add two commands that read it by a relative
    path; again with --disable_relative_check; again with --cwd_matters.
    Expected: one warning the first time (the job runs in a new directory), none after."""
    (tmp_path / "data.txt").write_text("x")
    lines = f"cat data.txt # {tag} 1\nwc -l ./data.txt # {tag} 2\n"
    out = mgr.wr("add", "-i", tag, *HOLD, "--cwd", str(tmp_path), input=lines, check=True)
    warning = out.stderr.splitlines()
    assert warning[0] == ("warning: a job may fail because it seems to contain relative "
                          "paths, but the job would run in a newly created unique "
                          "sub-directory.")
    assert warning[3] == added(2, 0, tag).strip() and len(warning) == 4
    for flag in ("--disable_relative_check", "--cwd_matters"):
        out = mgr.wr("add", "-i", tag, *HOLD, "--cwd", str(tmp_path), flag,
                     input=lines.replace(tag, f"{tag}{flag}"), check=True)
        assert out.stderr == added(2, 0, tag)


# -- duplicates --------------------------------------------------------------------------------

def test_duplicates_are_counted(mgr: ManagerHandle, tag: str) -> None:
    """Steps: add two commands, one twice in the same input; add them again with a new one.
    Expected: 2 new (1 duplicate), then 1 new (2 duplicates), nothing queued twice."""
    first = mgr.wr("add", "-i", tag, *HOLD, input=f"echo {tag} 1\necho {tag} 2\n"
                   f"echo {tag} 1\n", check=True)
    assert first.stderr == added(2, 1, tag)
    again = mgr.wr("add", "-i", tag, *HOLD, input=f"echo {tag} 1\necho {tag} 2\n"
                   f"echo {tag} 3\n", check=True)
    assert again.stderr == added(1, 2, tag)


def test_completed_commands_are_duplicates_unless_rerun(mgr: ManagerHandle,
                                                        tag: str) -> None:
    cmd = f"true {tag}"
    mgr.wr("add", "-i", tag, "--sync", input=cmd, check=True)
    assert mgr.wr("add", "-i", tag, input=cmd, check=True).stderr == added(0, 1, tag)
    assert mgr.wr("add", "-i", tag, "--rerun", *HOLD, input=cmd,
                  check=True).stderr == added(1, 0, tag)


# -- --sync ------------------------------------------------------------------------------------

def test_sync_waits_and_exits_with_the_commands_exit_code(mgr: ManagerHandle,
                                                          tag: str) -> None:
    """Steps: wr add --sync a command that prints to both streams and exits 3 (no retries).
    Expected: once it is buried, its stdout on stdout, its stderr on stderr, exit status 3."""
    out = mgr.wr("add", "--sync", "-r", "0", "-i", tag,
                 input=f"echo {tag} out; echo {tag} err >&2; exit 3\n")
    assert out.returncode == 3
    assert out.stdout == f"{tag} out\n" and out.stderr == f"{tag} err\n"


def test_sync_of_a_successful_command(mgr: ManagerHandle, tag: str) -> None:
    out = mgr.wr("add", "--sync", "-i", tag, input=f"echo {tag}\n")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_sync_needs_exactly_one_command(mgr: ManagerHandle, client: Any, tag: str) -> None:
    out = mgr.wr("add", "--sync", "-i", tag, input=f"echo {tag} 1\necho {tag} 2\n")
    assert out.returncode == 1
    assert out.stderr == ("Error: You must add exactly 1 command when using synchronous "
                          "mode.\n")
    assert client.status(tag) == []


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("lines", "message"), [
    ("echo ok\n\necho a\tb\tc\n", "line 3 has too many columns; check `wr add -h`"),
    ('echo ok\n{"cmd": \n', "line 2 had a problem with the JSON: "),
    ("echo ok\n[1]\t[2]\n", "line 2 had a problem with the JSON: expected an object"),
    ('echo ok\n{"memory":"1G"}\n', "line 2 had a problem: cmd was not specified"),
    ('echo ok\necho x\t{"priority":300}\n',
     "line 2 had a problem: priority value (300) is not in the range 0..255"),
    ('echo ok\n{"cmd":"x","memory":"lots"}\n',
     "line 2 had a problem: memory value (lots) was not specified correctly"),
    ('echo ok\n{"cmd":"x","override":3}\n',
     "line 2 had a problem: override value (3) is not in the range 0..2"),
    ("echo ok\necho \x00\n", "line 2 had a problem: it contains a NUL character"),
])
def test_a_bad_line_is_named_and_nothing_is_added(mgr: ManagerHandle, client: Any,
                                                  tag: str, lines: str,
                                                  message: str) -> None:
    out = mgr.wr("add", "-i", tag, *HOLD, input=lines)
    assert out.returncode == 1
    assert out.stderr.startswith(f"Error: {message}") and out.stderr.count("\n") == 1
    assert client.status(tag) == []


def test_a_bad_line_after_the_first_batch_is_named_before_anything_is_sent(
        mgr: ManagerHandle, client: Any, tag: str) -> None:
    # More lines than one request takes: the batches are separate steps on the manager, so
    # every line is checked before the first is sent.
    from wr.cli.add import BATCH

    lines = "".join(f"true {i}\n" for i in range(BATCH)) + '{"cmd":"x","priority":300}\n'
    out = mgr.wr("add", "-i", tag, *HOLD, input=lines)
    assert out.returncode == 1
    assert out.stderr == (f"Error: line {BATCH + 1} had a problem: priority value (300) is "
                          "not in the range 0..255\n")
    assert set(client.counts(tag).values()) == {0}


def test_bad_utf8_is_named(mgr: ManagerHandle, tag: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"echo ok\necho \xff\n")
    out = mgr.wr("add", "-f", str(bad), "-i", tag)
    assert out.returncode == 1
    assert out.stderr == "Error: line 2 had a problem: it is not valid UTF-8 text\n"


@pytest.mark.parametrize(("args", "code", "message"), [
    (("-o", "sometimes"), 1, "Error: invalid override value"),
    (("-m", "5Q"), 2, "Invalid value for '-m' / '--memory': '5Q' was not specified"),
    (("-t", "soon"), 2, "Invalid value for '-t' / '--time'"),
    (("-p", "256"), 2, "Invalid value for '-p' / '--priority'"),
    (("-r", "-1"), 2, "Invalid value for '-r' / '--retries'"),
    (("--cpus", "-1"), 2, "Invalid value for '--cpus'"),
    (("--cmd_deps", "a,b,c"), 1,
     "Error: --cmd_deps must have an even number of comma-separated entries"),
    (("--on_exit", "[{"), 1, "Error: bad --on_exit: "),
    (("--on_failure", '[{"run":5}]'), 1, "Error: behaviour run in on_failure must be"),
    (("--env", "NOEQUALS"), 1, "Error: env value (NOEQUALS) is not of the form NAME=VALUE"),
    (("--with_docker", "a", "--with_singularity", "b"), 1,
     "Error: --with_docker and --with_singularity are mutually exclusive"),
    (("--mounts", "xr:bucket"), 1, "Error: 'xr:bucket' did not start with c or u"),
    (("-f", "/no/such/file"), 1, "Error: could not open file '/no/such/file': "),
    (("extra",), 2, "Got unexpected extra argument (extra)"),
    # issue 13: the manager's own words, for what no job may ask for
    (("--cwd", "rel/dir"), 1,
     "Error: cwd value (rel/dir) is not an absolute path: give one that starts with /"),
    (("-t", "-1h"), 1, "Error: time value (-1h) must not be negative"),
    (("-n", "-5m"), 1, "Error: no_retry_over_walltime value (-5m) must not be negative"),
    (("-l", "big:9223372036854775808"), 1, "Error: limit group 'big:9223372036854775808': "
     "limit 9223372036854775808 is out of range: a limit is an integer from -1 (which "
     "removes the limit) to 9223372036854775807"),
])
def test_bad_flags_give_one_line_errors(mgr: ManagerHandle, client: Any, tag: str,
                                        args: tuple[str, ...], code: int,
                                        message: str) -> None:
    out = mgr.wr("add", "-i", tag, *args, input=f"echo {tag}\n")
    assert out.returncode == code, out.stderr
    assert message in out.stderr and out.stderr.strip().splitlines()[-1].startswith("Error")
    assert client.status(tag) == []


def test_no_manager_is_a_one_line_error(make_manager: Any) -> None:
    m = make_manager()
    out = m.wr("add", input="echo hi\n")
    assert out.returncode == 1
    assert out.stderr.startswith("Error: could not read token file; has the manager been "
                                 "started?") and out.stderr.count("\n") == 1


def test_every_option_has_help(mgr: ManagerHandle) -> None:
    from wr.cli.add import add

    for param in add.params:
        assert getattr(param, "help", None), param.name
    out = mgr.wr("add", "--help", check=True).stdout
    assert "Usage: wr add [OPTIONS]" in out and "--rep_grp" in out and "--sync" in out


def test_lines_that_would_wait_for_each_other_are_refused(mgr: ManagerHandle, client: Any,
                                                          tag: str) -> None:
    """Two lines whose jobs wait for each other's dep groups: nothing added, and the error
    names both jobs (issue 13)."""
    lines = (f'{{"cmd":"echo {tag} a","dep_grps":["{tag}-a"],"deps":["{tag}-b"]}}\n'
             f'{{"cmd":"echo {tag} b","dep_grps":["{tag}-b"],"deps":["{tag}-a"]}}\n')
    out = mgr.wr("add", "-i", tag, input=lines)
    assert out.returncode == 1, out.stderr
    [error] = out.stderr.strip().splitlines()
    assert error.startswith("Error: these jobs would wait for each other in a cycle")
    assert f"{compute_key(f'echo {tag} a')} (echo test-lines-" in error
    assert f"{compute_key(f'echo {tag} b')} (echo test-lines-" in error
    assert error.endswith("; nothing was added")
    assert client.status(tag) == []
