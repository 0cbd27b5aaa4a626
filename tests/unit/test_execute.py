"""Tests for wr.execute (and wr.capture): real bash commands, real process trees."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from wr.capture import KEEP_BYTES, StreamCapture, filter_output
from wr.execute import (
    EXECUTION_ID_VAR,
    ExecResult,
    ExecSetupError,
    ExecSpec,
    Execution,
    Marks,
    Outcome,
    command_line,
    decide_outcome,
    job_environment,
    make_unique_dir,
    remove_unique_dir,
)
from wr.jobs import FailReason

KEY = "ea4266bc0fc7dd493caeb2fff1963e4a"
PY = sys.executable


def make_spec(base: Path, cmd: str, **changes) -> ExecSpec:
    values = dict(
        key=KEY,
        cmd=cmd,
        cwd=str(base),
        cwd_matters=False,
        change_home=False,
        env_override=[],
        base_env=None,
        expected_ram_mb=1024,
        expected_time_s=3600.0,
        retries_left=3,
        no_retry_over_walltime_s=0.0,
        modules=[],
        behaviours=[],
        monitor_interval=0.1,
    )
    values.update(changes)
    return ExecSpec(**values)


def execute(spec: ExecSpec) -> ExecResult:
    async def go() -> ExecResult:
        execution = Execution(spec)
        await execution.start()
        return await execution.wait()

    return asyncio.run(go())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` on the event loop until it is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def read_pids(path: Path, count: int, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().split()
            if len(lines) >= count:
                return [int(x) for x in lines]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never listed {count} pids")


# ------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"plain\nlines\n", "plain\nlines"),
        (b"a\rb\rc\r\n", "a\n[...]\nc"),
        (b"a\rb\rc\n", "a\nb"),
        (b"abc\r\nnext\n", "abcnext"),  # wr quirk: one \r loses the newline
        (b"0%\r10%\r20%\r30%\r\ndone\n", "0%\n[...]\n30%\ndone"),
        (b"x\r", "x"),  # unterminated chunk at EOF still filtered
        (b"  \n spaced \n\n", "spaced"),
        (b"\xff\xfeok", "\ufffd\ufffdok"),
    ],
)
def test_progress_filter(data: bytes, expected: str) -> None:
    assert filter_output(data) == expected
    # Fed a byte at a time, the stream filter gives the same answer.
    capture = StreamCapture()
    for i in range(len(data)):
        capture.feed(data[i : i + 1])
    assert capture.text() == expected


def test_head_and_tail_are_kept_with_an_omitting_line() -> None:
    data = b"".join(b"%05d\n" % i for i in range(5000))  # 30000 bytes
    text = filter_output(data)
    head, gap, tail = re.split(r"\n(\.\.\. omitting \d+ bytes \.\.\.)\n", text)
    assert gap == f"... omitting {len(data) - 2 * KEEP_BYTES} bytes ..."
    assert data.decode().startswith(head)
    assert data.decode().strip().endswith(tail)
    assert len(head) == KEEP_BYTES


def test_capture_memory_is_bounded_for_a_huge_redrawn_line() -> None:
    capture = StreamCapture()
    chunk = b"y" * 65536
    for _ in range(100):
        capture.feed(b"s0" + b"\r" + chunk * 3 + b"\r" + chunk)
    capture.feed(b"\n")
    for piece in (capture._out, capture._prev, capture._cur):
        if piece is not None:
            assert len(piece.head) + len(piece.tail) <= 2 * KEEP_BYTES
    text = capture.text()
    assert text.startswith("s0\n[...]\nyyyy") and "omitting" in text


def test_decide_outcome_table() -> None:
    def decide(code: int, walltime: float = 1.0, retries: int = 1, limit: float = 0.0, **m):
        outcome, reason = decide_outcome(code, Marks(**m), walltime, retries, limit)
        return outcome, reason

    assert decide(0, user_killed=True) == (Outcome.ARCHIVE, "")
    assert decide(126) == (Outcome.BURY, "command permission problem")
    assert decide(127) == (Outcome.BURY, "command not found")
    assert decide(128) == (Outcome.BURY, "command invalid exit code")
    assert decide(-1, stopped=True, user_killed=True) == (Outcome.INTERRUPTED, "")
    assert decide(-1, user_killed=True, over_ram=True) == (Outcome.BURY, "killed by user request")
    assert decide(1, over_ram=True, out_of_disk=True) == (Outcome.RELEASE, FailReason.RAM)
    assert decide(1, out_of_disk=True) == (Outcome.RELEASE, "ran out of disk space")
    assert decide(-1, signalled=True, over_time=True) == (
        Outcome.RELEASE,
        "command used too much time",
    )
    assert decide(-1, signalled=True) == (Outcome.RELEASE, "runner received a signal to stop")
    assert decide(1, walltime=5, retries=1, limit=2) == (Outcome.BURY, FailReason.EXIT)
    assert decide(1, walltime=5, retries=0, limit=2) == (Outcome.RELEASE, FailReason.EXIT)
    assert decide(1, walltime=1, retries=1, limit=2) == (Outcome.RELEASE, FailReason.EXIT)


def test_command_line() -> None:
    assert command_line("echo a") == "echo a"
    assert command_line("a | b") == "set -o pipefail; a | b"
    assert command_line("a|b") == "a|b"
    assert (
        command_line("x | y", ["samtools/1.0", "my mod"])
        == "set -o pipefail; module load --force samtools/1.0 'my mod'; x | y"
    )


def test_job_environment_replaces_in_place_and_appends() -> None:
    env = job_environment({"A": "1", "B": "2"}, ["B=x=y", "C=3", "A="])
    assert list(env.items()) == [("A", ""), ("B", "x=y"), ("C", "3")]
    with pytest.raises(ExecSetupError) as info:
        job_environment({}, ["NOEQUALS"])
    assert info.value.fail_reason == "failed to get environment variables"
    assert info.value.outcome == "bury"


def test_unique_dir_cleanup_stops_at_base(tmp_path: Path) -> None:
    one = make_unique_dir(str(tmp_path), "wr", KEY)
    two = make_unique_dir(str(tmp_path), "wr", KEY)
    assert one != two
    remove_unique_dir(one, str(tmp_path))
    assert not os.path.exists(one) and os.path.isdir(two)
    remove_unique_dir(two, str(tmp_path))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------- real commands


def test_success_with_stdout_and_unique_cwd(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, 'pwd; echo "$TMPDIR"; echo "$HOME"; echo err >&2', change_home=True)
    result = execute(spec)
    assert result.outcome == "archive" and result.fail_reason == "" and result.exitcode == 0
    cwd, tmpdir, home = result.stdout.splitlines()
    assert result.stderr == "err"
    pattern = rf"{re.escape(str(tmp_path))}/wr_cwd/e/a/4/{KEY[3:]}\d+/cwd"
    assert re.fullmatch(pattern, result.actual_cwd)
    assert cwd == home == result.actual_cwd
    assert tmpdir == os.path.join(os.path.dirname(result.actual_cwd), "tmp")
    assert os.path.isdir(result.actual_cwd) and not os.path.exists(tmpdir)
    assert not os.path.exists(os.path.join(os.path.dirname(os.path.dirname(cwd)), ".hold"))
    assert result.pid > 0 and result.peak_ram_mb >= 1
    assert result.started <= result.ended and result.walltime >= 0
    assert result.remove_requested is False


def test_non_zero_exit_releases(tmp_path: Path) -> None:
    result = execute(make_spec(tmp_path, "echo mymsg && false"))
    assert (result.outcome, result.fail_reason, result.exitcode) == (
        "release",
        "command exited non-zero",
        1,
    )
    assert result.stdout == "mymsg"


def test_not_found_and_permission_problems_bury(tmp_path: Path) -> None:
    result = execute(make_spec(tmp_path, "wr_no_such_command_here"))
    assert (result.outcome, result.fail_reason, result.exitcode) == (
        "bury",
        "command not found",
        127,
    )
    assert "not found" in result.stderr
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = execute(make_spec(tmp_path, str(script)))
    assert (result.outcome, result.fail_reason, result.exitcode) == (
        "bury",
        "command permission problem",
        126,
    )


def test_cwd_matters_runs_in_cwd_and_keeps_tmpdir(tmp_path: Path) -> None:
    base = tmp_path / "made" / "here"
    env = {"PATH": os.environ["PATH"], "TMPDIR": "/keep/me", "HOME": "/home/x"}
    spec = make_spec(
        base, 'pwd; echo "$TMPDIR $HOME"', cwd_matters=True, change_home=True, base_env=env
    )
    result = execute(spec)
    assert result.outcome == "archive"
    assert result.stdout.splitlines() == [str(base), "/keep/me /home/x"]
    assert result.actual_cwd == ""
    assert os.listdir(base) == []


def test_missing_cwd_that_cannot_be_made_buries(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    async def go() -> None:
        await Execution(make_spec(tmp_path / "file" / "sub", "true")).start()

    with pytest.raises(ExecSetupError) as info:
        asyncio.run(go())
    assert (info.value.fail_reason, info.value.outcome) == (
        "working directory does not exist",
        "bury",
    )


def test_shell_that_cannot_start_releases(tmp_path: Path) -> None:
    async def go() -> None:
        await Execution(make_spec(tmp_path, "true", shell="/no/such/shell")).start()

    with pytest.raises(ExecSetupError) as info:
        asyncio.run(go())
    assert (info.value.fail_reason, info.value.outcome) == ("command failed to start", "release")
    assert os.listdir(tmp_path) == []  # the unused unique dir went away again


def test_env_override_replaces_and_appends(tmp_path: Path) -> None:
    base = {"PATH": os.environ["PATH"], "A": "1", "B": "2"}
    spec = make_spec(
        tmp_path,
        'echo "$A $B $C ${' + EXECUTION_ID_VAR + '%%.*}"',
        base_env=base,
        env_override=["A=x", "C=3=4"],
    )
    assert execute(spec).stdout == f"x 2 3=4 {KEY}"


def test_progress_bars_and_truncation_from_a_real_command(tmp_path: Path) -> None:
    cmd = r"printf 'a\rb\rc\r\n'; seq 1 20000; printf 'x\ry\rz\n' >&2"
    result = execute(make_spec(tmp_path, cmd))
    assert result.stdout.startswith("a\n[...]\nc\n1\n2\n")
    assert "\n... omitting " in result.stdout and result.stdout.endswith("19999\n20000")
    assert result.stderr == "x\ny"


def test_fifty_megabytes_on_both_streams(tmp_path: Path) -> None:
    size = 50_000_000
    cmd = f"head -c {size} /dev/zero | tr '\\0' o >&2 & head -c {size} /dev/zero | tr '\\0' e; wait"
    result = execute(make_spec(tmp_path, cmd))
    assert result.outcome == "archive"
    omitted = f"\n... omitting {size - 2 * KEEP_BYTES} bytes ...\n"
    assert result.stdout == "e" * KEEP_BYTES + omitted + "e" * KEEP_BYTES
    assert result.stderr == "o" * KEEP_BYTES + omitted + "o" * KEEP_BYTES


def test_peak_memory_of_a_child_and_too_much_ram(tmp_path: Path) -> None:
    script = "import time; b = b'x' * (100 * 1024 * 1024); time.sleep(0.4)"
    result = execute(make_spec(tmp_path, f'{PY} -c "{script}"; exit 3', expected_ram_mb=50))
    assert result.peak_ram_mb >= 90
    assert (result.outcome, result.fail_reason, result.exitcode) == (
        "release",
        "command used too much RAM",
        3,
    )


def test_cpu_time_of_a_busy_loop(tmp_path: Path) -> None:
    script = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    result = execute(make_spec(tmp_path, f"{PY} -c '{script}'"))
    assert result.outcome == "archive"
    assert result.cpu_time > 0.2


def test_peak_disk_counts_small_files(tmp_path: Path) -> None:
    cmd = "for i in $(seq 1 40); do head -c 100000 /dev/zero > f$i; done; sleep 0.3"
    result = execute(make_spec(tmp_path, cmd))
    assert result.peak_disk_mb == 4  # 4,000,000 bytes, rounded up


def test_pipefail(tmp_path: Path) -> None:
    assert execute(make_spec(tmp_path, "false | true")).exitcode == 1
    assert execute(make_spec(tmp_path, "false|true")).exitcode == 0


def test_no_retry_over_walltime_buries(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "sleep 0.2; exit 2", retries_left=2, no_retry_over_walltime_s=0.1)
    result = execute(spec)
    assert (result.outcome, result.fail_reason) == ("bury", "command exited non-zero")


def test_user_kill_leaves_no_process_behind(tmp_path: Path) -> None:
    """Steps: a command backgrounds sleeps in its group, in a subshell that exits (orphaning
    its child), and in a new session via setsid (a double fork), writing each pid to a file.
    Expect: kill("user") buries the job with exit -1 and none of those processes survive."""
    pids = tmp_path / "pids"
    cmd = (
        f"sleep 100 & echo $! >> {pids}\n"
        f"( sleep 100 & echo $! >> {pids} )\n"
        f"setsid bash -c 'sleep 100 & echo $! >> {pids}'\n"
        f"bash -c 'set -m; sleep 100 & echo $! >> {pids}; wait' &\n"
        "echo started\n"
        "sleep 100; wait"
    )

    async def go() -> tuple[ExecResult, list[int]]:
        execution = Execution(make_spec(tmp_path / "base", cmd))
        await execution.start()
        found = await read_pids(pids, 4)
        execution.kill("user")
        return await execution.wait(), found

    result, found = asyncio.run(go())
    assert (result.outcome, result.fail_reason, result.exitcode) == (
        "bury",
        "killed by user request",
        -1,
    )
    assert result.stdout == "started"
    assert [pid for pid in [result.pid, *found] if alive(pid)] == []


def test_stop_kill_is_interrupted_and_leaves_no_directory(tmp_path: Path) -> None:
    """Issue 13, item 11: a job put back by a stop runs again in a directory of its own, so
    the one it had is removed (with its empty parents), though no cleanup behaviour ran."""
    async def go() -> ExecResult:
        spec = make_spec(tmp_path, "echo $$; touch out; sleep 100")
        execution = Execution(spec)
        await execution.start()
        await until(lambda: os.path.exists(os.path.join(execution.actual_cwd, "out")),
                    "the command to write in its directory")
        execution.kill("stop")
        return await execution.wait()

    result = asyncio.run(go())
    assert (result.outcome, result.fail_reason, result.exitcode) == ("interrupted", "", -1)
    assert result.actual_cwd.startswith(str(tmp_path))
    assert not os.path.exists(os.path.dirname(result.actual_cwd))
    assert not (tmp_path / "wr_cwd").exists()


@pytest.mark.parametrize(
    "expected_time, reason",
    [(3600.0, "runner received a signal to stop"), (0.05, "command used too much time")],
)
def test_signal_kill_releases(tmp_path: Path, expected_time: float, reason: str) -> None:
    async def go() -> ExecResult:
        execution = Execution(make_spec(tmp_path, "sleep 100", expected_time_s=expected_time))
        await execution.start()
        await asyncio.sleep(0.15)  # past 0.05 s: the time it ran is what the test is about
        execution.kill("signal")
        return await execution.wait()

    result = asyncio.run(go())
    assert (result.outcome, result.fail_reason) == ("release", reason)


def test_behaviours_run_cleanup_and_remove(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    base = tmp_path / "base"
    behaviours = [
        {"when": "on_success", "do": "run", "arg": f"echo success >> {marker}"},
        {"when": "on_failure", "do": "run", "arg": f"pwd >> {marker}; echo boom; exit 4"},
        {"when": "on_failure", "do": "remove"},
        {"when": "on_exit", "do": "run", "arg": f"echo exit >> {marker}"},
        {"when": "on_exit", "do": "cleanup"},
        {"when": "on_exit", "do": "nothing"},
    ]
    ok = execute(make_spec(base, "true", behaviours=behaviours))
    assert marker.read_text() == "success\nexit\n"
    assert ok.remove_requested is False and ok.stderr == ""
    assert os.listdir(base) == []  # unique dir and its empty parents removed, base kept

    marker.unlink()
    failed = execute(make_spec(base, "echo out; exit 5", behaviours=behaviours))
    assert failed.outcome == "release" and failed.remove_requested is True
    assert marker.read_text() == f"{failed.actual_cwd}\nexit\n"
    # wr's layout: the section is appended to the (here empty) stderr.
    assert failed.stderr.startswith("\n\nBehaviour problems:\nbehaviour run 'pwd >> ")
    assert failed.stderr.endswith("failed with exit code 4: boom")
    assert failed.stdout == "out"
    assert os.listdir(base) == []


def test_cleanup_is_nothing_for_cwd_matters(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("x")
    behaviours = [{"when": "on_exit", "do": "cleanup_all"}]
    result = execute(make_spec(tmp_path, "true", cwd_matters=True, behaviours=behaviours))
    assert result.outcome == "archive" and (tmp_path / "keep").exists()


def test_memory_of_the_whole_tree_is_summed(tmp_path: Path) -> None:
    """Two children of 60 MB at once: max RSS of either is 60, the sampled tree sum ~120."""
    script = "import time; b = b'x' * (60 * 1024 * 1024); time.sleep(0.5)"
    result = execute(make_spec(tmp_path, f'{PY} -c "{script}" & {PY} -c "{script}"; wait'))
    assert result.outcome == "archive"
    assert result.peak_ram_mb >= 110


def test_job_near_machine_ram_is_killed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("wr.procs._total_ram", 80 * 1024 * 1024)
    script = "import time; b = b'x' * (100 * 1024 * 1024); time.sleep(30)"
    started = time.monotonic()
    result = execute(make_spec(tmp_path, f'{PY} -c "{script}"', expected_ram_mb=10))
    assert time.monotonic() - started < 10
    assert (result.outcome, result.fail_reason, result.exitcode) == (
        "release",
        "command used too much RAM",
        -1,
    )


def test_full_filesystem_kills(tmp_path: Path, monkeypatch) -> None:
    real_statvfs = os.statvfs

    def full(path):
        st = real_statvfs(path)
        return os.statvfs_result((*st[:4], 0, *st[5:]))  # f_bavail = 0

    monkeypatch.setattr(os, "statvfs", full)
    result = execute(make_spec(tmp_path, "sleep 30"))
    assert (result.outcome, result.fail_reason) == ("release", "ran out of disk space")


def test_without_pidfd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delattr(os, "pidfd_open")
    result = execute(make_spec(tmp_path, "echo hi; exit 7"))
    assert (result.exitcode, result.stdout) == (7, "hi")


def test_cancelled_wait_kills_the_command(tmp_path: Path) -> None:
    async def go() -> int:
        execution = Execution(make_spec(tmp_path, "sleep 100"))
        pid = await execution.start()
        waiter = asyncio.ensure_future(execution.wait())
        await asyncio.sleep(0)  # the waiter runs until it waits for the command's exit
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return pid

    assert not alive(asyncio.run(go()))


def test_the_command_gets_default_signals_and_only_its_standard_streams(
        tmp_path: Path) -> None:
    """As with Popen(close_fds=True, restore_signals=True, start_new_session=True): SIGPIPE
    and SIGXFSZ, which Python ignores, are back to their defaults; no descriptor but 0-2
    reaches the command (ls lists its own too); it leads a session of its own."""
    import signal

    ignored = int(execute(make_spec(tmp_path, "grep SigIgn /proc/self/status")).stdout.split()[1],
                  16)
    assert not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1))
    fds = execute(make_spec(tmp_path, "ls /proc/self/fd")).stdout.split()
    assert sorted(fds) == ["0", "1", "2", "3"]
    ids = execute(make_spec(tmp_path, "ps -o pid=,sid= -p $$")).stdout.split()
    assert ids[0] == ids[1]


def test_a_command_that_ends_at_once_is_never_sampled(tmp_path: Path, monkeypatch) -> None:
    """Monitoring begins FIRST_SAMPLE_S after the start: a job over by then costs none."""
    samples = []
    monkeypatch.setattr(Execution, "_sample", lambda self: samples.append(1) or (0, 0, False))
    assert execute(make_spec(tmp_path, "true", monitor_interval=1.0)).outcome == "archive"
    assert samples == []
    assert execute(make_spec(tmp_path, "sleep 0.3", monitor_interval=1.0)).outcome == "archive"
    assert samples == [1]


def execute_swept(spec: ExecSpec) -> tuple[ExecResult, list[str]]:
    """Run through a runner's Sweeper (wr.workdirs): the result, and what the base held
    once the sweeper had settled (as a runner waits for it before reporting)."""
    from wr.workdirs import Sweeper

    async def go() -> tuple[ExecResult, list[str]]:
        sweeper = Sweeper()
        execution = Execution(spec, sweeper=sweeper)
        await execution.start()
        result = await execution.wait()
        await sweeper.settled()
        sweeper.close()
        return result, sorted(os.listdir(spec.cwd))

    return asyncio.run(go())


def test_a_sweeper_removes_what_a_cleanup_would_have(tmp_path: Path) -> None:
    """Steps: a job that succeeds and one that fails, both with wr add's default cleanup,
    and one without cleanup, run through a sweeper (issue 17). Expected: the same results
    as without one; once the sweeper settles, the cleaned-up jobs left nothing and the
    other kept its cwd/ (with its output) but not its tmp/. The failed job's cleanup is
    done before wait() returns, where a cleanup problem would be reported."""
    cleanup = [{"when": "on_exit", "do": "cleanup"}]
    ok, left = execute_swept(make_spec(tmp_path / "a", "echo x > f; echo y > $TMPDIR/g",
                                       behaviours=cleanup))
    assert ok.outcome == "archive" and left == []

    class Watching(Execution):
        async def wait(self) -> ExecResult:
            result = await super().wait()
            self.gone_at_wait = not os.path.exists(os.path.dirname(result.actual_cwd))
            return result

    async def failing() -> bool:
        from wr.workdirs import Sweeper

        sweeper = Sweeper()
        execution = Watching(make_spec(tmp_path / "b", "exit 3", behaviours=cleanup),
                             sweeper=sweeper)
        await execution.start()
        result = await execution.wait()
        await sweeper.settled()
        assert result.outcome == "release" and result.exitcode == 3
        return execution.gone_at_wait

    assert asyncio.run(failing())
    kept, left = execute_swept(make_spec(tmp_path / "c", "echo x > f; echo y > $TMPDIR/g"))
    assert kept.outcome == "archive" and left == ["wr_cwd"]
    assert os.listdir(os.path.dirname(kept.actual_cwd)) == ["cwd"]
    assert os.listdir(kept.actual_cwd) == ["f"]


def test_a_run_behaviour_after_a_cleanup_is_not_left_a_directory(tmp_path: Path) -> None:
    """A cleanup followed by a run behaviour is done before it, sweeper or not, so the
    run sees what it always saw (the directory gone)."""
    behaviours = [{"when": "on_exit", "do": "cleanup"},
                  {"when": "on_exit", "do": "run", "arg": "ls"}]
    plain = execute(make_spec(tmp_path / "a", "true", behaviours=behaviours))
    swept, left = execute_swept(make_spec(tmp_path / "b", "true", behaviours=behaviours))
    assert (plain.outcome, plain.exitcode) == (swept.outcome, swept.exitcode)
    assert left == [] and os.listdir(tmp_path / "a") == []


def test_descriptors_the_runner_inherited_never_reach_a_command(tmp_path: Path) -> None:
    """Steps: in a fresh process that was given inheritable descriptors (as a runner may
    be, by whatever started it), run two commands that list their descriptors. Expected:
    each sees only 0-2 (and ls's own): the inherited ones are made close-on-exec at the
    first spawn (issue 17: no longer looked for at every spawn)."""
    import subprocess
    import textwrap

    script = textwrap.dedent(f"""
        import asyncio, os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / "src")!r})
        from tests.unit.test_execute import make_spec
        from wr.execute import Execution
        from pathlib import Path
        keep = [os.pipe()[0] for _ in range(3)]
        for fd in keep:
            os.set_inheritable(fd, True)
        async def go():
            for _ in range(2):
                ex = Execution(make_spec(Path({str(tmp_path)!r}), "ls /proc/self/fd"))
                await ex.start()
                print((await ex.wait()).stdout.split())
        asyncio.run(go())
    """)
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=root, timeout=60, check=True)
    assert done.stdout.splitlines() == ["['0', '1', '2', '3']"] * 2
