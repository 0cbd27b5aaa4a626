"""Jobs in containers: `with_docker`, `with_singularity`, `container_mounts`, `monitor_docker`.

A job that names an image must never run bare on the host (issue 15): either its command
runs inside a container of that image, or the job fails with a reason that says why.
wr's own behaviour is spec/containers-mounts-lsf-env.md §2; what we do differently, and
why, is in docs/containers.md and docs/compatibility.md.

The runner's execute.py asks this module four things, all but the first from a thread:

* `prepare` (before the spawn): find the container command on this host, check that its
  engine answers, remove a container left by an earlier run of the same job, make sure the
  image is here (pulling it if not), and give back a `ContainerRun` whose `command` wraps the
  job's command line. Anything that fails raises ExecSetupError with a definite FailReason;
* `ContainerRun.sample` (every monitoring tick): the container's memory, read from its
  cgroup (or, for an engine on another machine, from `<cli> stats`), and its CPU time;
* `ContainerRun.kill` (the kill procedure, before the process tree is killed): SIGKILL the
  container through the engine, since it is not a descendant of the job's shell;
* `ContainerRun.finish` (after the command was reaped): remove the container if the run
  was killed or failed (`--rm` does it otherwise), and say how much CPU it used.

Docker-compatible engines are driven through their command (docker or podman, chosen by
the `containerruntime` setting), never through their API: the same few subcommands (`run`,
`ps`, `container inspect`, `image inspect`, `pull`, `kill`, `rm`, `stats`) behave alike in
both. The container is named after the job key, as in wr, so `docker logs <key>` works.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from wr.container_options import (
    AUTO,
    ContainerMount,
    ContainerRequest,
    parse_container_mounts,
)
from wr.jobs import FailReason

AUTO_ORDER = ("podman", "docker")
"""podman first: it needs no daemon, so where it is installed it works."""
SINGULARITY_NAMES = ("singularity", "apptainer")
"""Commands that run with_singularity jobs, in order of preference (apptainer is the
renamed singularity, with the same command line)."""
CLI_TIMEOUT_S = 60.0
"""Longest wait for one `ps`/`inspect`/`kill`/`rm` call of the container command."""
PULL_TIMEOUT_S = 3600.0
"""Longest wait for a missing image to be pulled before the job is given back."""
_EXECUTION_ID_VAR = "WR_EXECUTION_ID"
"""wr.execute.EXECUTION_ID_VAR: kept out of our helper calls, which are not the job's."""


def _failure(reason: str, detail: str, *, bury: bool) -> Exception:
    """An ExecSetupError (imported here, late: execute.py imports this module)."""
    from wr.execute import ExecSetupError, Outcome

    return ExecSetupError(reason, detail, Outcome.BURY if bury else Outcome.RELEASE)


def find_runtime(setting: str, path: str | None) -> str:
    """The container command `setting` names, found on `path`; ExecSetupError (bury) if
    there is none, naming what was looked for."""
    wanted = AUTO_ORDER if setting == AUTO else (setting,)
    for name in wanted:
        found = shutil.which(name, path=path)
        if found:
            return found
    looked = " or ".join(wanted)
    where = f"PATH {path!r}" if path is not None else "the default PATH"
    raise _failure(f"{FailReason.DOCKER}: no {looked} command",
                   f"with_docker/monitor_docker need a docker-compatible command; the "
                   f"containerruntime setting is '{setting}' and {looked} is not on {where} "
                   f"of this host", bury=True)


def find_singularity(path: str | None) -> str:
    """singularity, else apptainer, on `path`; ExecSetupError (bury) naming both if neither."""
    for name in SINGULARITY_NAMES:
        found = shutil.which(name, path=path)
        if found:
            return found
    where = f"PATH {path!r}" if path is not None else "the default PATH"
    raise _failure(f"{FailReason.NOTFOUND}: singularity (or apptainer)",
                   f"with_singularity needs singularity or apptainer, and neither is on {where}"
                   f" of this host; the command was not run", bury=True)


def prepare(request: ContainerRequest, key: str, cwd: str, env: Mapping[str, str],
            pass_names: Sequence[str] = ()) -> ContainerRun:
    """Get ready to run job `key` in its container (blocking: call from a thread).

    `cwd` is the job's actual working directory, `env` the environment its command will
    get, and `pass_names` the variables (the job's `env` overrides) to export into a docker
    container. Raises ExecSetupError when the job cannot run as asked.
    """
    path = env.get("PATH")
    helper_env = {k: v for k, v in env.items() if k != _EXECUTION_ID_VAR}
    try:
        mounts = parse_container_mounts(request.mounts)
    except ValueError as exc:
        raise _failure(f"{FailReason.START}: bad container_mounts", str(exc),
                       bury=True) from None
    if request.docker_image:
        if "," in cwd or '"' in cwd:
            raise _failure(f"{FailReason.DOCKER}: a comma or quote in the working directory",
                           f"the working directory '{cwd}' holds a comma or a double quote, "
                           f"which docker's --mount option cannot take", bury=True)
        run = ContainerRun(find_runtime(request.runtime, path), helper_env, cwd, key, own=True)
        run.clear_leftover()
        run.ensure_image(request.docker_image)
        run.prefix = docker_command(run.cli, key, request.docker_image, cwd, mounts,
                                    pass_names)
        return run
    prefix = ""
    if request.singularity_image:
        prefix = singularity_command(find_singularity(path), request.singularity_image, mounts)
    if request.monitor:
        run = ContainerRun(find_runtime(request.runtime, path), helper_env, cwd,
                           request.monitor, own=False)
        run.remember_running()
    else:
        run = ContainerRun("", helper_env, cwd, "", own=False)
    run.prefix = prefix
    return run


def docker_command(cli: str, name: str, image: str, cwd: str,
                   mounts: Sequence[ContainerMount], pass_names: Sequence[str]) -> str:
    """`<cli> run ... /bin/sh -c`, as shell text to which the quoted command is appended.

    The job's directory is bound at the same path and is the working directory; each
    variable in `pass_names` is exported with `-e NAME`, so the engine copies its value
    from the environment it was started with, never cut or reparsed by a shell (wr cut
    values at the first `:`, spec §2.3). The command runs as `/bin/sh -c`, so its standard
    input stays free (wr fed the command text on stdin).
    """
    argv = [cli, "run", "--rm", "--name", name, "-w", cwd,
            "--mount", f"type=bind,source={cwd},target={cwd}"]
    for m in mounts:
        spec = f"type=bind,source={m.outside},target={m.inside}"
        argv += ["--mount", spec + (",readonly" if m.read_only else "")]
    for var in pass_names:
        argv += ["-e", var]
    argv += [image, "/bin/sh", "-c"]
    return shlex.join(argv)


def singularity_command(binary: str, image: str, mounts: Sequence[ContainerMount]) -> str:
    """`<singularity> exec [-B ...] <image> /bin/sh -c`: singularity binds and enters the
    working directory and passes the environment through by itself."""
    argv = [binary, "exec"]
    for m in mounts:
        argv += ["-B", f"{m.outside}:{m.inside}" + (":ro" if m.read_only else "")]
    argv += [image, "/bin/sh", "-c"]
    return shlex.join(argv)


# -- one job's container ------------------------------------------------------------------

class ContainerRun:
    """One job's container: how its command is wrapped, and how the container is found,
    measured, killed and removed. Every method but `command` blocks (runs a command or
    reads /proc and cgroup files): call them from a thread."""

    def __init__(self, cli: str, env: Mapping[str, str], cwd: str, target: str, *,
                 own: bool) -> None:
        self.cli = cli
        """Absolute path of the docker-compatible command ("" for singularity)."""
        self.env = dict(env)
        self.cwd = cwd
        self.target = target
        """What to watch: our container's name, or monitor_docker's value ("" for none)."""
        self.own = own
        """Whether we started the container (with_docker), so we also remove it."""
        self.prefix = ""
        """Shell text the quoted command is appended to ("" to run it as it is)."""
        self.cid = ""
        """The watched container's full id, once found."""
        self.cpu_seconds = 0.0
        """The most CPU time the container was seen to have used."""
        self.killed = False
        self._known: frozenset[str] = frozenset()
        self._files: tuple[str, str, bool] | None = None
        self._use_stats = False

    def command(self, cmd: str) -> str:
        """The job's command as it runs on the host: inside the container, if it has one."""
        return f"{self.prefix} {shlex.quote(cmd)}" if self.prefix else cmd

    def _cli(self, *args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run the container command; a timeout or a start failure is a failed result."""
        argv = [self.cli, *args]
        try:
            return subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace",
                                  timeout=timeout, close_fds=True)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, -1, "", f"timed out after {timeout:g}s")
        except OSError as exc:
            return subprocess.CompletedProcess(argv, 127, "", str(exc))

    def _said(self, result: subprocess.CompletedProcess, what: str) -> str:
        text = (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
        return f"{os.path.basename(self.cli)} {what} failed: {text}"

    # -- before the run -----------------------------------------------------------------

    def _running(self, *, everything: bool = False) -> list[tuple[str, list[str]]]:
        """(full id, names) of the engine's running containers (all, with `everything`);
        raises RuntimeError with the engine's message if it does not answer."""
        args = ["ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]
        if everything:
            args.insert(1, "-a")
        result = self._cli(*args)
        if result.returncode != 0:
            raise RuntimeError(self._said(result, "ps"))
        found = []
        for line in result.stdout.splitlines():
            cid, _, names = line.strip().partition(" ")
            if cid:
                found.append((cid, [n.strip().lstrip("/") for n in names.split(",")]))
        return found

    def clear_leftover(self) -> None:
        """Check the engine answers, and remove a stopped container already named after
        this job (left by a run whose runner died, say), which would make `run` fail
        forever. A running one is left alone and the job given back to wait for it: it
        is an earlier attempt of this job (or the same job of another wr on this host),
        and a job never runs twice at once."""
        try:
            listed = self._running(everything=True)
        except RuntimeError as exc:
            raise _failure(str(FailReason.DOCKER), str(exc), bury=True) from None
        if not any(self.target in names for _, names in listed):
            return
        state = self._cli("container", "inspect", "--format", "{{.State.Running}}",
                          self.target)
        if state.returncode == 0 and state.stdout.strip() == "true":
            raise _failure(f"{FailReason.DOCKER}: container {self.target} is still running",
                           f"a container named {self.target} (this job's key) is running "
                           f"already, from an earlier attempt; the job waits for it to end "
                           f"(or `{os.path.basename(self.cli)} kill {self.target}` it)",
                           bury=False)
        removed = self._cli("rm", "-f", self.target)
        if removed.returncode != 0 and self._exists(self.target):
            raise _failure(f"{FailReason.DOCKER}: container {self.target} is in the way",
                           self._said(removed, "rm"), bury=False)

    def _exists(self, name: str) -> bool:
        return self._cli("container", "inspect", "--format", "{{.Id}}", name).returncode == 0

    def ensure_image(self, image: str) -> None:
        """Pull `image` if the engine does not have it; release the job if that fails."""
        if self._cli("image", "inspect", "--format", "{{.Id}}", image).returncode == 0:
            return
        pulled = self._cli("pull", image, timeout=PULL_TIMEOUT_S)
        if pulled.returncode != 0:
            raise _failure(f"{FailReason.DOCKER}: image '{image}' could not be pulled",
                           self._said(pulled, "pull"), bury=False)

    def remember_running(self) -> None:
        """monitor_docker: note which containers run already, so `?` can find the first
        one started after the command (and check the engine answers at all)."""
        try:
            self._known = frozenset(cid for cid, _ in self._running())
        except RuntimeError as exc:
            raise _failure(str(FailReason.DOCKER), str(exc), bury=True) from None

    # -- while it runs ------------------------------------------------------------------

    def sample(self) -> int:
        """Bytes of memory the watched container uses now (0 until it is found and once it
        is gone); its CPU time so far is kept in cpu_seconds."""
        if not self.target:
            return 0
        if not self.cid and not self._locate():
            return 0
        if self._use_stats:
            return self._stats_memory()
        memory_file, cpu_file, v1 = self._files
        try:
            memory = _stat_value(memory_file, "total_rss" if v1 else "anon")
            cpu = _read_cpu(cpu_file, v1)
        except OSError:
            return 0  # the container has ended
        self.cpu_seconds = max(self.cpu_seconds, cpu)
        return memory

    def _locate(self) -> bool:
        """Find the watched container and where its usage can be read; False if not yet."""
        try:
            cid = self._find()
        except RuntimeError:
            return False
        if not cid:
            return False
        found = self._cli("container", "inspect", "--format", "{{.Id}} {{.State.Pid}}", cid)
        full, _, pid = found.stdout.strip().partition(" ")
        if found.returncode != 0 or not pid.isdigit() or int(pid) <= 0:
            return False
        self.cid = full
        self._files = cgroup_files(int(pid), full)
        # An engine on another machine (DOCKER_HOST) reports a pid that is not ours.
        self._use_stats = self._files is None
        return True

    def _find(self) -> str:
        """The id of the container to watch, by wr's rules (spec §2.4): our own by name; for
        monitor_docker `?` the first container not running before the command, else a
        container with that name, else a cidfile (relative to the working directory) or
        the first of the files matching it as a glob, whose first line is a running
        container's id."""
        if self.own:
            found = self._cli("container", "inspect", "--format", "{{.Id}}", self.target)
            return found.stdout.strip() if found.returncode == 0 else ""
        running = self._running()
        ids = {cid for cid, _ in running}
        if self.target == "?":
            return next((cid for cid, _ in running if cid not in self._known), "")
        for cid, names in running:
            if self.target in names:
                return cid
        path = os.path.join(self.cwd, self.target)
        matches = sorted(glob.glob(self.target, root_dir=self.cwd))  # cwd's own [ and * stay
        for candidate in [path] if os.path.isfile(path) else [
                os.path.join(self.cwd, m) for m in matches]:
            try:
                with open(candidate, encoding="utf-8", errors="replace") as f:
                    first = f.readline().strip()
            except OSError:
                continue
            if first in ids:
                return first
        return ""

    def _stats_memory(self) -> int:
        result = self._cli("stats", "--no-stream", "--format", "{{.MemUsage}}", self.cid)
        if result.returncode != 0:
            return 0
        try:
            return parse_size(result.stdout.split("/")[0])
        except ValueError:
            return 0

    # -- kill and after -----------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the watched container (ours by name even before it was seen)."""
        self.killed = True
        if not self.target:
            return
        if not self.cid and not self.own:
            try:
                self.cid = self._find()
            except RuntimeError:
                return
        victim = self.target if self.own else self.cid
        if victim:
            self._cli("kill", victim)

    def finish(self, failed: bool) -> float:
        """After the command ended: make sure our container is gone if the run was killed
        or failed (`--rm` removed it otherwise); return the container's CPU seconds."""
        if self.own and (failed or self.killed):
            self._cli("kill", self.target)
            self._cli("rm", "-f", self.target)
        return self.cpu_seconds


# -- reading usage --------------------------------------------------------------------------

def cgroup_files(pid: int, cid: str) -> tuple[str, str, bool] | None:
    """(memory.stat, CPU usage file, is cgroup v1) of the cgroup holding `pid`, or None when
    that cgroup's path does not name container `cid` (the pid is not the container's on
    this machine) or cannot be read."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            membership = f.read()
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            mounts = cgroup_mounts(f.read())
    except OSError:
        return None
    return usage_files(membership, mounts, cid)


def usage_files(membership: str, mounts: Mapping[str, tuple[str, str]],
                cid: str) -> tuple[str, str, bool] | None:
    """`cgroup_files` from the text of /proc/<pid>/cgroup and `cgroup_mounts`.

    cgroup v1 memory comes from `total_rss` and CPU from `cpuacct.usage`; v2 from `anon`
    and `cpu.stat`'s `usage_usec`. Resident anonymous memory, like wr's `rss`, leaves out
    the page cache of files the job wrote. A hybrid host with the memory controller on v1
    is read as v1.
    """
    paths: dict[str, str] = {}
    for line in membership.splitlines():
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    memory_dir = _cgroup_dir(mounts, "memory", paths.get("memory"))
    cpu_dir = _cgroup_dir(mounts, "cpuacct", paths.get("cpuacct"))
    if memory_dir and cpu_dir and cid in paths["memory"]:
        return (os.path.join(memory_dir, "memory.stat"),
                os.path.join(cpu_dir, "cpuacct.usage"), True)
    unified = _cgroup_dir(mounts, "", paths.get(""))
    if unified and cid in paths[""] and os.path.exists(os.path.join(unified, "memory.stat")):
        return os.path.join(unified, "memory.stat"), os.path.join(unified, "cpu.stat"), False
    return None


def cgroup_mounts(mountinfo: str) -> dict[str, tuple[str, str]]:
    """controller ("" for cgroup v2) -> (root of the mount, mount point), from the text of
    /proc/self/mountinfo."""
    found: dict[str, tuple[str, str]] = {}
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if rest[0] == "cgroup2":
            found.setdefault("", (root, point))
        elif rest[0] == "cgroup":
            for option in rest[2].split(","):
                found.setdefault(option, (root, point))
    return found


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _cgroup_dir(mounts: Mapping[str, tuple[str, str]], controller: str,
                path: str | None) -> str:
    """The directory of cgroup `path` of `controller`, if that hierarchy is mounted here."""
    if not path or controller not in mounts:
        return ""
    root, point = mounts[controller]
    if root != "/" and not path.startswith(root.rstrip("/") + "/") and path != root:
        return ""
    inside = path[len(root):] if root != "/" else path
    folder = os.path.join(point, inside.lstrip("/"))
    return folder if os.path.isdir(folder) else ""


def _stat_value(stat_file: str, name: str) -> int:
    """A value of a cgroup `*.stat` file (0 if it lacks it)."""
    with open(stat_file, encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    return 0


def _read_cpu(cpu_file: str, v1: bool) -> float:
    if v1:
        with open(cpu_file, encoding="ascii") as f:
            return int(f.read().strip()) / 1e9
    return _stat_value(cpu_file, "usage_usec") / 1e6


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKMGTP]?i?B)?\s*$")
_UNITS = {"": 1, "B": 1, "kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "PB": 1000**5, "KiB": 1024, "kiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
          "TiB": 1024**4, "PiB": 1024**5}


def parse_size(text: str) -> int:
    """Bytes in a size as `docker stats` (`1.5MiB`) or `podman stats` (`51.89MB`) shows it."""
    m = _SIZE.match(text)
    if not m or (m.group(2) or "") not in _UNITS:
        raise ValueError(f"'{text}' is not a size such as 1.5MiB or 51.89MB")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])
