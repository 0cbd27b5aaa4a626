"""A runner's keeper: the small parent that reports for a runner that died (issue 13, item 3).

A runner killed with ``kill -9`` (or by the OOM killer) used to leave its command running
with nobody to report it: about a minute later the manager called the job lost and ran it
again (twice at once, or again after it had succeeded), or buried a success as "lost contact
with runner". Short jobs that a runner ran in a batch and had not yet reported were run again
without anyone knowing.

So every runner is two processes. ``python -m wr.runner`` starts as the *keeper*: it makes
itself a child subreaper (Linux's ``PR_SET_CHILD_SUBREAPER``), forks the *worker* (the runner
proper, wr.runner.Runner) and waits. The worker journals every command's start, pid and exit
on this host before it tells the manager (wr.journal). If the worker dies, its commands are
re-parented to the keeper, not to init, so the keeper can still read how each one ended. It
then settles every command the journal names:

* one that had exited (journalled, or a zombie the keeper now reaps) is reported with its
  real exit code: a success is complete, never buried as lost nor run again;
* one still running is adopted: the keeper keeps it alive with the manager (keep-alives under
  the worker's id, answering kills) until it exits, then reports its real exit. Killing it
  instead could kill it between its last side effect and its exit, and run it twice. Its
  output after the worker's death cannot be read (the worker held the pipes): a command
  that writes more dies of SIGPIPE, and that exit is reported as a failure with the reason,
  so its rerun is visible (``Attempts``, and the manager's log);
* ends the worker had made but not yet had stored are sent as they were.

It reports under the worker's runner id, so the queue accepts the reports exactly when the
worker's would have been accepted: never for a job that has since been given to another
runner. Then it tells the manager it holds nothing else (``bye``: jobs reserved for the
worker but never started go straight back to the queue) and exits.

A keeper that is itself killed leaves a working worker behind: the worker notices (its parent
changes), finishes what it holds and takes nothing new.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wr.journal import JournalState, Started, journal_path, read_journal

log = logging.getLogger("wr.runner")

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_TICK = 2 / _TICKS_PER_S
"""How much earlier than the truth a process start time may read (kept in clock ticks)."""
_PR_SET_NAME = 15


def become_worker(args: argparse.Namespace, runner_id: str) -> int:
    """Fork; return the keeper's pid in the child (the worker). The parent keeps the worker
    and exits when it is done, never returning."""
    from wr.procs import become_subreaper, prctl

    subreaper = become_subreaper()
    keeper = os.getpid()
    worker = os.fork()
    if worker == 0:
        prctl(_PR_SET_NAME, ctypes.c_char_p(b"wr-runner"))
        return keeper
    prctl(_PR_SET_NAME, ctypes.c_char_p(b"wr-keeper"))
    if not subreaper:
        log.warning("could not become a child subreaper: if this runner is killed, its "
                    "commands' exits cannot be read")
    raise SystemExit(keep(worker, args, runner_id))


def keep(worker: int, args: argparse.Namespace, runner_id: str) -> int:
    """Wait for the worker; if it did not end cleanly, settle and report what it held."""
    def forward(signum: int, frame: Any) -> None:
        # A signal for the runner (a scheduler stopping it) is the worker's to act on, or,
        # once the worker is gone, the keeper's: it stops what it adopted.
        _STOP.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    orphans: dict[int, Orphan] = {}
    while True:
        # Peek before reaping: an orphan may be a command the journal has no pid for, known
        # then by when it started and that it leads a session (`settle`).
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # cannot happen while the worker is our child
            return 1
        if info is None:
            continue
        if info.si_pid == worker:
            _, status = os.waitpid(worker, 0)
            break
        orphans[info.si_pid] = _reap(info.si_pid)
    path = journal_path(runner_id)
    state = read_journal(path)
    code = os.waitstatus_to_exitcode(status)
    if code == 0 and not (state.started or state.ends):
        forget_journal(path)
        return 0
    how = (f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0
           else f"exited with code {code}")
    why = f"its runner (pid {worker}) {how}"
    ends, adopted = settle(state, orphans, why, adopt=True)
    if code < 0 or ends or adopted:
        log.warning("wr runner %s %s; its keeper reports %d commands and watches %d", runner_id,
                    how, len(ends), len(adopted))
    try:
        import asyncio

        asyncio.run(_report(args, runner_id, ends, how, adopted, why))
    except Exception as exc:  # the journal stays: nothing more can be done from here
        log.error("the keeper of runner %s could not report: %s", runner_id, exc)
        return 1
    _reap_all()
    forget_journal(path)
    return 0


_STOP: list[int] = []
"""Signals the keeper got (a scheduler stopping the runner): it stops what it adopted."""


@dataclass(slots=True)
class Orphan:
    """A child the keeper inherited (a command of the dead worker, or something a command
    left behind), as it was when it was reaped."""

    pid: int
    status: int
    """Its wait status."""
    created: float
    """When it started, in seconds since the machine booted (to a clock tick)."""
    leader: bool
    """Whether it led a session of its own, as every command the runner starts does."""
    comm: str = ""
    """The kernel's name for it."""


def forget_journal(path: Path) -> None:
    """Remove a journal and the runner's shell links beside it."""
    import glob
    import shutil

    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    for folder in glob.glob(glob.escape(str(path.with_suffix(""))) + ".bin*"):
        shutil.rmtree(folder, ignore_errors=True)


def settle(state: JournalState, orphans: dict[int, Orphan], why: str, *,
           keep: frozenset[int] = frozenset(), reap_rest: bool = True, adopt: bool = False
           ) -> tuple[list[dict[str, Any]], list[Started]]:
    """The end report of every command the journal names, after making sure none of them is
    still running. This process should be the commands' subreaper (the keeper, or the
    manager for a runner killed with its keeper): their exits are then ours to read.
    ``orphans``: children reaped so far; ``keep``: children someone else waits for (the
    manager's runners), never touched; ``reap_rest``: reap every other exited child at the
    end. ``adopt``: commands of ours still running are not killed but returned (with the
    ends of the others), for the caller to watch to their end; otherwise they are given a
    moment to end by themselves, then killed (see `_stop`)."""
    from wr.procs import marked_processes, signal_all
    from wr.runner_link import host_ip

    ends = list(state.ends)
    adopted: list[Started] = []
    host, ip = socket.gethostname(), host_ip()
    known = {s.pid for s in state.started.values() if s.pid}
    for started in state.started.values():
        if started.removing:
            _finish_removal(started)
        if started.end is not None:
            ends.append(started.end)
            continue
        killed = False
        if started.code is None and not started.pid:
            _find(started, orphans, known | keep, state.comm)  # died as it started it
        if started.code is None and started.pid and started.pid not in keep:
            orphan = orphans.pop(started.pid, None)
            status = orphan.status if orphan is not None else None
            if status is None and adopt and _running_child(started.pid, started.token):
                adopted.append(started)
                continue
            if status is None:
                status, killed = _stop(started.pid, started.token)
            if status is not None and not killed:
                started.code = (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1)
                started.sig = 0 if os.WIFEXITED(status) else os.WTERMSIG(status)
        if started.token and (killed or started.code is None):
            signal_all(marked_processes(started.token), signal.SIGKILL)
        ends.append(_end_of(started, killed, why, host, ip))
    if reap_rest and not adopted:
        _reap_all()
    return ends, adopted


def _running_child(pid: int, token: str) -> bool:
    """Whether ``pid`` is our child, still running, and the command with ``token``."""
    import psutil

    from wr.procs import EXECUTION_ID_VAR

    try:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return False  # it has exited: its status is read as it is reaped
        return psutil.Process(pid).environ().get(EXECUTION_ID_VAR) == token
    except (ChildProcessError, psutil.Error):
        return False


def _find(started: Started, orphans: dict[int, Orphan], known: set[int], comm: str) -> None:
    """Find the command the runner was starting when it died, which the journal has no pid
    for: alive, a child of ours carrying its WR_EXECUTION_ID; already over, the one exited
    child named as the runner names its commands (``comm``, wr.procs.shell_link) that led a
    session and was made after the runner journalled the start (process start times are
    known to a clock tick, hence the slack). Only that one is reaped."""
    import psutil

    from wr.procs import EXECUTION_ID_VAR

    candidates = dict(orphans)
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            if child.pid in known or child.pid in orphans:
                continue
            with contextlib.suppress(psutil.Error):
                if child.status() == psutil.STATUS_ZOMBIE:
                    candidates[child.pid] = _inspect(child.pid)
                elif child.environ().get(EXECUTION_ID_VAR) == started.token:
                    started.pid = child.pid  # alive: `settle` kills it
                    return
    matches = [o for o in candidates.values() if o.pid not in known and o.leader
               and o.created >= started.bt - _TICK and (not comm or o.comm == comm)]
    if len(matches) == 1:
        found = matches[0]
        if found.pid not in orphans:
            orphans[found.pid] = _reap(found.pid)
        started.pid = found.pid
        known.add(found.pid)


def _inspect(pid: int) -> Orphan:
    """What identifies exited child ``pid`` before it is reaped (status not yet known)."""
    created, leader, comm = 0.0, False, ""
    with contextlib.suppress(OSError, ValueError, IndexError):  # gone: nothing to note
        with open(f"/proc/{pid}/stat", "rb") as f:
            head, _, tail = f.read().rpartition(b")")
        comm = head.partition(b"(")[2].decode(errors="replace")
        fields = tail.split()
        # (state, ppid, pgrp, session, ..., starttime at 19: clock ticks since boot)
        leader = int(fields[3]) == pid
        created = int(fields[19]) / _TICKS_PER_S
    return Orphan(pid, 0, created, leader, comm)


def _reap(pid: int) -> Orphan:
    """Reap child ``pid``, which has exited, noting what identifies it first."""
    orphan = _inspect(pid)
    with contextlib.suppress(ChildProcessError):
        _, orphan.status = os.waitpid(pid, 0)
    return orphan


def _reap_all() -> None:
    """Reap whatever of ours has exited (commands whose exits were journalled, orphans)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


STOP_GRACE_S = 1.0
"""How long a command whose runner died is given to end by itself before it is killed (by
the manager, for a runner killed with its keeper): killing one just as it ends could
kill it after its last side effect, and run it again."""


def _stop(pid: int, token: str, grace: float = STOP_GRACE_S) -> tuple[int | None, bool]:
    """Reap command ``pid``, killing it first if it still runs: its wait status (None if it
    is not ours to reap) and whether we killed it. Ours means we are its subreaper;
    otherwise a command still running is found by its WR_EXECUTION_ID and killed, and its
    exit cannot be read. A live process is killed only if it carries the command's
    WR_EXECUTION_ID: its pid may have been reused."""
    import psutil

    from wr.procs import EXECUTION_ID_VAR, killpg, marked_processes, signal_all

    deadline = time.monotonic() + grace
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info, ours = None, False
        else:
            ours = True
        if info is not None or not ours or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    if info is None:  # still running (or not ours): nobody can report it any more
        found = marked_processes(token) if token else {}
        try:
            same = psutil.Process(pid).environ().get(EXECUTION_ID_VAR) == token
        except psutil.Error:
            same = False
        if same:
            killpg(pid)
        signal_all(found, signal.SIGKILL)
        if not ours or not same:
            return None, bool(found) or same
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None, info is None
    return status, info is None


def _end_of(started: Started, killed: bool, why: str, host: str, ip: str, *,
            watched: bool = False, user_killed: bool = False) -> dict[str, Any]:
    """What to report of a command the worker could not report itself (``watched``: the
    keeper adopted it and saw it end; ``user_killed``: it was killed at the user's request
    meanwhile)."""
    from wr.execute import Marks, decide_outcome
    from wr.jobs import FailReason

    now = time.time()
    start = {"pid": started.pid, "host": host, "ip": ip, "at": started.at or now}
    report: dict[str, Any] = {"ended": now}
    if user_killed:
        report.update(outcome="bury", exitcode=-1, fail_reason=str(FailReason.KILLED))
        detail = f"{why} while this command ran; its keeper killed it at the user's request"
    elif started.code is not None and not killed:
        lost = ("its output after that was lost" if watched
                else "its output was not kept")
        if started.sig:
            outcome, reason = "release", str(FailReason.ABNORMAL)
            detail = (f"{why} while this command ran; the command was then killed by signal "
                      f"{started.sig} ({_signal_name(started.sig)}); {lost}")
        else:
            decided, fail = decide_outcome(started.code, Marks(), now - start["at"], 0, 0)
            outcome, reason = str(decided), str(fail)
            seen = "its keeper saw it" if watched else "before it could report it"
            detail = (f"the command exited with code {started.code}; {why} ({seen}), so "
                      f"{lost}")
        report.update(outcome=outcome, exitcode=started.code, fail_reason=reason)
    else:
        _remove_dir(started)
        if killed:
            detail = (f"{why} while this command ran; the command was killed, and goes "
                      f"back in the queue for another attempt")
        elif started.pid:
            detail = (f"{why} while this command ran, and how the command ended could not "
                      f"be known; it goes back in the queue for another attempt, though it "
                      f"may have run to its end")
        else:
            detail = (f"{why} as it was starting this command, which may or may not have "
                      f"started; it goes back in the queue for another attempt")
        report.update(outcome="release", exitcode=-1, fail_reason=str(FailReason.LOST))
    return {"key": started.key, "report": report, "stdout": "", "stderr": detail,
            "start": start}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _finish_removal(started: Started) -> None:
    """Remove what the runner was removing when it died (wr.workdirs.Sweeper): the unique
    directory of a command that asked for its cleanup, or the ``tmp/`` every command loses
    at its end."""
    if not started.unique:
        return
    if started.removing == "all":
        _remove_dir(started)
        return
    from wr.workdirs import remove_tmp

    remove_tmp(os.path.join(started.unique, "tmp"))


def _remove_dir(started: Started) -> None:
    """The unique working directory of a command that will run again elsewhere."""
    if not started.unique or not started.base:
        return
    from wr.workdirs import remove_unique_dir

    with contextlib.suppress(OSError):
        remove_unique_dir(started.unique, started.base)


async def _report(args: argparse.Namespace, runner_id: str, ends: list[dict[str, Any]],
                  how: str, adopted: list[Started], why: str) -> None:
    """Tell the manager what the dead worker left: the ends known now, then each adopted
    command's end as it comes, keeping those alive meanwhile; then ``bye``."""
    from wr.runner import runner_link
    from wr.runner_link import RECONNECT_FOR

    link = runner_link(args, runner_id)
    await link.connect(patience=RECONNECT_FOR)
    try:
        await _send_ends(link, runner_id, ends, how)
        if adopted:
            await _watch(link, runner_id, adopted, how, why, float(args.touch))
        await link.request({"op": "bye"}, patience=RECONNECT_FOR)
    finally:
        await link.close()


async def _send_ends(link: Any, runner_id: str, ends: list[dict[str, Any]], how: str) -> None:
    from wr.runner_link import RECONNECT_FOR

    if not ends:
        return
    msg = {"op": "end", "ends": ends, "reserve": None, "recovered": how}
    try:
        reply = await link.request(msg, patience=RECONNECT_FOR)
    except RuntimeError as exc:
        log.warning("the manager refused every report of runner %s: %s", runner_id, exc)
    else:
        for key, said in (reply.get("refused") or {}).items():
            log.warning("report for %s refused: %s", key, said)


async def _watch(link: Any, runner_id: str, adopted: list[Started], how: str, why: str,
                 touch: float) -> None:
    """Keep the adopted commands alive with the manager until each exits, reporting each
    end as it comes. A kill the manager asks for (a touch answered ``kill``) kills that
    command; a stop (the manager's push, or a signal to the keeper) kills them all, which
    puts them back in the queue uncharged (``interrupted``)."""
    import asyncio

    from wr.procs import killpg, marked_processes, signal_all
    from wr.runner_link import RECONNECT_FOR, host_ip

    loop = asyncio.get_running_loop()
    host, ip = socket.gethostname(), host_ip()
    stopping: list[bool] = []
    link.on_push = lambda msg: stopping.append(True) if msg.get("op") == "stop" else None
    exits: dict[str, asyncio.Future[None]] = {}
    for started in adopted:
        exits[started.key] = _exit_of(loop, started.pid)
    user_killed: set[str] = set()

    def kill(started: Started) -> None:
        killpg(started.pid)
        signal_all(marked_processes(started.token), signal.SIGKILL)

    watching = {s.key: s for s in adopted}
    while watching:
        if stopping or _STOP:
            for started in watching.values():
                kill(started)
        await asyncio.wait(list(exits[k] for k in watching), timeout=max(touch, 0.1))
        for key in [k for k in watching if exits[k].done()]:
            started = watching.pop(key)
            _, status = os.waitpid(started.pid, 0)
            started.code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
            started.sig = 0 if os.WIFEXITED(status) else os.WTERMSIG(status)
            if stopping or _STOP:
                end = _interrupted(started, host, ip)
            else:
                end = _end_of(started, False, why, host, ip, watched=True,
                              user_killed=key in user_killed)
            await _send_ends(link, runner_id, [end], how)
        for key, started in watching.items():  # still running: keep them alive
            try:
                reply = await link.request({"op": "touch", "key": key},
                                           patience=RECONNECT_FOR)
            except RuntimeError as exc:  # no longer this runner's: nobody wants it run
                log.warning("the manager no longer knows %s as this runner's (%s): killed",
                            key, exc)
                kill(started)
                continue
            if reply.get("kill"):
                user_killed.add(key)
                kill(started)


def _exit_of(loop: Any, pid: int) -> Any:
    """A future that resolves when child ``pid`` exits (left for us to reap)."""
    fut = loop.create_future()
    fd = os.pidfd_open(pid)

    def readable() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, readable)
    return fut


def _interrupted(started: Started, host: str, ip: str) -> dict[str, Any]:
    """The end of an adopted command killed because the runner was told to stop: back in
    the queue uncharged, as the worker would have put it (wr.execute)."""
    _remove_dir(started)
    start = {"pid": started.pid, "host": host, "ip": ip, "at": started.at or time.time()}
    report = {"outcome": "interrupted", "exitcode": -1, "fail_reason": "",
              "ended": time.time()}
    return {"key": started.key, "report": report, "stdout": "", "stderr": "",
            "start": start}
