"""A job's behaviours, run by its runner once its command has ended (spec rest-and-queue
§4.12): ``on_success`` or ``on_failure`` ones, then ``on_exit`` ones.

``run`` runs a shell command in the job's directory and environment (without its execution
id, so a kill of the job's processes never takes it for one of them); ``cleanup`` and
``cleanup_all`` delete the job's unique directory, never through a mount into its bucket
(issue 18); ``remove`` asks the manager to delete the job once buried; ``nothing`` and
``copy_to_manager`` do nothing here. A behaviour that fails is a problem reported in the
job's stderr, not a failure of the job.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wr.capture import StreamCapture
from wr.exec_spec import command_line
from wr.procs import EXECUTION_ID_VAR
from wr.workdirs import remove_unique_dir

_READ_SIZE = 1 << 16


@dataclass(slots=True)
class Place:
    """Where a job ran, as its behaviours need to know it."""

    shell: str
    env: dict[str, str]
    """The command's environment."""
    run_dir: str
    """The directory ``run`` behaviours run in."""
    unique: str
    """The job's unique directory ("" when its cwd mattered): what a cleanup deletes."""
    cwd: str
    """The job's base directory, above ``unique``."""
    mounts: Any = None
    """wr.mounts.JobMounts while the job's mounts are up, else None."""
    sweep: Callable[[], None] | None = None
    """Hands the unique directory's removal to the runner's sweeper (wr.workdirs.Sweeper),
    so it goes while the next command runs; None removes it here."""


async def run_behaviours(behaviours: Sequence[dict], success: bool,
                         place: Place) -> tuple[list[str], bool]:
    """Run on_success/on_failure behaviours, then on_exit ones; return the problems, and
    whether a ``remove`` behaviour asked for the job to be deleted."""
    wanted = "on_success" if success else "on_failure"
    chosen = [b for b in behaviours if b.get("when") in (wanted, "on_failure|success")]
    chosen += [b for b in behaviours if b.get("when") == "on_exit"]
    problems: list[str] = []
    remove = False
    for i, behaviour in enumerate(chosen):
        do = behaviour.get("do")
        if do == "run":
            problem = await asyncio.to_thread(run_command, str(behaviour.get("arg", "")),
                                              place)
            if problem:
                problems.append(problem)
        elif do in ("cleanup", "cleanup_all") and place.mounts is not None:
            # Never through a mount into the bucket (issue 18).
            problems += await place.mounts.cleanup(place.unique, place.cwd)
        elif do in ("cleanup", "cleanup_all"):
            if place.unique and os.path.exists(place.unique):
                if success and place.sweep is not None and not any(
                        b.get("do") == "run" for b in chosen[i + 1:]):
                    place.sweep()  # nothing after needs the directory
                    continue
                try:
                    await asyncio.to_thread(remove_unique_dir, place.unique, place.cwd)
                except OSError as exc:
                    problems.append(f"cleanup of {place.unique} failed: {exc}")
        elif do == "remove":
            remove = True
        elif do not in ("nothing", "copy_to_manager"):
            problems.append(f"unknown behaviour {do!r}")
    return problems, remove


def run_command(cmd: str, place: Place) -> str:
    """Run a `run` behaviour (blocks); return "" or a description of its failure with its
    output."""
    env = {k: v for k, v in place.env.items() if k != EXECUTION_ID_VAR}
    capture = StreamCapture()
    try:
        proc = subprocess.Popen(
            [place.shell, "-c", command_line(cmd)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=place.run_dir,
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
