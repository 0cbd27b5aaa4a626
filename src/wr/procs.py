"""The processes of a job's command: starting them cheaply, measuring them, killing them all.

Used by wr.execute while a runner runs a command, and by wr.keeper, which kills what a dead
runner left running. Descendants of a command may leave its process group and session
(double-forked daemons), so every process of one execution carries ``WR_EXECUTION_ID`` in its
environment and is found by it (`marked_processes`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil

KILL_GRACE_S = 0.5
"""How long a descendant gets between SIGTERM and SIGKILL when a job is killed."""

EXECUTION_ID_VAR = "WR_EXECUTION_ID"
"""Environment variable that marks every process of one execution, found again by a kill."""


def tree_memory(root: psutil.Process | None) -> tuple[int, dict[int, psutil.Process]]:
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


def marked_processes(token: str) -> dict[int, psutil.Process]:
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


def signal_all(procs: dict[int, psutil.Process], sig: int) -> None:
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


def spawn(argv: list[str], cwd: str, env: dict[str, str], out: int, err: int,
          via: str = "") -> int:
    """Start `argv` in `cwd` in a new session, stdin from /dev/null, stdout and stderr to
    `out` and `err`, with posix_spawn; 0 if that cannot be done here (the caller uses Popen,
    which also gives the usual errors for a shell or directory that is missing).

    posix_spawn has no working-directory action before Python 3.13, so we change ours for
    the moment of the spawn; a runner runs one command at a time and uses absolute paths.
    Descriptors Python opens are close-on-exec (PEP 446); any others this process was given
    are made close-on-exec at its first spawn (`_close_inherited_on_exec`), so only the
    three given reach the command, as with Popen's close_fds. ``via``: a path to execute
    instead of the shell found in PATH (a runner's link to it, whose name marks its
    commands: wr.keeper).
    """
    global _devnull
    shell = via or _find_shell(argv[0], env.get("PATH"))
    if not shell or not hasattr(os, "posix_spawn"):
        return 0
    try:
        if _devnull < 0:
            _devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if min(_devnull, out, err) <= 2:
            return 0  # we lack standard streams of our own: Popen knows how to shuffle
        actions = [(os.POSIX_SPAWN_DUP2, _devnull, 0), (os.POSIX_SPAWN_DUP2, out, 1),
                   (os.POSIX_SPAWN_DUP2, err, 2)]
        _close_inherited_on_exec()
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


_inherited_closed_for = 0
"""The pid whose inherited descriptors were made close-on-exec (0: none yet)."""


def _close_inherited_on_exec() -> None:
    """Make every descriptor above 2 that is not close-on-exec so, once per process.

    Only descriptors a process was given (by its parent) can be inheritable: Python opens
    its own close-on-exec (PEP 446), and wr never makes one inheritable. Finding them took
    a listing of /proc/self/fd and a system call per descriptor at every spawn, a fifth of
    a runner's CPU between two commands of milliseconds (issue 17); once is enough."""
    global _inherited_closed_for
    if _inherited_closed_for == os.getpid():
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own, closed by now
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
    _inherited_closed_for = os.getpid()


def killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


_total_ram = 0


def machine_ram() -> int:
    global _total_ram
    if not _total_ram:
        _total_ram = psutil.virtual_memory().total
    return _total_ram


def kill_tree(
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
    killpg(pgid)
    victims.update(marked_processes(token))
    victims.pop(pgid, None)  # the command itself: our child, killed with its group
    signal_all(victims, signal.SIGTERM)
    time.sleep(KILL_GRACE_S)
    signal_all(victims, signal.SIGKILL)
    killpg(pgid)
    # Anything that forked during the grace period.
    for _ in range(3):
        stragglers = marked_processes(token)
        if not stragglers:
            break
        signal_all(stragglers, signal.SIGKILL)
        time.sleep(0.05)


def shell_link(directory: Path, name: str, shell: str, path: str | None) -> str:
    """A link named ``name`` (at most 15 characters) in ``directory`` to ``shell`` as found
    in ``path``: a command started through it is called ``name`` by the kernel (its
    ``comm``), which is still readable once the command has exited and not been reaped, when
    nothing else about it is (wr.keeper tells whose command it was by it). "" if the shell
    is not found or the link cannot be made."""
    target = _find_shell(shell, path)
    if not target:
        return ""
    link = directory / name
    try:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.path.realpath(target))
    except OSError:
        return ""
    return str(link)


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux's ``PR_SET_CHILD_SUBREAPER``): orphans
    among its descendants are re-parented to it rather than to init, so it can still read
    how they ended (wr.keeper). False where that cannot be done."""
    return prctl(_PR_SET_CHILD_SUBREAPER, 1)


def prctl(option: int, value: object) -> bool:
    """Linux's prctl(2) with one argument; False if it failed or does not exist here."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_zombies(keep: set[int]) -> list[int]:
    """Reap this process's children that have exited, except ``keep`` (children someone
    else waits for): a subreaper inherits processes that jobs left behind, which would stay
    zombies for ever. Returns the pids reaped."""
    reaped = []
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return reaped
    for child in children:
        if child.pid in keep:
            continue
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
                reaped.append(child.pid)
    return reaped


_PR_SET_CHILD_SUBREAPER = 36

