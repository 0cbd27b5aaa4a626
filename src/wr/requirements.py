"""What a job asks for when it is made ready: learned values and bumps after failures.

wr learns how much memory, time and disk the jobs of each *req_grp* use, and asks for that
instead of what the user said, as ``override`` allows (spec/rest-and-queue.md §4.7): 0 the
learned value wins, 1 the larger of the two, 2 the user's always. A job that failed for its
memory or its time asks for more at its next attempt. The queue applies this each time it
makes a job ready (`wr.queue.Queue`); it is pure, and the only thing it changes is the
job's requirements.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from wr.jobs import FailReason, Job
from wr.learning import Recommendation


def adjust_requirements(job: Job, recommend: Callable[[str], Recommendation] | None,
                        why: str | None = None) -> None:
    """Learned values and failure bumps, unless override is 2. ``why``: the FailReason the
    job is about to be given (None: the one it has)."""
    if recommend is not None:
        rec = recommend(job.req_grp)
        if rec.ram_mb > 0 or rec.time_s > 0 or rec.disk_gb > 0:  # else nothing to pick
            override = job.override
            job.ram = _pick(job.user_ram, rec.ram_mb, job.ram, override)
            job.time = float(_pick(job.user_time, rec.time_s, job.time, override))
            job.disk = _pick(job.user_disk, rec.disk_gb, job.disk, override)
    ran = job.results
    reason = ran.fail_reason if why is None else why
    if not reason or job.override == 2:
        return
    if reason == FailReason.RAM and ran.peak_ram:
        factor = 2 if ran.peak_ram <= 8192 else 1.3
        bumped = max(ran.peak_ram * factor, ran.peak_ram + 1000)
        job.ram = max(job.ram, math.ceil(bumped / 100) * 100)
    elif reason == FailReason.TIME and ran.started and ran.ended:
        job.time = max(job.time, (ran.ended - ran.started) + 3600)


def _pick(user: float, learned: float, current: float, override: int) -> int | float:
    """Choose a requirement given the user's value, a learned one and ``override``."""
    if learned <= 0:
        return current
    if user <= 0 or override == 0:
        return learned
    if override == 1:
        return max(user, learned)
    return user
