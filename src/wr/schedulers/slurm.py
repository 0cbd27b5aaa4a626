"""Runners as Slurm batch jobs: ``sbatch`` starts them, ``squeue`` watches, ``scancel`` trims.

Theory of operation. One background task owns all talk with Slurm. ``want()`` only records
what the manager asks for and wakes it. Each round the task reads this manager's runner jobs
with one ``squeue`` (at most every ``MIN_POLL_GAP_S``), judges those that ended, then, for
each scheduler group, submits the runners missing (one job array per round) or cancels
surplus *pending* ones. A group never has more runners than its ready plus running jobs, nor
more than its partition could run at once. Running runners are never cancelled for want of
work: they find nothing to reserve and end by themselves, as every runner does.

Names. Runner jobs are named ``wr<d>_<manager>_<group>``: ``d`` is the deployment's initial,
``manager`` 8 hex digits of the manager's directory (so two managers of one user never count
each other's runners) and ``group`` 12 of the scheduler group. The names are stable, so a
restarted manager counts the runners that outlived its predecessor.

Trouble. A submission Slurm refuses becomes a warning; unless it looks temporary (the
controller is busy or down), the group's requirements are "impossible" for a while and the
manager buries its ready jobs with Slurm's words. A runner job that ends other than by
completing (failed, out of memory, time limit, cancelled by someone else, node failure)
becomes a warning quoting its log, and the manager is told at once (``on_runners_gone``,
issue 16), with Slurm's words and, for a memory kill, the most memory the job was seen to
use (issue 13 item 10), so it can end that runner's jobs without waiting for the
keep-alive timeout (wr.manager.deaths); ``job_gone`` answers the same for a lost job. Each
runner passes ``--ref slurm:<job id>``, which is part of its runner id. What Slurm prints is
read in wr.schedulers.slurm_parse.

Slurm with no accounting storage is assumed: squeue is the source of truth, so MinJobAge
should be well above a few seconds for finished jobs to be seen. Killing a runner job must
kill the whole process tree (proctrack/cgroup or proctrack/linuxproc, not proctrack/pgid:
jobs run in their own sessions). Memory is requested as the group's memory plus
``RUNNER_RAM_MB`` for the runner itself; the time limit is the group's time plus
``TIME_SLACK_S``, and the runner takes no job that would not fit in what is left of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import shlex
import shutil
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from wr.errors import ConfigError
from wr.schedulers.base import (
    GroupRequirements,
    ImpossibleError,
    RunnerCommand,
    RunnerGone,
    Scheduler,
    local_process_gone,
    runner_ref,
)
from wr.schedulers.slurm_parse import (
    COUNTED_STATES,
    ENDING_STATES,
    LIVE_STATES,
    PENDING_STATES,
    SQUEUE_FORMAT,
    Partition,
    SlurmJob,
    describe_end,
    exit_code_words,
    format_minutes,
    is_transient,
    job_fields,
    killed_for_memory,
    memory_seen_mb,
    parse_partitions,
    parse_squeue,
    size_mb,
)

log = logging.getLogger("wr.manager")

RUNNER_RAM_MB = 100
"""MB added to a group's memory for the runner itself (a Python process of about 30 MB)."""
TIME_SLACK_S = 60.0
"""Seconds a runner job may live beyond its group's time (wr gives runners time + 1 min)."""
POLL_INTERVAL_S = 1.0
"""Seconds between squeue polls while this manager has runners or wants some."""
MIN_POLL_GAP_S = 0.5
"""Least seconds between two squeue polls, however often the manager calls ``want``."""
RETRY_AFTER_S = 60.0
"""Seconds before submitting again for a group after a temporary refusal (wr: 1 min)."""
REFUSAL_MEMORY_S = 30.0
"""Seconds a permanent refusal makes ``check`` call the group's requirements impossible."""
PARTITION_REFRESH_S = 300.0
"""Seconds between re-reading the partitions' limits."""
ORPHAN_GRACE_S = 10.0
"""Seconds after start-up before pending runners of groups nobody wants are cancelled."""
COMMAND_TIMEOUT_S = 60.0
"""Seconds a Slurm command may take before it counts as failed."""
STARTUP_TIMEOUT_S = 8.0
"""Seconds Slurm has to answer at start-up (``wr manager start`` waits 10 s by default)."""
ENDED_MEMORY = 10_000
"""How many ended runner jobs are remembered (to explain lost jobs)."""
LOG_TAIL_BYTES = 8192
"""How much of the end of a runner job's log is read to quote what Slurm said."""

# -- what wr asks of Slurm -----------------------------------------------------------------

def runner_cpus(req: GroupRequirements) -> int:
    """cpus-per-task of a group's runner job (at least 1: Slurm has no zero-cpu jobs)."""
    return max(1, math.ceil(req.cores - 1e-9))


def runner_mem(req: GroupRequirements) -> int:
    """MB of memory of a group's runner job: the jobs' memory plus the runner's own."""
    return max(1, req.ram_mb) + RUNNER_RAM_MB


def runner_minutes(req: GroupRequirements, partition: Partition | None = None) -> int:
    """Time limit, in minutes, of a group's runner job: the group's time plus
    ``TIME_SLACK_S``, within what the partition allows."""
    minutes = max(1, math.ceil((req.time_s + TIME_SLACK_S) / 60))
    if partition is not None and partition.max_time_s is not None:
        minutes = min(minutes, max(1, int(partition.max_time_s // 60)))
    return minutes


def choose_partition(partitions: list[Partition], req: GroupRequirements,
                     wanted: str = "") -> Partition:
    """The partition to run a group's runners in: ``wanted`` if given, else Slurm's default
    one if it can, else the first that can (up ones first). Raises ImpossibleError saying
    what is in the way."""
    cpus, mem, time_s = runner_cpus(req), runner_mem(req), req.time_s
    need = (f"a runner needing {cpus} cpu{'s' if cpus > 1 else ''}, {mem} MB of memory "
            f"and {format_minutes(math.ceil(time_s / 60))}")
    if wanted:
        chosen = next((p for p in partitions if p.name == wanted), None)
        if chosen is None:
            names = ", ".join(p.name for p in partitions) or "none"
            raise ImpossibleError(f"Slurm partition '{wanted}' does not exist "
                                  f"(partitions: {names})")
        why = chosen.refusal(cpus, mem, time_s)
        if why:
            raise ImpossibleError(f"Slurm cannot run {need}: {why}")
        return chosen
    reasons = []
    for p in sorted(partitions, key=lambda p: (p.state != "UP", not p.default)):
        if p.state == "INACTIVE":
            continue
        why = p.refusal(cpus, mem, time_s)
        if why is None:
            return p
        reasons.append(why)
    raise ImpossibleError(f"no Slurm partition can run {need}: "
                          f"{'; '.join(reasons) or 'there are no partitions'}")


def job_name(deployment: str, manager_dir: str, group: str) -> str:
    """The Slurm job name of a group's runners (see the module docstring)."""
    return f"{name_prefix(deployment, manager_dir)}{_hex(group, 12)}"


def name_prefix(deployment: str, manager_dir: str) -> str:
    """What the names of all of one manager's runner jobs start with."""
    return f"wr{deployment[:1]}_{_hex(manager_dir, 8)}_"


def sbatch_args(*, name: str, group: str, req: GroupRequirements, minutes: int, count: int,
                log_dir: Path, partition: str = "", account: str = "",
                options: Iterable[str] = ()) -> list[str]:
    """The sbatch command line that submits ``count`` runners of a group (an array if more
    than one); the script comes on stdin. The user's extra options come first, so ours (the
    ones wr relies on) win where they clash."""
    args = ["sbatch", "--parsable", *options]
    if partition:
        args.append(f"--partition={partition}")
    if account:
        args.append(f"--account={account}")
    args += [
        f"--job-name={name}",
        "--nodes=1", "--ntasks=1",
        f"--cpus-per-task={runner_cpus(req)}",
        f"--mem={runner_mem(req)}M",
        f"--time={minutes}",
        "--no-requeue",
        f"--chdir={log_dir}",
        f"--comment=wr runner for scheduler group {_printable(group)[:200]}",
    ]
    if count > 1:
        args += [f"--array=0-{count - 1}", f"--output={log_dir}/%A_%a.log"]
    else:
        args.append(f"--output={log_dir}/%j.log")
    return args


def batch_script(command: RunnerCommand, group: str, minutes: int) -> str:
    """The batch script of a group's runner jobs: the runner, told its Slurm name and how
    long it may live (the job's time limit, ``minutes``)."""
    runner = " ".join(shlex.quote(a) for a in command.argv)
    max_time = minutes * 60
    return (
        "#!/bin/sh\n"
        f"# wr runner for scheduler group {_printable(group)}\n"
        'ref="${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"\n'
        f'exec {runner} --ref "slurm:${{ref:-$SLURM_JOB_ID}}" --max-time {max_time}\n'
    )


def runner_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The environment sbatch passes on to runners: ours plus the runner command's, minus
    the SLURM_* variables of any job the manager itself runs in (SLURM_CONF stays)."""
    env = {k: v for k, v in base.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    env.update(extra)
    return env


def _hex(text: str, n: int) -> str:
    return hashlib.md5(text.encode()).hexdigest()[:n]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


# -- the scheduler -----------------------------------------------------------------------

@dataclass(slots=True)
class _Group:
    name: str
    job_name: str
    req: GroupRequirements
    count: int
    command: RunnerCommand
    retry_at: float = 0.0
    asked: bool = True
    """``want`` was called since the last round: missing runners may be submitted. (As with
    the local scheduler, a runner that ends is not replaced until the manager, told by
    ``on_change``, asks again.)"""


@dataclass(slots=True)
class _Ended:
    state: str
    name: str
    reason: str = ""
    node: str = ""
    gone: RunnerGone | None = None
    """What is known of the runner's end, once worked out (``_judge``)."""


@dataclass(slots=True)
class _Result:
    code: int
    out: str
    err: str


class SlurmScheduler(Scheduler):
    """Runners as Slurm jobs of this user; see the module docstring."""

    name = "slurm"

    def __init__(self, *, manager_dir: Path | str, deployment: str = "production",
                 partition: str = "", account: str = "", options: str = "",
                 poll_interval: float = POLL_INTERVAL_S) -> None:
        super().__init__()
        self.partition = partition.strip()
        self.account = account.strip()
        try:
            self.options = shlex.split(options)
        except ValueError as exc:
            raise ConfigError(f"Config 'slurmoptions' has value '{options}', which cannot "
                              f"be split into words ({exc}).") from None
        self.log_dir = Path(manager_dir) / "slurm"
        self.deployment = deployment
        self.manager_dir = str(manager_dir)
        self.prefix = name_prefix(deployment, self.manager_dir)
        self.poll_interval = poll_interval
        self.host = socket.gethostname()
        self.partitions: list[Partition] = []
        self.max_array = 1000
        self._groups: dict[str, _Group] = {}
        self._by_job_name: dict[str, str] = {}
        self._jobs: dict[str, SlurmJob] = {}
        self._ended: OrderedDict[str, _Ended] = OrderedDict()
        self._cancelled: set[str] = set()
        self._refused: dict[GroupRequirements, tuple[float, str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_poll = -math.inf
        self._last_partitions = -math.inf
        self._started = 0.0
        self._uid = str(os.getuid())

    # -- the interface --------------------------------------------------------------------

    async def start(self) -> None:
        for tool in ("sbatch", "squeue", "scancel", "sinfo", "scontrol"):
            if shutil.which(tool) is None:
                raise ConfigError(f"the slurm scheduler needs '{tool}', which is not in PATH: "
                                  f"is Slurm installed here?")
        conf = os.environ.get("SLURM_CONF", "")
        if conf and not os.path.exists(conf):
            raise ConfigError(f"SLURM_CONF is {conf}, which does not exist")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        problem = await self._load_partitions(timeout=STARTUP_TIMEOUT_S)
        if problem:
            raise ConfigError(f"Slurm does not answer: {problem}")
        shown = await _run(["scontrol", "show", "config"], timeout=STARTUP_TIMEOUT_S)
        m = re.search(r"^MaxArraySize\s*=\s*(\d+)", shown.out, re.MULTILINE)
        if m:
            self.max_array = max(1, int(m.group(1)) - 1)
        self._started = time.monotonic()
        await self._poll()
        self._task = asyncio.ensure_future(self._loop())

    def check(self, req: GroupRequirements) -> None:
        refused = self._refused.get(req)
        if refused is not None and time.monotonic() - refused[0] < REFUSAL_MEMORY_S:
            raise ImpossibleError(refused[1])
        if self.partitions:
            choose_partition(self.partitions, req, self.partition)

    def want(self, group: str, req: GroupRequirements, count: int, priority: int,
             command: RunnerCommand) -> None:
        if self._closing:
            return
        g = self._groups.get(group)
        if g is None:
            if count <= 0:
                return
            name = job_name(self.deployment, self.manager_dir, group)
            g = self._groups[group] = _Group(group, name, req, count, command)
            self._by_job_name[name] = group
        else:
            g.req, g.count, g.command = req, count, command
        g.asked = True
        self._wake.set()

    def runners(self, group: str | None = None) -> int:
        if group is None:
            return sum(1 for j in self._jobs.values() if j.state in COUNTED_STATES)
        g = self._groups.get(group)
        return len(self._live(g.job_name)) if g else 0

    async def process_gone(self, pid: int, host: str) -> bool:
        return local_process_gone(pid, host, self.host)

    async def job_gone(self, pid: int, host: str, runner_id: str) -> RunnerGone | None:
        ref = runner_ref(runner_id)
        if not ref.startswith("slurm:"):
            return RunnerGone() if await self.process_gone(pid, host) else None
        sid = ref.removeprefix("slurm:")
        if sid in self._jobs and self._jobs[sid].state not in ENDING_STATES:
            return None
        ended = self._ended.get(sid)
        if ended is None:
            res = await _run(["squeue", "-h", "-r", "-t", "all", "-j", sid,
                              "-o", SQUEUE_FORMAT])
            if res.code != 0 and "invalid job id" not in res.err.lower():
                return None
            rows = [j for j in parse_squeue(res.out) if j.id == sid]
            if not rows:
                return RunnerGone(f"Slurm job {sid} is no longer known to Slurm",
                                  runner_ended=True)
            if rows[0].state in LIVE_STATES:
                return None
            ended = self._remember_end(rows[0])
        if host == self.host and not await self.process_gone(pid, host):
            return None  # Slurm let the job's process outlive its runner: not gone yet
        if ended.gone is None:
            ended.gone = await self._judge(sid, ended)
        return ended.gone

    async def shutdown(self, grace: float) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            # Let a round in progress finish (an sbatch half done would leave a job behind).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), COMMAND_TIMEOUT_S)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self._poll()
        pending = [j.id for j in self._jobs.values() if j.state in PENDING_STATES]
        if pending:
            await self._scancel(pending)
            await self._poll()
        while self._jobs and loop.time() < deadline:
            await asyncio.sleep(0.2)
            await self._poll()
        if self._jobs:
            await self._scancel(sorted(self._jobs))
        deadline = loop.time() + 15
        while self._jobs and loop.time() < deadline:
            await asyncio.sleep(0.2)
            await self._poll()
        if self._jobs:
            log.warning("Slurm jobs of runners still there after stopping: %s",
                        ", ".join(sorted(self._jobs)))

    # -- the background task --------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._closing:
            try:
                await self._round()
            except Exception:
                log.exception("slurm scheduler round failed")
            busy = bool(self._jobs) or any(g.count > 0 for g in self._groups.values())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       self.poll_interval if busy else PARTITION_REFRESH_S)
            self._wake.clear()

    async def _round(self) -> None:
        now = time.monotonic()
        if now - self._last_partitions > PARTITION_REFRESH_S:
            await self._load_partitions()
        if now - self._last_poll >= MIN_POLL_GAP_S:
            await self._poll()
        await self._apply()

    async def _load_partitions(self, timeout: float = COMMAND_TIMEOUT_S) -> str:
        """Read the partitions; returns what went wrong, or ""."""
        self._last_partitions = time.monotonic()
        part, nodes = await asyncio.gather(
            _run(["scontrol", "show", "partition", "-o"], timeout=timeout),
            _run(["sinfo", "-h", "-e", "-o", "%R|%D|%c|%m"], timeout=timeout))
        for res in (part, nodes):
            if res.code != 0:
                problem = res.err.strip() or f"exit code {res.code}"
                self.warn(f"could not read Slurm's partitions: {problem}")
                return problem
        self.partitions = parse_partitions(part.out, nodes.out)
        return ""

    async def _poll(self) -> bool:
        """Read this manager's runner jobs from squeue; judge those that ended, and tell the
        manager at once of the runners they held (``on_runners_gone``), so that their jobs
        need not wait for the keep-alive timeout (issue 16)."""
        res = await _run(["squeue", "-h", "-r", "-t", "all", "-u", self._uid,
                          "-o", SQUEUE_FORMAT])
        if res.code != 0:
            self.warn(f"squeue failed: {res.err.strip() or f'exit code {res.code}'}")
            return False
        self._last_poll = time.monotonic()
        seen = {j.id: j for j in parse_squeue(res.out) if j.name.startswith(self.prefix)}
        ended: list[tuple[SlurmJob, bool]] = []
        for sid, j in seen.items():
            if j.state in LIVE_STATES:
                self._jobs[sid] = j
            elif sid not in self._ended:
                watched = self._jobs.pop(sid, None) is not None
                ended.append((j, watched))
            else:
                self._jobs.pop(sid, None)
        gone: dict[str, RunnerGone] = {}
        vanished = [s for s in self._jobs if s not in seen]
        for sid in vanished:
            # Gone from squeue altogether: cancelled while pending, or long finished.
            j = self._jobs.pop(sid)
            entry = self._remember_end(j, state="VANISHED")
            entry.gone = gone[f"slurm:{sid}"] = RunnerGone(
                f"Slurm job {sid} is no longer known to Slurm", runner_ended=True)
            self._cancelled.discard(sid)
        for j, watched in ended:
            entry = self._remember_end(j)
            if j.state == "COMPLETED":
                _remove_if_empty(self._log_of(j.id))
            elif watched and j.id not in self._cancelled:
                entry.gone = gone[f"slurm:{j.id}"] = await self._judge(j.id, entry)
                group = self._by_job_name.get(j.name, "?")
                self.warn(f"{entry.gone.reason} (a runner for scheduler group '{group}'; "
                          f"log: {self._log_of(j.id)})")
            self._cancelled.discard(j.id)
        if (ended or vanished) and not self._closing:
            if gone:
                self.on_runners_gone(gone)
            self.on_change()
        return True

    def _remember_end(self, j: SlurmJob, state: str = "") -> _Ended:
        entry = _Ended(state or j.state, j.name, j.reason, j.node)
        self._ended[j.id] = entry
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)
        return entry

    async def _judge(self, sid: str, ended: _Ended) -> RunnerGone:
        """What is known of a runner job's end: Slurm's words (state, exit code, its log's
        last lines) and, if it was killed for its memory, the most memory it was seen to
        use: what slurmstepd said, or accounting's MaxRSS, and at least its allocation."""
        try:
            with open(self._log_of(sid), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
        oom = killed_for_memory(ended.state, text)
        fields: dict[str, str] = {}
        if ended.state == "FAILED" or oom:
            fields = job_fields((await _run(["scontrol", "show", "job", "-o", sid])).out)
        reason = describe_end(sid, ended.state, exit_code=exit_code_words(fields),
                              log_text=text, reason=ended.reason, node=ended.node)
        if not oom:
            return RunnerGone(reason, runner_ended=True)
        allocation = size_mb(fields.get("MinMemoryNode", ""))
        seen = max(allocation, memory_seen_mb(text, allocation), await _max_rss_mb(sid))
        return RunnerGone(reason, runner_ended=True, out_of_memory_mb=max(seen, 1))

    def _log_of(self, sid: str) -> Path:
        return self.log_dir / f"{sid}.log"

    def _live(self, name: str) -> list[SlurmJob]:
        return [j for j in self._jobs.values()
                if j.name == name and j.state in COUNTED_STATES and j.id not in self._cancelled]

    async def _apply(self) -> None:
        """Submit missing runners and cancel surplus pending ones, group by group."""
        now = time.monotonic()
        cancel: list[str] = []
        for gname, g in list(self._groups.items()):
            live = self._live(g.job_name)
            target = 0 if self._closing else g.count
            partition = None
            if target > 0 and self.partitions:
                try:
                    partition = choose_partition(self.partitions, g.req, self.partition)
                except ImpossibleError:
                    target = 0  # check() tells the manager, which buries the jobs
                else:
                    cap = partition.capacity(runner_cpus(g.req), runner_mem(g.req))
                    target = min(target, max(cap, 1))
            asked, g.asked = g.asked, False
            if target > len(live):
                if asked and now >= g.retry_at:
                    await self._submit(g, min(target - len(live), self.max_array),
                                       partition)
                elif now < g.retry_at:
                    g.asked = asked  # try again once the back-off is over
            elif target < len(live):
                pending = sorted((j for j in live if j.state in PENDING_STATES),
                                 key=lambda j: j.sort_key, reverse=True)
                cancel += [j.id for j in pending[:len(live) - target]]
            if g.count <= 0 and not self._live(g.job_name) and self._groups.get(gname) is g:
                del self._groups[gname]
        if now - self._started > ORPHAN_GRACE_S:
            wanted = {g.job_name for g in self._groups.values() if g.count > 0}
            cancel += [j.id for j in self._jobs.values() if j.state in PENDING_STATES
                       and j.name not in wanted and j.id not in self._cancelled]
        if cancel:
            await self._cancel_pending(cancel)

    async def _submit(self, g: _Group, count: int, partition: Partition | None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        minutes = runner_minutes(g.req, partition)
        args = sbatch_args(
            name=g.job_name, group=g.name, req=g.req, minutes=minutes, count=count,
            log_dir=self.log_dir,
            partition=self.partition or (partition.name if partition else ""),
            account=self.account, options=self.options)
        res = await _run(args, stdin=batch_script(g.command, g.name, minutes),
                         env=runner_env(os.environ, g.command.env))
        if res.code != 0:
            said = " ".join(line.strip() for line in res.err.splitlines() if line.strip())
            said = said or f"sbatch exited with code {res.code}"
            msg = f"Slurm refused runners for scheduler group '{g.name}': {said}"
            if is_transient(said):
                g.retry_at = time.monotonic() + RETRY_AFTER_S
                self.warn(msg)
            else:
                # The same submission would be refused again: the manager buries the
                # group's ready jobs with Slurm's words (check() raises), and warns.
                self._refused[g.req] = (time.monotonic(), msg)
                self.on_change()
            return
        g.retry_at = 0.0
        self._refused.pop(g.req, None)
        head = res.out.strip().split(";")[0]
        ids = [head] if count == 1 else [f"{head}_{i}" for i in range(count)]
        for sid in ids:
            self._jobs[sid] = SlurmJob(sid, "PENDING", head, "", "", g.job_name)
        log.debug("submitted %d runner(s) for group %s as Slurm job %s", count, g.name, head)

    async def _cancel_pending(self, ids: list[str]) -> None:
        """scancel runner jobs that are still pending (never one that has just started:
        ``scancel --state`` cannot be used, as it cancels whole arrays)."""
        res = await _run(["squeue", "-h", "-r", "-t", "PENDING", "-j", ",".join(ids),
                          "-o", SQUEUE_FORMAT])
        still = {j.id for j in parse_squeue(res.out)} if res.code == 0 else set()
        chosen = [sid for sid in ids if sid in still]
        if chosen:
            await self._scancel(chosen)

    async def _scancel(self, ids: list[str]) -> None:
        self._cancelled.update(ids)
        for i in range(0, len(ids), 500):
            res = await _run(["scancel", *ids[i:i + 500]])
            if res.code != 0 and "invalid job id" not in res.err.lower():
                self.warn(f"scancel failed: {res.err.strip() or f'exit code {res.code}'}")


async def _run(argv: list[str], *, stdin: str | None = None,
               env: Mapping[str, str] | None = None,
               timeout: float = COMMAND_TIMEOUT_S) -> _Result:
    """Run a Slurm command without blocking the loop; failures come back as a result."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else
            asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(env) if env is not None else None,
            close_fds=True)
    except OSError as exc:
        return _Result(127, "", f"could not run {argv[0]}: {exc}")
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return _Result(124, "", f"{argv[0]} timed out after {timeout:g}s")
    return _Result(proc.returncode or 0, out.decode(errors="replace"),
                   err.decode(errors="replace"))


async def _max_rss_mb(sid: str) -> int:
    """The largest MaxRSS of a job's steps in Slurm's accounting, MB; 0 where there is no
    accounting (sacct then fails, as on the test clusters)."""
    res = await _run(["sacct", "-n", "-P", "--noconvert", "-j", sid, "-o", "MaxRSS"])
    if res.code != 0:
        return 0
    return max((size_mb(line, bare=1) for line in res.out.split()), default=0)


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()

