"""What a runner hands `wr.execute` to run one job, and what it gets back.

`ExecSpec` is built by the runner from the job the manager sent; `ExecResult` goes into the
runner's end-of-job report; `ExecSetupError` says a command could not even be started.
`decide_outcome` is the runner-side decision table of spec rest-and-queue.md §4.4, from a
run's exit code and `Marks` to what the manager should do with the job. The keeper
(wr.keeper) uses the same table for jobs whose runner died before reporting them.
`command_line` and `job_environment` turn a spec's command and environment into what the
shell is given.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from wr.errors import WrError
from wr.jobs import FailReason

if TYPE_CHECKING:
    from wr.container_options import ContainerRequest


class Outcome(StrEnum):
    """What the runner should tell the manager to do with the job."""

    ARCHIVE = "archive"
    RELEASE = "release"
    BURY = "bury"
    INTERRUPTED = "interrupted"


class ExecSetupError(WrError):
    """The command could not be started; `outcome` says whether to bury or release the job.

    `fail_reason` is the FailReason to report and `detail` the underlying error, which the
    runner stores as the job's stderr. `attempted` means the failure counts as an attempt
    (the runner reports a start with it), so that a job whose mounts keep failing uses up
    its retries and is buried instead of being retried for ever (issue 18).
    """

    def __init__(self, fail_reason: str, detail: str, outcome: str,
                 attempted: bool = False) -> None:
        super().__init__(f"{fail_reason}: {detail}")
        self.fail_reason = str(fail_reason)
        self.detail = detail
        self.outcome = str(outcome)
        self.attempted = attempted


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
    shell_via: str = ""
    """A path to execute for ``shell`` (a runner's named link to it), or "" for the shell
    found in the command's PATH."""
    app_name: str = "wr"
    monitor_interval: float = 1.0
    mounts: list[dict] = field(default_factory=list)
    """The job's mount configs (wr.mounts), mounted before the command, unmounted after."""
    container: ContainerRequest | None = None
    """with_docker/with_singularity/monitor_docker (wr.containers); None for most jobs."""
    group: str = ""
    """Unix group to run the command as (wr.unix_group); "" for the runner's own."""
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
