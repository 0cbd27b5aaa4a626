"""What the queue says and is told: its events, a runner's end report, its errors.

`wr.queue.Queue` takes commands and emits events; these are the records that pass between
it and the manager (issue 14: one module each for the rules and for the records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from wr.jobs import Job, State
from wr.learning import Recommendation


class Changed(NamedTuple):
    """A job moved from ``old`` (None: it is new to the queue) to ``new``.

    Events are named tuples: a restart or a big add makes a million of them."""

    job: Job
    old: State | None
    new: State


class LimitChanged(NamedTuple):
    """A limit group's count limit was set (None: removed) by a job's ``name:N`` entry."""

    name: str
    limit: int | None


class Marked(NamedTuple):
    """A job's record changed without a change of state (a kill was asked for): store it,
    or a restart would forget it."""

    job: Job


class Replaced(NamedTuple):
    """A job was replaced by a modified version (``old_key`` may equal ``job.key``);
    ``old_rep_grp`` is the rep group it had, by which it stays findable."""

    old_key: str
    job: Job
    old_rep_grp: str = ""


@dataclass(slots=True)
class EndReport:
    """What a runner says happened to a job it ran (see wr.execute.ExecResult)."""

    outcome: str  # archive | release | bury | interrupted
    exitcode: int = 0
    fail_reason: str = ""
    peak_ram: int = 0
    peak_disk: int = 0
    cpu_time: float = 0.0
    ended: float = 0.0
    actual_cwd: str = ""
    remove: bool = False

    @classmethod
    def from_wire(cls, r: dict) -> EndReport:
        """An end report as a runner sends it (wr.manager.runner_ws); KeyError, TypeError or
        ValueError if it is malformed."""
        return cls(
            outcome=r["outcome"], exitcode=int(r.get("exitcode", 0)),
            fail_reason=str(r.get("fail_reason", "")),
            peak_ram=int(r.get("peak_ram", 0)), peak_disk=int(r.get("peak_disk", 0)),
            cpu_time=float(r.get("cpu_time", 0.0)), ended=float(r.get("ended", 0.0)),
            actual_cwd=str(r.get("actual_cwd", "")), remove=bool(r.get("remove")),
        )


@dataclass(slots=True)
class Staged:
    """New jobs worked out by `Queue.stage`, for `Queue.add` to make ready in bulk."""

    jobs: dict[str, Job] = field(default_factory=dict)
    """The jobs worked out (requirements adjusted, scheduler group set), by key."""
    recommendations: dict[str, Recommendation] = field(default_factory=dict)
    """What was learned of each req_grp when they were worked out."""


class QueueError(Exception):
    """A command that does not apply to the job in its current state (wr's "bad job")."""
