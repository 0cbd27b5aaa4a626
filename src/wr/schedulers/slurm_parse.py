"""What Slurm says, read: squeue rows, partitions and their limits, time limits, and how a
runner job ended (in words, and whether, with how much memory, it was killed for memory).

Pure functions of Slurm's output, so they are tested without a Slurm (tests/unit/
test_slurm_scheduler.py); the scheduler that runs the commands is wr.schedulers.slurm.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

SQUEUE_FORMAT = "%i|%T|%A|%N|%r|%j"
"""Job (or array task) id, state, job id, node, reason, name: the name last, as it may hold
any character."""

PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                            "RESV_DEL_HOLD", "SUSPENDED"})
RUNNING_STATES = frozenset({"CONFIGURING", "RUNNING", "RESIZING", "SIGNALING", "STOPPED"})
ENDING_STATES = frozenset({"COMPLETING", "STAGE_OUT"})
"""Its processes are ending: no longer a runner, but not yet gone either."""
COUNTED_STATES = PENDING_STATES | RUNNING_STATES
LIVE_STATES = COUNTED_STATES | ENDING_STATES

_TRANSIENT = re.compile(
    r"temporar|unable to contact|timed out|time out|zero bytes|connection refused|try again|"
    r"standby|in progress|violates accounting/qos policy|not responding|could not contact",
    re.IGNORECASE)
"""sbatch errors worth retrying later rather than burying the group's jobs for."""

_OVER_MEMORY = re.compile(r"exceeded memory limit \((\d+) > (\d+)\)", re.IGNORECASE)
"""slurmstepd's words when OverMemoryKill kills a step: memory used, then the limit."""


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One line of squeue: a runner job, or one task of a runner job array."""

    id: str
    """``12`` or, for an array task, ``12_3`` (what squeue, scancel and our logs use)."""
    state: str
    job_id: str
    node: str
    reason: str
    name: str

    @property
    def sort_key(self) -> tuple[int, int]:
        head, _, index = self.id.partition("_")
        return _int(head, 0), _int(index, 0)


def parse_squeue(text: str) -> list[SlurmJob]:
    """The jobs in squeue output printed with ``SQUEUE_FORMAT`` (malformed lines skipped)."""
    jobs = []
    for line in text.splitlines():
        parts = line.strip().split("|", 5)
        if len(parts) != 6 or not parts[0]:
            continue
        jid, state, job_id, node, reason, name = parts
        # squeue prints "CANCELLED by 0" for some jobs; the first word is the state.
        jobs.append(SlurmJob(jid, state.split()[0] if state else "", job_id, node, reason,
                             name))
    return jobs


def parse_slurm_time(text: str) -> float | None:
    """Seconds in a Slurm time limit ("30", "1:30:00", "2-12", "1-00:00:00"); None means
    unlimited. Raises ValueError for anything else."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE", ""):
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        days = int(d)
        parts = [int(p) for p in text.split(":")] if text else [0]
        while len(parts) < 3:
            parts.append(0)
        h, m, s = parts[:3]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            h, m, s = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, s = 0, parts[0], parts[1]
        else:
            h, m, s = parts[:3]
    return float(((days * 24 + h) * 60 + m) * 60 + s)


def format_minutes(minutes: int) -> str:
    """A Slurm-style duration for messages: 90 -> "1:30:00", 2880 -> "2-00:00:00"."""
    days, rest = divmod(minutes, 1440)
    text = f"{rest // 60}:{rest % 60:02d}:00"
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00" if days else text


@dataclass(frozen=True, slots=True)
class Partition:
    """What a partition offers a single-node, single-task runner job."""

    name: str
    default: bool = False
    state: str = "UP"
    max_time_s: float | None = None
    """Longest time limit a job may ask for; None: unlimited."""
    max_cpus_per_node: int | None = None
    max_mem_per_node: int | None = None
    max_mem_per_cpu: int | None = None
    nodes: tuple[tuple[int, int, int], ...] = ()
    """(node count, cpus, memory MB) of each kind of node in the partition."""

    def _shapes(self) -> list[tuple[int, int, int]]:
        shapes = []
        for count, cpus, mem in self.nodes:
            if self.max_cpus_per_node is not None:
                cpus = min(cpus, self.max_cpus_per_node)
            if self.max_mem_per_node is not None:
                mem = min(mem, self.max_mem_per_node)
            shapes.append((count, cpus, mem))
        return shapes

    def _mem_ok(self, cpus: int, mem: int) -> bool:
        return self.max_mem_per_cpu is None or mem <= self.max_mem_per_cpu * cpus

    def capacity(self, cpus: int, mem: int) -> int:
        """How many runners needing ``cpus`` and ``mem`` MB could run here at once."""
        if not self._mem_ok(cpus, mem):
            return 0
        return sum(count * min(c // cpus, m // mem) for count, c, m in self._shapes()
                   if c >= cpus and m >= mem)

    def refusal(self, cpus: int, mem: int, time_s: float) -> str | None:
        """Why this partition could never run a runner with these needs, or None."""
        if self.max_time_s is not None and time_s > self.max_time_s:
            return (f"partition {self.name} allows at most "
                    f"{format_minutes(int(self.max_time_s // 60))}")
        if not self._mem_ok(cpus, mem):
            return (f"partition {self.name} allows at most {self.max_mem_per_cpu} MB per cpu")
        shapes = self._shapes()
        if not shapes:
            return f"partition {self.name} has no nodes"
        if not any(c >= cpus and m >= mem for _, c, m in shapes):
            most_cpus = max(c for _, c, _ in shapes)
            most_mem = max(m for _, _, m in shapes)
            return (f"partition {self.name} offers at most {most_cpus} cpus and "
                    f"{most_mem} MB of memory on one node")
        return None


def parse_partitions(scontrol_text: str, sinfo_text: str) -> list[Partition]:
    """Partitions from ``scontrol show partition -o`` and ``sinfo -h -e -o %R|%D|%c|%m``."""
    nodes: dict[str, list[tuple[int, int, int]]] = {}
    for line in sinfo_text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        name, count, cpus, mem = parts
        try:
            nodes.setdefault(name, []).append((_int(count), _int(cpus), _int(mem)))
        except ValueError:
            continue
    partitions = []
    for line in scontrol_text.splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        name = fields.get("PartitionName")
        if not name:
            continue
        try:
            max_time = parse_slurm_time(fields.get("MaxTime", "UNLIMITED"))
        except ValueError:
            max_time = None
        partitions.append(Partition(
            name=name,
            default=fields.get("Default", "NO") == "YES",
            state=fields.get("State", "UP"),
            max_time_s=max_time,
            max_cpus_per_node=_limit(fields.get("MaxCPUsPerNode")),
            max_mem_per_node=_limit(fields.get("MaxMemPerNode")),
            max_mem_per_cpu=_limit(fields.get("MaxMemPerCPU")),
            nodes=tuple(nodes.get(name, ())),
        ))
    return partitions


def slurm_words(log_text: str, limit: int = 3) -> str:
    """The last few distinct things said at the end of a runner job's log, for messages."""
    said: list[str] = []
    for line in reversed(log_text.splitlines()):
        line = re.sub(r"^slurmstepd[^:]*:\s*(error:\s*)?", "", line.strip())
        line = line.strip("* ").strip()
        if line and line not in said:
            said.append(line)
        if len(said) >= limit:
            break
    text = "; ".join(reversed(said))
    return text if len(text) <= 500 else text[:497] + "..."


def describe_end(sid: str, state: str, *, exit_code: str = "", log_text: str = "",
                 reason: str = "", node: str = "") -> str:
    """How a runner job ended, in words for a warning or a FailReason."""
    if killed_for_memory(state, log_text):
        what = "ran out of memory"
    elif state == "TIMEOUT" or "due to time limit" in log_text.lower():
        what = "hit its time limit"
    elif state == "CANCELLED":
        what = "was cancelled"
    elif state == "FAILED":
        what = f"failed (exit code {exit_code})" if exit_code else "failed"
    elif state == "NODE_FAIL":
        what = f"was lost with its node{f' {node}' if node else ''} (NODE_FAIL)"
    elif state == "PREEMPTED":
        what = "was preempted"
    elif state == "COMPLETED":
        what = "completed"
    else:
        what = f"ended in state {state}"
    text = f"Slurm job {sid} {what}"
    said = slurm_words(log_text)
    if said:
        return f"{text}: {said}"
    # squeue's reason only when the log says nothing (it is "JobLaunchFailure" for a job
    # killed for its memory, which would mislead).
    if reason and reason not in ("None", "(null)"):
        text += f" (reason: {reason})"
    return text


def killed_for_memory(state: str, log_text: str) -> bool:
    """Whether Slurm ended a runner job for using more memory than it had: the state says
    so (cgroups), or, where memory is enforced by polling (``OverMemoryKill``), which
    leaves it FAILED, slurmstepd's words in its log do."""
    low = log_text.lower()
    return state == "OUT_OF_MEMORY" or "memory limit" in low or "oom-kill" in low


def memory_seen_mb(log_text: str, allocation_mb: int = 0) -> int:
    """The most memory, in MB, that slurmstepd said a runner job used when it killed it
    ("exceeded memory limit (USED > LIMIT), being killed"), or 0 if it said nothing.

    Slurm 22.05 counts bytes there; older versions counted KB. LIMIT is the job's
    allocation, so the unit that makes it closest to ``allocation_mb`` is taken (bytes
    when the allocation is not known)."""
    most = 0
    for m in _OVER_MEMORY.finditer(log_text):
        used, limit = int(m.group(1)), int(m.group(2))
        unit = 1  # bytes per unit of what it printed
        if allocation_mb > 0:
            unit = min((1, 1 << 10, 1 << 20),
                       key=lambda u: abs(limit * u / (1 << 20) - allocation_mb))
        most = max(most, -(-used * unit // (1 << 20)))
    return most


def size_mb(text: str, bare: int = 1 << 20) -> int:
    """MB in a Slurm size ("600M", "2G", "463671K", "1.5T"), rounded up; a number
    without a suffix counts ``bare`` bytes per unit (MB for memory requests, bytes for
    sacct's ``--noconvert``). 0 for anything else ("", "0", "Unknown")."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)B?\s*", text, re.IGNORECASE)
    if m is None:
        return 0
    scale = {"": bare, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
             "P": 1 << 50}[m.group(2).upper()]
    return math.ceil(float(m.group(1)) * scale / (1 << 20))


def job_fields(scontrol_text: str) -> dict[str, str]:
    """``scontrol show job -o <id>`` as a dict (``ExitCode``, ``MinMemoryNode``, ...)."""
    return dict(tok.split("=", 1) for tok in scontrol_text.split() if "=" in tok)


def exit_code_words(fields: dict[str, str]) -> str:
    """A job's ``ExitCode=code:signal`` as words: "1", or "0, signal 9"; "" if unknown."""
    m = re.fullmatch(r"(\d+):(\d+)", fields.get("ExitCode", ""))
    if m is None:
        return ""
    code, sig = m.groups()
    return code if sig == "0" else f"{code}, signal {sig}"


def is_transient(error: str) -> bool:
    """Whether an sbatch error looks worth retrying later."""
    return bool(_TRANSIENT.search(error))


def _int(text: str, default: int | None = None) -> int:
    m = re.match(r"\d+", text.strip())
    if m is None:
        if default is not None:
            return default
        raise ValueError(text)
    return int(m.group())


def _limit(text: str | None) -> int | None:
    if not text or text.upper() in ("UNLIMITED", "NONE", "0"):
        return None
    try:
        return _int(text)
    except ValueError:
        return None
