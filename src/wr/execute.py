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
  output) into bounded captures (output_pipes.py, capture.py);
* its exit is noticed through a pidfd (or a thread in `waitid(WNOWAIT)`), and it is reaped with
  `os.wait4` so its rusage gives CPU time and max RSS;
* /proc inspection (memory of the process tree, disk use of its directories) and the kill
  procedure run in threads. Monitoring begins only FIRST_SAMPLE_S after the start, so a job
  that is over by then costs no monitoring at all.

What a run is given and gives back (`ExecSpec`, `ExecResult`, the decision table) is in
exec_spec.py; the behaviours that follow a run in behaviours.py.

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
import errno
import math
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil

from wr.behaviours import Place, run_behaviours
from wr.exec_spec import (
    ExecResult,
    ExecSetupError,
    ExecSpec,
    Marks,
    Outcome,
    command_line,
    decide_outcome,
    job_environment,
)
from wr.jobs import FailReason
from wr.journal import Journal
from wr.output_pipes import OutputPipes
from wr.procs import (
    EXECUTION_ID_VAR,
    kill_tree,
    killpg,
    machine_ram,
    marked_processes,
    signal_all,
    spawn,
    tree_memory,
)
from wr.workdirs import (
    Sweeper,
    all_empty,
    make_unique_dir,
    remove_unique_dir,
    rmdir_if_empty,
    tree_bytes,
)

__all__ = [
    "EXECUTION_ID_VAR", "ExecResult", "ExecSetupError", "ExecSpec", "Execution", "Marks",
    "Outcome", "command_line", "decide_outcome", "job_environment", "make_unique_dir",
    "remove_unique_dir",
]

if TYPE_CHECKING:
    from wr.containers import ContainerRun

FIRST_SAMPLE_S = 0.1
"""Seconds after the start when memory is first sampled (then every monitor_interval)."""
RAM_KILL_FRACTION = 0.9
"""A job over its expected RAM is killed once its tree uses this fraction of the machine's RAM."""

_MB = 1024 * 1024


def _ceil_mb(nbytes: float) -> int:
    return math.ceil(nbytes / _MB)


class Execution:
    """One run of one job's command; see the module docstring for the lifecycle."""

    def __init__(self, spec: ExecSpec, journal: Journal | None = None,
                 sweeper: Sweeper | None = None) -> None:
        self.spec = spec
        self.journal = journal
        """Where the runner records the command's start and exit before anyone is told
        (wr.journal); None runs without one."""
        self.sweeper = sweeper
        """Where the directories of a job that succeeded go to be removed while the next
        command runs (wr.workdirs.Sweeper; its owner waits for it before reporting);
        None removes them before `wait` returns."""
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
        self._output = OutputPipes()
        self._pidfd = -1
        self._exited: asyncio.Future | None = None
        self._monitor_timer: asyncio.TimerHandle | None = None
        self._monitor_task: asyncio.Task | None = None
        self._peak_ram = 0
        self._peak_disk = 0
        self._remove_requested = False
        self._mounts: Any = None
        """wr.mounts.JobMounts while the job's mounts are up (issue 18)."""
        self._box: ContainerRun | None = None

    # ------------------------------------------------------------------ start

    @property
    def started_at(self) -> float:
        """Unix time the command was started (0 before ``start``)."""
        return self._started

    @property
    def peak_ram_mb(self) -> int:
        """The most memory the command's tree has used so far, MB (0 before the first
        sample): the runner sends it with its keep-alives, so the manager knows it even if
        a batch system kills the runner with the job (issue 13 item 10)."""
        return _ceil_mb(self._peak_ram)

    async def start(self) -> int:
        """Prepare the working directory and environment, spawn the command; return its pid."""
        if self._exited is not None:
            raise RuntimeError("this Execution has already been started")
        spec = self.spec
        env = self._environment()
        if spec.mounts:
            await self._mount()
        argv = [spec.shell, "-c", command_line(spec.cmd, spec.modules)]
        if spec.container is not None or spec.group:
            try:
                argv = await self._contained_argv(env)
            except ExecSetupError:
                self._discard_dirs()
                raise
        out_r, err_r = await self._spawn(argv, env)
        if self.journal is not None:
            self.journal.spawned(spec.key, self.pid, self._started, self._unique, spec.cwd)

        loop = asyncio.get_running_loop()
        self._output.watch(loop, out_r, err_r)
        self._exited = self._watch_exit(loop)
        first = min(FIRST_SAMPLE_S, max(self.spec.monitor_interval, 0.01))
        self._monitor_timer = loop.call_later(first, self._begin_monitoring)
        if self.marks.stopped or self.marks.user_killed or self.marks.signalled:
            self._launch_killer()  # kill() came before we had a process
        return self.pid

    def _environment(self) -> dict[str, str]:
        """The command's environment, its directories made on the way (their paths are
        part of it)."""
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
        return env

    async def _spawn(self, argv: list[str], env: dict[str, str]) -> tuple[int, int]:
        """Start the command with its output going to two new pipes; returns their read
        ends. A failure undoes the mounts and directories and says what the system said."""
        spec = self.spec
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        if self.journal is not None:
            self.journal.starting(spec.key, self._token)
        try:
            self._started = time.time()
            # Through the runner's named link to the shell only when the shell is what
            # runs (not sg, for a unix group): the link names the shell's process.
            via = spec.shell_via if argv[0] == spec.shell else ""
            self.pid = spawn(argv, self._run_dir, env, out_w, err_w, via)
            if not self.pid:
                self._proc = subprocess.Popen(
                    argv,
                    executable=via or None,
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
            if self._mounts is not None:
                mounts, self._mounts = self._mounts, None
                await mounts.unmount(upload=False)
                await asyncio.to_thread(mounts.discard, self._unique, self.spec.cwd)
            else:
                self._discard_dirs()
            raise ExecSetupError(FailReason.START, _start_failure(exc, argv, env),
                                 Outcome.RELEASE) from exc
        finally:
            os.close(out_w)
            os.close(err_w)
        return out_r, err_r

    async def _contained_argv(self, env: dict[str, str]) -> list[str]:
        """The argv in the job's container and unix group, which it must never run without
        (issue 15); ExecSetupError with the reason if it cannot have them."""
        spec = self.spec
        cmd = spec.cmd
        if spec.container is not None:
            from wr.containers import prepare

            names = [item.partition("=")[0] for item in spec.env_override]
            self._box = await asyncio.to_thread(
                prepare, spec.container, spec.key, self._run_dir, env, names)
            cmd = self._box.command(cmd)
        argv = [spec.shell, "-c", command_line(cmd, spec.modules)]
        if spec.group:
            from wr.unix_group import in_group

            argv = in_group(spec.group, argv, env.get("PATH"))
        return argv

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

    async def _mount(self) -> None:
        """Mount the job's S3 targets where the command will run (issue 18). A failure
        never lets the command run bare: the job fails with the bucket and the server's
        answer in its stderr and, unlike wr (which buries it), follows its retries."""
        from wr.mounts import JobMounts, MountError, from_json

        mounts = None
        try:
            mounts = JobMounts(from_json(self.spec.mounts), cwd=self.spec.cwd,
                               actual_cwd=self.actual_cwd, cwd_matters=self.spec.cwd_matters)
            await mounts.mount()
            self._mounts = mounts
        except MountError as exc:
            if mounts is not None:
                await asyncio.to_thread(mounts.discard, self._unique, self.spec.cwd)
            else:
                self._discard_dirs()
            raise ExecSetupError(FailReason.MOUNT,
                                 f"failed to mount remote file system(s): {exc}",
                                 Outcome.RELEASE, attempted=True) from exc

    async def _unmount(self, outcome: Outcome, reason: str) -> tuple[Outcome, str, str]:
        """Unmount, uploading what was written unless the job was interrupted; an upload
        failure turns a success into a release (files kept in the cache). Returns the
        outcome, reason and text for stderr."""
        mounts, self._mounts = self._mounts, None
        report = await mounts.unmount(upload=outcome != Outcome.INTERRUPTED)
        if report.failed and outcome == Outcome.ARCHIVE:
            outcome, reason = Outcome.RELEASE, FailReason.UPLOAD
        note = f"\n\nMount problems:\n{report.text()}" if report.problems else ""
        return outcome, reason, note

    def _discard_dirs(self) -> None:
        if self._unique:
            with contextlib.suppress(OSError):
                remove_unique_dir(self._unique, self.spec.cwd)

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
        mem, self._seen = tree_memory(self._process())
        if self._box is not None:
            mem += self._box.sample()
        full = False
        with contextlib.suppress(OSError):
            st = os.statvfs(self._run_dir)
            full = st.f_blocks > 0 and st.f_bavail == 0
        return mem, self._disk_bytes(), full

    def _disk_bytes(self) -> int:
        """Bytes in the unique cwd/ and tmp/ (a cwd_matters job's cwd is not ours to walk);
        mounted directories are not the job's disk, their caches are (issue 18)."""
        if self._mounts is not None:
            return self._mounts.disk_bytes(self.actual_cwd, self._tmp)
        return tree_bytes(self.actual_cwd) + tree_bytes(self._tmp) if self._unique else 0

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
            if self._peak_ram >= RAM_KILL_FRACTION * machine_ram():
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
        box = self._box

        def run() -> None:
            try:
                if box is not None:
                    box.kill()  # not in the process tree: the engine started it
                kill_tree(root, seen, pgid, token)
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
        status, rusage, ended, container_cpu = await self._collect()
        walltime = max(ended - self._started, 0.0)
        exitcode, cpu_time, outcome, reason = self._decide(status, rusage, walltime,
                                                           container_cpu)
        outcome, reason, problems, mount_note = await self._after_run(outcome, reason)
        stderr = self._output.err.text() + "".join(self._output.problems)
        if problems and outcome != Outcome.ARCHIVE:
            stderr += "\n\nBehaviour problems:\n" + "\n".join(problems)
        if mount_note and outcome != Outcome.ARCHIVE:
            stderr += mount_note
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
            stdout=self._output.out.text(),
            stderr=stderr,
            remove_requested=self._remove_requested,
        )

    async def _collect(self) -> tuple[int | None, Any, float, float]:
        """Wait for the command to exit, then gather what its run left: (its wait status,
        or None if it was reaped elsewhere; its rusage; its end time; the CPU seconds of
        its container)."""
        await self._exited
        self._stop_monitoring()
        if self._monitor_task is not None:
            await self._monitor_task
        self._journal_exit()
        status, rusage = self._reap()
        ended = time.time()
        await self._output.drain()
        if self._killer is not None:
            await asyncio.wrap_future(self._killer)
        container_cpu = 0.0
        if self._box is not None:  # remove a killed or failed container; its CPU time
            failed = status is None or status != 0 or self._killer is not None
            container_cpu = await asyncio.to_thread(self._box.finish, failed)
        if (self._unique and not all_empty(self.actual_cwd, self._tmp)) or self._mounts:
            self._account(0, await asyncio.to_thread(self._disk_bytes), False)
        return status, rusage, ended, container_cpu

    def _decide(self, status: int | None, rusage: Any, walltime: float,
                container_cpu: float) -> tuple[int, float, Outcome, str]:
        """(exit code, CPU seconds, outcome, fail reason) of the run."""
        if status is None:
            return 255, 0.0, Outcome.RELEASE, FailReason.ABNORMAL
        exitcode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        cpu_time = rusage.ru_utime + rusage.ru_stime + container_cpu
        # Not ru_maxrss: a vfork'd child's high-water mark includes the runner's own
        # memory from before exec, which would make every small job look over its RAM.
        outcome, reason = decide_outcome(
            exitcode,
            self.marks,
            walltime,
            self.spec.retries_left,
            self.spec.no_retry_over_walltime_s,
        )
        return exitcode, cpu_time, outcome, reason

    async def _after_run(self, outcome: Outcome,
                         reason: str) -> tuple[Outcome, str, list[str], str]:
        """Run the behaviours, unmount, tidy the directories; returns the outcome and
        reason (an upload failure changes them), the behaviours' problems and the mounts'
        note for stderr."""
        problems: list[str] = []
        if outcome != Outcome.INTERRUPTED:
            place = Place(self.spec.shell, self._env, self.actual_cwd or self.spec.cwd,
                          self._unique, self.spec.cwd, self._mounts,
                          None if self.sweeper is None else self._sweep_all)
            problems, self._remove_requested = await run_behaviours(
                self.spec.behaviours, outcome == Outcome.ARCHIVE, place)
        mount_note = ""
        mounts = self._mounts
        if mounts is not None:
            outcome, reason, mount_note = await self._unmount(outcome, reason)
        if outcome == Outcome.INTERRUPTED and self._unique:
            # Put back uncharged, it runs again in a directory of its own: this one would be
            # left behind for ever (issue 13, item 11); a mount's unsent writes stay cached.
            if mounts is not None:
                await asyncio.to_thread(mounts.discard, self._unique, self.spec.cwd)
            else:
                await asyncio.to_thread(self._discard_dirs)
        if self._tmp and self.sweeper is not None:
            if os.path.isdir(self._tmp):  # (not when a cleanup took it already)
                self._sweep(whole=False)
        elif self._tmp and not rmdir_if_empty(self._tmp):
            await asyncio.to_thread(shutil.rmtree, self._tmp, True)
        return outcome, reason, problems, mount_note

    def _journal_exit(self) -> None:
        """Record how the command ended before reaping it: once reaped, its exit would be
        lost with the runner, were the runner to die before reporting it (wr.keeper)."""
        if self.journal is None:
            return
        try:
            if self._pidfd >= 0:
                info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOWAIT)
            else:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        except (ChildProcessError, OSError):
            return
        if info is None:
            return
        if info.si_code == os.CLD_EXITED:
            self.journal.exited(self.spec.key, info.si_status, 0)
        else:
            self.journal.exited(self.spec.key, -1, info.si_status)

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

    def _abandon(self) -> None:
        """wait() was cancelled: kill everything now, reap, and release our resources."""
        self._stop_monitoring()
        if self._monitor_task is not None:
            self._monitor_task.cancel()
        if not self._exited.done():
            self._exited.cancel()
        if not self._reaped:
            killpg(self.pid)
            signal_all(self._seen, signal.SIGKILL)
            if self._token:
                signal_all(marked_processes(self._token), signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self._reaped = True
            if self._proc is not None:
                self._proc.returncode = -1
        if self._box is not None:  # rare (the runner is going): wait for the engine here
            self._box.kill()
            self._box.finish(True)
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        self._output.close()
        if self._mounts is not None:
            self._mounts.kill()
            self._mounts = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _sweep_all(self) -> None:
        self._sweep(whole=True)

    def _sweep(self, *, whole: bool) -> None:
        """Hand the removal of the unique directory (``whole``) or its ``tmp/`` to the
        sweeper, journalled first so that a keeper finishes it if the runner dies."""
        assert self.sweeper is not None
        if self.journal is not None:
            self.journal.sweeping(self.spec.key, whole)
        if whole:
            self.sweeper.remove(self._unique, self.spec.cwd)
            self._tmp = ""  # goes with it
        else:
            self.sweeper.remove_tmp(self._tmp)


def _start_failure(exc: BaseException, argv: list[str], env: dict[str, str]) -> str:
    """What the system answered when the command could not be started, in words a user can
    act on (issue 13, item 5)."""
    if isinstance(exc, OSError) and exc.errno == errno.E2BIG:
        size = sum(len(a.encode("utf-8", "surrogateescape")) + 1 for a in argv)
        size += sum(len(k) + len(v) + 2 for k, v in env.items())
        return (f"{exc.strerror}: the command and its environment take {size:,} bytes; "
                f"Linux takes at most {_ARG_LIMIT:,} bytes in all, and "
                f"{_ARG_STRLEN:,} bytes for the command itself")
    if isinstance(exc, OSError) and exc.strerror:
        target = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{target}"
    return str(exc)


_ARG_LIMIT = os.sysconf("SC_ARG_MAX") if hasattr(os, "sysconf") else 2 * 1024 * 1024
_ARG_STRLEN = 32 * 4096
"""Linux's MAX_ARG_STRLEN: the longest single argument (the command given to the shell)."""
