"""Run one job's command on this machine, watch it, and say what the manager should do next.

A runner (runner.py) reserves a job, hands its details here as an ExecSpec, and reports the
ExecResult back. The runner is an asyncio program that must keep its websocket to the manager
alive meanwhile, so nothing here blocks the event loop for long:

* the command is spawned with `os.posix_spawn` (glibc's is a vfork; DESIGN.md principle 5),
  in a session of its own, with SIGPIPE and SIGXFSZ back to their defaults and only its three
  standard streams open, as `subprocess.Popen(close_fds=True, start_new_session=True)` would;
  it costs the runner half the CPU of `Popen`, which matters for jobs that take milliseconds
  (docs/benchmarks.md). Where posix_spawn cannot be used, `Popen` does it;
* its pipes are read by event-loop readers as the output is produced (no deadlock on big
  output) into bounded captures (capture.py);
* its exit is noticed through a pidfd (or a thread in `waitid(WNOWAIT)`), and it is reaped with
  `os.wait4` so its rusage gives CPU time and max RSS;
* /proc inspection (memory of the process tree, disk use of its directories) and the kill
  procedure run in threads. Monitoring begins only FIRST_SAMPLE_S after the start, so a job
  that is over by then costs no monitoring at all.

Lifecycle: `Execution(spec)` only stores; `start()` prepares the working directory and
environment and spawns, raising ExecSetupError when it cannot; `wait()` returns the ExecResult
once the command has exited, its output is read, its behaviours have run and its `tmp/` is
gone; `kill(why)` may be called from the event loop at any time in between.

Behaviour follows spec/cli-manager-web-scheduler.md §3.8 and spec/rest-and-queue.md §4.4,
§4.11, §4.12 and §4.15. Deliberate differences from wr (for docs/compatibility.md):

* peak RAM is that of the job's process tree only; wr adds the runner's own memory;
* peak disk sums true file sizes, rounded up to whole MB; wr floors each file to whole MiB,
  so many small files counted as nothing;
* every command gets `WR_EXECUTION_ID=<key>.<random>` in its environment, so that a kill also
  finds descendants that double-forked out of the process tree (setsid daemons);
* a "stop" kill (the manager is going away) gives the outcome "interrupted": no fail reason, no
  behaviours, the job's directory is kept; the runner gives the job back uncharged;
* output still arriving after the command exited (from leftover background processes) is read
  for at most DRAIN_MAX_S; wr stops reading at exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import psutil

from wr.capture import StreamCapture
from wr.errors import WrError
from wr.jobs import FailReason

FIRST_SAMPLE_S = 0.1
"""Seconds after the start when memory is first sampled (then every monitor_interval)."""
KILL_GRACE_S = 0.5
"""How long a descendant gets between SIGTERM and SIGKILL when a job is killed."""

DRAIN_IDLE_S = 0.25
"""After the command exits, stop reading its pipes once they have been silent this long."""

DRAIN_MAX_S = 2.0
"""After the command exits, stop reading its pipes after this long in any case."""

RAM_KILL_FRACTION = 0.9
"""A job over its expected RAM is killed once its tree uses this fraction of the machine's RAM."""

EXECUTION_ID_VAR = "WR_EXECUTION_ID"
"""Environment variable that marks every process of one execution, found again by a kill."""

_MB = 1024 * 1024
_READ_SIZE = 1 << 16


class Outcome(StrEnum):
    """What the runner should tell the manager to do with the job."""

    ARCHIVE = "archive"
    RELEASE = "release"
    BURY = "bury"
    INTERRUPTED = "interrupted"


class ExecSetupError(WrError):
    """The command could not be started; `outcome` says whether to bury or release the job.

    `fail_reason` is the FailReason to report and `detail` the underlying error, which the
    runner stores as the job's stderr.
    """

    def __init__(self, fail_reason: str, detail: str, outcome: str) -> None:
        super().__init__(f"{fail_reason}: {detail}")
        self.fail_reason = str(fail_reason)
        self.detail = detail
        self.outcome = str(outcome)


@dataclass(slots=True)
class ExecSpec:
    """Everything needed to run one reserved job here; built by the runner from the job."""

    key: str
    """The job's 32-hex key."""
    cmd: str
    cwd: str
    """Base directory (the job's Cwd); created if missing."""
    cwd_matters: bool
    change_home: bool
    env_override: list[str]
    """`NAME=VALUE` items applied over the base environment."""
    base_env: dict[str, str] | None
    """The job's stored environment; None means the runner's own os.environ."""
    expected_ram_mb: int
    expected_time_s: float
    retries_left: int
    """UntilBuried - 1: failures still allowed after this one."""
    no_retry_over_walltime_s: float
    """0 = unset."""
    modules: list[str]
    behaviours: list[dict]
    """e.g. {"when": "on_failure", "do": "run", "arg": "echo x"}."""
    shell: str = "bash"
    app_name: str = "wr"
    monitor_interval: float = 1.0
    bsub: dict | None = None
    """For a job in bsub mode, what `wr.lsf.add_emulation` needs (issue 15)."""


@dataclass(slots=True)
class ExecResult:
    """What happened, ready for the runner's end-of-job report.

    `outcome` is an Outcome value, `fail_reason` a FailReason text ("" on success); times are
    Unix seconds; `exitcode` is -1 when the command was killed by a signal; `stdout`/`stderr`
    are filtered and truncated as capture.py describes; `remove_requested` means a matched
    "remove" behaviour wants the job deleted once it is buried.
    """

    outcome: str
    fail_reason: str
    exitcode: int
    pid: int
    started: float
    ended: float
    walltime: float
    cpu_time: float
    peak_ram_mb: int
    peak_disk_mb: int
    actual_cwd: str
    stdout: str
    stderr: str
    remove_requested: bool


@dataclass(slots=True)
class Marks:
    """What happened during a run that explains a non-zero exit."""

    stopped: bool = False
    user_killed: bool = False
    over_ram: bool = False
    out_of_disk: bool = False
    signalled: bool = False
    over_time: bool = False


def decide_outcome(
    exitcode: int,
    marks: Marks,
    walltime: float,
    retries_left: int,
    no_retry_over_walltime_s: float,
) -> tuple[Outcome, str]:
    """The runner-side decision table (rest-and-queue.md §4.4), rows checked top to bottom."""
    if exitcode == 0:
        return Outcome.ARCHIVE, ""
    if exitcode == 126:
        return Outcome.BURY, FailReason.PERM
    if exitcode == 127:
        return Outcome.BURY, FailReason.NOTFOUND
    if exitcode == 128:
        return Outcome.BURY, FailReason.EXIT_INVALID
    if marks.stopped:
        return Outcome.INTERRUPTED, ""
    if marks.user_killed:
        return Outcome.BURY, FailReason.KILLED
    if marks.over_ram:
        return Outcome.RELEASE, FailReason.RAM
    if marks.out_of_disk:
        return Outcome.RELEASE, FailReason.DISK
    if marks.signalled:
        return Outcome.RELEASE, FailReason.TIME if marks.over_time else FailReason.SIGNAL
    if retries_left > 0 and 0 < no_retry_over_walltime_s < walltime:
        return Outcome.BURY, FailReason.EXIT
    return Outcome.RELEASE, FailReason.EXIT


def command_line(cmd: str, modules: Sequence[str] = ()) -> str:
    """The text given to `<shell> -c`: module loads first, pipefail when cmd has ` | `."""
    line = cmd
    if modules:
        line = f"module load --force {' '.join(shlex.quote(m) for m in modules)}; {line}"
    if " | " in cmd:
        line = f"set -o pipefail; {line}"
    return line


def job_environment(base_env: dict[str, str] | None, overrides: Sequence[str]) -> dict[str, str]:
    """Base environment (or ours) with `NAME=VALUE` overrides: same names in place, new appended."""
    env = dict(os.environ if base_env is None else base_env)
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not name or "\0" in item:
            raise ExecSetupError(
                FailReason.ENV, f"environment override {item!r} is not NAME=VALUE", Outcome.BURY
            )
        env[name] = value
    return env


def make_unique_dir(base: str, app_name: str, key: str) -> str:
    """Make `<base>/<app>_cwd/<k0>/<k1>/<k2>/<key[3:]><digits>/` with `cwd/` and `tmp/` in it.

    A `.hold` file keeps the hashed directory non-empty while we work, so a concurrent cleanup
    of another job (which removes empty parents) cannot delete it under us; if one did anyway,
    we start again.
    """
    if len(key) < 4:
        raise ValueError(f"job key {key!r} is too short for a unique working directory")
    hashed = os.path.join(os.path.abspath(base), f"{app_name}_cwd", key[0], key[1], key[2])
    hold = os.path.join(hashed, ".hold")
    for attempt in range(10):
        try:
            os.makedirs(hashed, exist_ok=True)
            with open(hold, "a"):
                pass
            try:
                while True:
                    unique = os.path.join(hashed, f"{key[3:]}{secrets.randbelow(2**32)}")
                    try:
                        os.mkdir(unique, 0o700)
                        break
                    except FileExistsError:
                        continue
                os.mkdir(os.path.join(unique, "cwd"))
                os.mkdir(os.path.join(unique, "tmp"))
                return unique
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(hold)
        except FileNotFoundError:
            if attempt == 9:
                raise
    raise AssertionError("unreachable")


def remove_unique_dir(unique: str, base: str) -> None:
    """Delete a unique job directory, then its parents while empty, stopping short of `base`."""
    shutil.rmtree(unique)
    base = os.path.abspath(base)
    parent = os.path.dirname(os.path.abspath(unique))
    while parent != base and os.path.commonpath([parent, base]) == base:
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)


def _ceil_mb(nbytes: float) -> int:
    return math.ceil(nbytes / _MB)


def _tree_memory(root: psutil.Process | None) -> tuple[int, dict[int, psutil.Process]]:
    """Summed PSS (RSS where PSS is unreadable) in bytes of `root` and its descendants."""
    if root is None:
        return 0, {}
    try:
        descendants = {p.pid: p for p in root.children(recursive=True)}
    except psutil.Error:
        descendants = {}
    total = 0
    for proc in (root, *descendants.values()):
        try:
            try:
                total += proc.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total, descendants


def _tree_bytes(top: str) -> int:
    """Bytes in the files under `top` (symlinks not followed; vanishing files ignored)."""
    total, stack = 0, [top]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _all_empty(*dirs: str) -> bool:
    """True if every dir is empty or gone: the common case, checked without a thread."""
    for path in dirs:
        try:
            with os.scandir(path) as entries:
                if next(entries, None) is not None:
                    return False
        except OSError:
            continue
    return True


def _rmdir_if_empty(path: str) -> bool:
    """Remove an empty directory; False if it has contents (left for shutil.rmtree)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _marked_processes(token: str) -> dict[int, psutil.Process]:
    """Live processes whose environment carries this execution's id."""
    found: dict[int, psutil.Process] = {}
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(EXECUTION_ID_VAR) == token:
                found[proc.pid] = proc
        except psutil.Error:
            continue
    return found


def _signal_all(procs: dict[int, psutil.Process], sig: int) -> None:
    for proc in procs.values():
        # psutil refuses to signal a pid that has been reused since we saw it.
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
"""Python ignores these; Popen(restore_signals=True) gives a command their defaults back."""

_devnull = -1
_shells: dict[tuple[str, str | None], str] = {}


def _find_shell(shell: str, path: str | None) -> str:
    """The file `shell` names, looked up in the command's PATH as Popen would ("" if none)."""
    found = _shells.get((shell, path))
    if found is None:
        found = ""
        if os.path.dirname(shell):
            found = shell
        else:
            for folder in os.get_exec_path({} if path is None else {"PATH": path}):
                candidate = os.path.join(folder, shell)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    found = candidate
                    break
        _shells[(shell, path)] = found
    return found


def _spawn(argv: list[str], cwd: str, env: dict[str, str], out: int, err: int) -> int:
    """Start `argv` in `cwd` in a new session, stdin from /dev/null, stdout and stderr to
    `out` and `err`, with posix_spawn; 0 if that cannot be done here (the caller uses Popen,
    which also gives the usual errors for a shell or directory that is missing).

    posix_spawn has no working-directory action before Python 3.13, so we change ours for
    the moment of the spawn; a runner runs one command at a time and uses absolute paths.
    Descriptors Python opens are close-on-exec (PEP 446); any others we were given (8 us to
    find) are closed in the command, so only the three given reach it, as with Popen's
    close_fds.
    """
    global _devnull
    shell = _find_shell(argv[0], env.get("PATH"))
    if not shell or not hasattr(os, "posix_spawn"):
        return 0
    try:
        if _devnull < 0:
            _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if min(_devnull, out, err) <= 2:
            return 0  # we lack standard streams of our own: Popen knows how to shuffle
        actions = [(os.POSIX_SPAWN_DUP2, _devnull, 0), (os.POSIX_SPAWN_DUP2, out, 1),
                   (os.POSIX_SPAWN_DUP2, err, 2)]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()]
        here = os.getcwd()
        os.chdir(cwd)
    except OSError:
        return 0
    try:
        return os.posix_spawn(shell, argv, env, file_actions=actions, setsid=True,
                              setsigdef=_DEFAULT_SIGNALS)
    except (OSError, NotImplementedError):
        return 0
    finally:
        with contextlib.suppress(OSError):
            os.chdir(here)


def _inheritable_fds() -> list[int]:
    """Our descriptors above 2 that are not close-on-exec."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own, closed by now
                if os.get_inheritable(fd):
                    found.append(fd)
    return found


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


_total_ram = 0


def _machine_ram() -> int:
    global _total_ram
    if not _total_ram:
        _total_ram = psutil.virtual_memory().total
    return _total_ram


class Execution:
    """One run of one job's command; see the module docstring for the lifecycle."""

    def __init__(self, spec: ExecSpec) -> None:
        self.spec = spec
        self.pid = 0
        self.actual_cwd = ""
        self.marks = Marks()
        self._run_dir = ""
        self._unique = ""
        self._tmp = ""
        self._env: dict[str, str] = {}
        self._token = ""
        self._started = 0.0
        self._proc: subprocess.Popen | None = None
        self._ps: psutil.Process | None = None
        self._seen: dict[int, psutil.Process] = {}
        self._reaped = False
        self._killer: concurrent.futures.Future | None = None
        self._out = StreamCapture()
        self._err = StreamCapture()
        self._pipe_problems: list[str] = []
        self._pipes: dict[int, asyncio.Future] = {}
        self._last_output = 0.0
        self._pidfd = -1
        self._exited: asyncio.Future | None = None
        self._monitor_timer: asyncio.TimerHandle | None = None
        self._monitor_task: asyncio.Task | None = None
        self._peak_ram = 0
        self._peak_disk = 0
        self._remove_requested = False

    # ------------------------------------------------------------------ start

    @property
    def started_at(self) -> float:
        """Unix time the command was started (0 before ``start``)."""
        return self._started

    async def start(self) -> int:
        """Prepare the working directory and environment, spawn the command; return its pid."""
        if self._exited is not None:
            raise RuntimeError("this Execution has already been started")
        spec = self.spec
        env = job_environment(spec.base_env, spec.env_override)
        if spec.bsub is not None:  # bsub, bjobs and bkill on its PATH (wr.lsf, issue 15)
            from wr.lsf import add_emulation

            try:
                add_emulation(env, spec.bsub, spec.shell)
            except OSError as exc:
                raise ExecSetupError(FailReason.CWD, str(exc), Outcome.BURY) from exc
        self._prepare_dirs()
        if not spec.cwd_matters:
            env["TMPDIR"] = self._tmp
            if spec.change_home:
                env["HOME"] = self.actual_cwd
        self._token = f"{spec.key}.{secrets.token_hex(8)}"
        env[EXECUTION_ID_VAR] = self._token
        self._env = env
        argv = [spec.shell, "-c", command_line(spec.cmd, spec.modules)]

        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            self._started = time.time()
            self.pid = _spawn(argv, self._run_dir, env, out_w, err_w)
            if not self.pid:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=err_w,
                    cwd=self._run_dir,
                    env=env,
                    close_fds=True,
                    start_new_session=True,
                )
                self.pid = self._proc.pid
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            os.close(out_r)
            os.close(err_r)
            self._discard_dirs()
            raise ExecSetupError(FailReason.START, str(exc), Outcome.RELEASE) from exc
        finally:
            os.close(out_w)
            os.close(err_w)

        loop = asyncio.get_running_loop()
        self._last_output = loop.time()
        self._pipes = {out_r: self._read_pipe(loop, out_r, self._out, "STDOUT")}
        self._pipes[err_r] = self._read_pipe(loop, err_r, self._err, "STDERR")
        self._exited = self._watch_exit(loop)
        first = min(FIRST_SAMPLE_S, max(self.spec.monitor_interval, 0.01))
        self._monitor_timer = loop.call_later(first, self._begin_monitoring)
        if self.marks.stopped or self.marks.user_killed or self.marks.signalled:
            self._launch_killer()  # kill() came before we had a process
        return self.pid

    def _prepare_dirs(self) -> None:
        spec = self.spec
        try:
            os.makedirs(spec.cwd, exist_ok=True)
        except OSError as exc:
            raise ExecSetupError(FailReason.CWD, str(exc), Outcome.BURY) from exc
        if spec.cwd_matters:
            self._run_dir = spec.cwd
            return
        try:
            self._unique = make_unique_dir(spec.cwd, spec.app_name, spec.key)
        except (OSError, ValueError) as exc:
            raise ExecSetupError(FailReason.CWD, str(exc), Outcome.BURY) from exc
        self.actual_cwd = self._run_dir = os.path.join(self._unique, "cwd")
        self._tmp = os.path.join(self._unique, "tmp")

    def _discard_dirs(self) -> None:
        if self._unique:
            with contextlib.suppress(OSError):
                remove_unique_dir(self._unique, self.spec.cwd)

    def _read_pipe(
        self, loop: asyncio.AbstractEventLoop, fd: int, capture: StreamCapture, name: str
    ) -> asyncio.Future:
        """Feed `capture` from `fd` whenever it is readable; the future resolves at EOF."""
        os.set_blocking(fd, False)
        eof = loop.create_future()

        def on_readable() -> None:
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._pipe_problems.append(f"\n\n{name} handling problems:\n{exc}")
                data = b""
            if data:
                capture.feed(data)
                self._last_output = loop.time()
                return
            loop.remove_reader(fd)
            if not eof.done():
                eof.set_result(None)

        loop.add_reader(fd, on_readable)
        return eof

    def _watch_exit(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        """A future that resolves when the command exits, leaving it unreaped for wait4."""
        exited = loop.create_future()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            # No pidfd (old kernel): a thread waits without reaping (WNOWAIT).
            def waiter() -> None:
                with contextlib.suppress(ChildProcessError):
                    os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(lambda: exited.done() or exited.set_result(None))

            threading.Thread(target=waiter, name=f"wr-wait-{self.pid}", daemon=True).start()
            return exited

        def on_exit() -> None:
            loop.remove_reader(self._pidfd)
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(self._pidfd, on_exit)
        return exited

    # ---------------------------------------------------------------- monitor

    def _begin_monitoring(self) -> None:
        """FIRST_SAMPLE_S (or monitor_interval, if shorter) after the start: begin sampling,
        unless the command is already over."""
        self._monitor_timer = None
        if not self._exited.done():
            self._monitor_task = asyncio.get_running_loop().create_task(self._monitor())

    async def _monitor(self) -> None:
        """Sample memory and disk now, then every monitor_interval until the command exits."""
        interval = max(self.spec.monitor_interval, 0.01)
        while True:
            mem, disk, full = await asyncio.to_thread(self._sample)
            self._account(mem, disk, full)
            done, _ = await asyncio.wait([self._exited], timeout=interval)
            if done:
                return

    def _stop_monitoring(self) -> None:
        if self._monitor_timer is not None:
            self._monitor_timer.cancel()
            self._monitor_timer = None

    def _sample(self) -> tuple[int, int, bool]:
        """(tree memory, directory bytes, filesystem full); runs in a worker thread."""
        mem, self._seen = _tree_memory(self._process())
        full = False
        with contextlib.suppress(OSError):
            st = os.statvfs(self._run_dir)
            full = st.f_blocks > 0 and st.f_bavail == 0
        return mem, self._disk_bytes(), full

    def _disk_bytes(self) -> int:
        """Bytes in the unique cwd/ and tmp/ (a cwd_matters job's cwd is not ours to walk)."""
        return _tree_bytes(self.actual_cwd) + _tree_bytes(self._tmp) if self._unique else 0

    def _process(self) -> psutil.Process | None:
        """psutil's view of the command, made when first needed: reading /proc/<pid>/stat
        right after the spawn waits for the exec to finish, a millisecond per job.

        Only call it while the command is unreaped (so its pid cannot have been reused).
        """
        if self._ps is None:
            with contextlib.suppress(psutil.Error):
                self._ps = psutil.Process(self.pid)
        return self._ps

    def _account(self, mem: int, disk: int, full: bool) -> None:
        self._peak_ram = max(self._peak_ram, mem)
        self._peak_disk = max(self._peak_disk, disk)
        if 0 < self.spec.expected_ram_mb < _ceil_mb(self._peak_ram):
            self.marks.over_ram = True
            if self._peak_ram >= RAM_KILL_FRACTION * _machine_ram():
                self._launch_killer()
        if full:
            self.marks.out_of_disk = True
            self._launch_killer()

    # ------------------------------------------------------------------- kill

    def kill(self, why: str) -> None:
        """Kill the command and its descendants; `why` ("user", "signal", "stop") labels it."""
        if why == "user":
            self.marks.user_killed = True
        elif why == "signal":
            self.marks.signalled = True
            if self._started and time.time() > self._started + self.spec.expected_time_s:
                self.marks.over_time = True
        elif why == "stop":
            self.marks.stopped = True
        else:
            raise ValueError(f"kill reason {why!r} is not one of 'user', 'signal', 'stop'")
        self._launch_killer()

    def _launch_killer(self) -> None:
        """Run the kill procedure once, in a thread (it scans /proc and sleeps)."""
        if not self.pid or self._reaped or self._killer is not None:
            return
        killer: concurrent.futures.Future = concurrent.futures.Future()
        root, seen, pgid, token = self._process(), self._seen, self.pid, self._token

        def run() -> None:
            try:
                _kill_tree(root, seen, pgid, token)
            except BaseException as exc:  # handed to wait()
                killer.set_exception(exc)
            else:
                killer.set_result(None)

        self._killer = killer
        threading.Thread(target=run, name=f"wr-kill-{pgid}", daemon=True).start()

    # ------------------------------------------------------------------- wait

    async def wait(self) -> ExecResult:
        """Wait for the command to exit and be dealt with; return what happened."""
        if self._exited is None:
            raise RuntimeError("start() the Execution before waiting for it")
        try:
            return await self._finish()
        except asyncio.CancelledError:
            self._abandon()
            raise

    async def _finish(self) -> ExecResult:
        await self._exited
        self._stop_monitoring()
        if self._monitor_task is not None:
            await self._monitor_task
        status, rusage = self._reap()
        ended = time.time()
        await self._drain()
        if self._killer is not None:
            await asyncio.wrap_future(self._killer)
        if self._unique and not _all_empty(self.actual_cwd, self._tmp):
            self._account(0, await asyncio.to_thread(self._disk_bytes), False)

        walltime = max(ended - self._started, 0.0)
        if status is None:
            exitcode, cpu_time = 255, 0.0
            outcome, reason = Outcome.RELEASE, FailReason.ABNORMAL
        else:
            exitcode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
            cpu_time = rusage.ru_utime + rusage.ru_stime
            # Not ru_maxrss: a vfork'd child's high-water mark includes the runner's own
            # memory from before exec, which would make every small job look over its RAM.
            outcome, reason = decide_outcome(
                exitcode,
                self.marks,
                walltime,
                self.spec.retries_left,
                self.spec.no_retry_over_walltime_s,
            )

        problems: list[str] = []
        if outcome != Outcome.INTERRUPTED:
            problems = await self._run_behaviours(outcome == Outcome.ARCHIVE)
        if self._tmp and not _rmdir_if_empty(self._tmp):
            await asyncio.to_thread(shutil.rmtree, self._tmp, True)

        stderr = self._err.text() + "".join(self._pipe_problems)
        if problems and outcome != Outcome.ARCHIVE:
            stderr += "\n\nBehaviour problems:\n" + "\n".join(problems)
        return ExecResult(
            outcome=str(outcome),
            fail_reason=str(reason),
            exitcode=exitcode,
            pid=self.pid,
            started=self._started,
            ended=ended,
            walltime=walltime,
            cpu_time=cpu_time,
            peak_ram_mb=max(_ceil_mb(self._peak_ram), 1),
            peak_disk_mb=_ceil_mb(self._peak_disk),
            actual_cwd=self.actual_cwd,
            stdout=self._out.text(),
            stderr=stderr,
            remove_requested=self._remove_requested,
        )

    def _reap(self) -> tuple[int | None, object]:
        """wait4 the exited command: (status, rusage), or (None, None) if reaped elsewhere."""
        try:
            _, status, rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            status, rusage = None, None
        self._reaped = True
        if self._proc is not None:
            # Popen would warn (and try to reap) in __del__ if it thought the child still ran.
            self._proc.returncode = -1 if status is None else os.waitstatus_to_exitcode(status)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        return status, rusage

    async def _drain(self) -> None:
        """Read what is left in the pipes; give up once they go quiet or after DRAIN_MAX_S.

        Background processes the command left behind may hold the pipes open indefinitely.
        """
        loop = asyncio.get_running_loop()
        self._last_output = max(self._last_output, loop.time())
        hard_stop = loop.time() + DRAIN_MAX_S
        try:
            pending = [f for f in self._pipes.values() if not f.done()]
            while pending:
                now = loop.time()
                timeout = min(hard_stop, self._last_output + DRAIN_IDLE_S) - now
                if timeout <= 0:
                    break
                _, pending = await asyncio.wait(pending, timeout=timeout)
        finally:
            self._close_pipes()
        self._out.close()
        self._err.close()

    def _close_pipes(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._pipes:
            loop.remove_reader(fd)
            os.close(fd)
        self._pipes = {}

    def _abandon(self) -> None:
        """wait() was cancelled: kill everything now, reap, and release our resources."""
        self._stop_monitoring()
        if self._monitor_task is not None:
            self._monitor_task.cancel()
        if not self._exited.done():
            self._exited.cancel()
        if not self._reaped:
            _killpg(self.pid)
            _signal_all(self._seen, signal.SIGKILL)
            if self._token:
                _signal_all(_marked_processes(self._token), signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self._reaped = True
            if self._proc is not None:
                self._proc.returncode = -1
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        self._close_pipes()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # -------------------------------------------------------------- behaviours

    async def _run_behaviours(self, success: bool) -> list[str]:
        """Run on_success/on_failure behaviours, then on_exit ones; return the problems."""
        wanted = "on_success" if success else "on_failure"
        behaviours = self.spec.behaviours
        chosen = [b for b in behaviours if b.get("when") in (wanted, "on_failure|success")]
        chosen += [b for b in behaviours if b.get("when") == "on_exit"]
        problems: list[str] = []
        for behaviour in chosen:
            do = behaviour.get("do")
            if do == "run":
                problem = await asyncio.to_thread(self._run_command, str(behaviour.get("arg", "")))
                if problem:
                    problems.append(problem)
            elif do in ("cleanup", "cleanup_all"):
                if self._unique and os.path.exists(self._unique):
                    try:
                        await asyncio.to_thread(remove_unique_dir, self._unique, self.spec.cwd)
                    except OSError as exc:
                        problems.append(f"cleanup of {self._unique} failed: {exc}")
            elif do == "remove":
                self._remove_requested = True
            elif do not in ("nothing", "copy_to_manager"):
                problems.append(f"unknown behaviour {do!r}")
        return problems

    def _run_command(self, cmd: str) -> str:
        """Run a `run` behaviour; return "" or a description of its failure with its output."""
        env = {k: v for k, v in self._env.items() if k != EXECUTION_ID_VAR}
        capture = StreamCapture()
        try:
            proc = subprocess.Popen(
                [self.spec.shell, "-c", command_line(cmd)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.actual_cwd or self.spec.cwd,
                env=env,
                close_fds=True,
                start_new_session=True,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return f"behaviour run {cmd!r} failed to start: {exc}"
        with proc:
            while chunk := proc.stdout.read1(_READ_SIZE):
                capture.feed(chunk)
            code = proc.wait()
        if code == 0:
            return ""
        return f"behaviour run {cmd!r} failed with exit code {code}: {capture.text()}"


def _kill_tree(
    root: psutil.Process | None, seen: dict[int, psutil.Process], pgid: int, token: str
) -> None:
    """The kill procedure: find every process of the job, SIGKILL the command's process group,
    SIGTERM the rest and SIGKILL them KILL_GRACE_S later.

    Descendants are collected before the group dies, since their parents dying would re-parent
    them out of the tree; those already outside it (double-forked daemons) are found by their
    WR_EXECUTION_ID.
    """
    victims = dict(seen)
    if root is not None:
        with contextlib.suppress(psutil.Error):
            victims.update((p.pid, p) for p in root.children(recursive=True))
    _killpg(pgid)
    victims.update(_marked_processes(token))
    victims.pop(pgid, None)  # the command itself: our child, killed with its group
    _signal_all(victims, signal.SIGTERM)
    time.sleep(KILL_GRACE_S)
    _signal_all(victims, signal.SIGKILL)
    _killpg(pgid)
    # Anything that forked during the grace period.
    for _ in range(3):
        stragglers = _marked_processes(token)
        if not stragglers:
            break
        _signal_all(stragglers, signal.SIGKILL)
        time.sleep(0.05)
