"""Limit groups as the queue enforces them: count limits and time windows.

A job's limit groups (``limit_grps``) hold it back from starting: a count limit (``name``
with a limit set, by ``name:N`` or ``wr limit``) lets at most N of its jobs run at once; a
time window (``17:00:00 < time < 20:00:00``, `wr.windows`) lets its jobs start only while it
is open (spec/containers-mounts-lsf-env.md §6). `LimitBook` keeps what the queue needs to
decide: the limits, how many jobs of each group hold a runner, and the scheduler groups
whose jobs wait for a window, so the manager's clock can wake when one opens. It is pure:
time is an argument.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from wr.jobs import Job
from wr.windows import FOREVER, Window, window_of, windows_in


class LimitBook:
    """The limits of limit groups, and the jobs counted against them."""

    def __init__(self) -> None:
        self.limits: dict[str, int] = {}
        """Each count limit set (a name without one has no limit)."""
        self.counts: Counter[str] = Counter()
        """How many jobs of each group hold a runner (reserved, running or lost)."""
        self._window_groups: dict[str, tuple[Window, ...]] = {}
        """Scheduler groups whose jobs have time windows (issue 15), for `window_check`."""
        self._shut: set[str] = set()
        """Those of them whose windows were closed when `window_check` last looked."""

    def allow(self, names: Iterable[str], now: float) -> bool:
        """Whether a job of these limit groups may start at ``now``: every count group has
        room and every time window is open."""
        for name in names:
            limit = self.limits.get(name)
            if limit is not None and self.counts[name] >= limit:
                return False
            window = window_of(name)
            if window is not None and not window.allows(now):
                return False
        return True

    def track(self, job: Job, delta: int) -> None:
        """Count ``job`` (+1) or stop counting it (-1) against its count groups."""
        for name in job.limit_grps:
            if window_of(name) is not None:
                continue  # a time window is not a count (spec §6)
            self.counts[name] += delta
            if self.counts[name] <= 0:
                del self.counts[name]

    def note_windows(self, group: str, job: Job) -> None:
        """``job`` is ready in scheduler group ``group``: remember the group's windows."""
        if group not in self._window_groups:
            windows = windows_in(job.limit_grps)
            if windows:
                self._window_groups[group] = windows

    def window_check(self, now: float, ready: Mapping[str, int]) -> tuple[list[str], float]:
        """The scheduler groups with ready jobs (``ready``: how many per group) whose time
        windows have opened since the last check, and when the next closed one opens (inf:
        none will). Groups without ready jobs are forgotten until a job of theirs is ready
        again."""
        opened: list[str] = []
        soonest = FOREVER
        for group, windows in list(self._window_groups.items()):
            if ready.get(group, 0) <= 0:
                del self._window_groups[group]
                self._shut.discard(group)
                continue
            closed = [w for w in windows if not w.allows(now)]
            if closed:
                self._shut.add(group)
                # It cannot open before its last closed window does.
                soonest = min(soonest, max(w.next_open(now) for w in closed))
            elif group in self._shut:
                self._shut.discard(group)
                opened.append(group)
        return opened, soonest
