"""Learned resource requirements: what jobs of a req_grp really used, and what to ask for next.

wr's users rarely know how much memory or time a command needs; wr watches completed jobs
of the same req_grp and adjusts the requirements of the ones still waiting (spec
rest-and-queue.md §4.7, cli-manager-web-scheduler.md §6.6). The recommendation is about the
95th percentile of the samples, rounded up (100 MB for memory and disk, 1 s for time).

Unlike wr, samples are keyed by the exact req_grp (wr's prefix scan lets ``blast`` see
``blastn``'s samples) and repeated values are kept, so a common value weighs what it should;
docs/compatibility.md lists this.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

RAM, DISK, TIME = "ram", "disk", "time"
_UNITS = {RAM: 100, DISK: 100, TIME: 1}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Learned values; 0 means "no recommendation"."""

    ram_mb: int = 0
    disk_gb: int = 0
    time_s: float = 0.0


class Learner:
    """In-memory samples per (req_grp, kind), kept sorted; loaded from the store at start."""

    __slots__ = ("_samples", "_cache")

    def __init__(self, samples: dict[tuple[str, str], list[int]] | None = None) -> None:
        self._samples: dict[tuple[str, str], list[int]] = {}
        self._cache: dict[str, Recommendation] = {}
        for k, values in (samples or {}).items():
            self._samples[k] = sorted(values)

    def add(self, req_grp: str, kind: str, value: int) -> None:
        bisect.insort(self._samples.setdefault((req_grp, kind), []), int(value))
        self._cache.pop(req_grp, None)

    def recommend(self, req_grp: str) -> Recommendation:
        rec = self._cache.get(req_grp)
        if rec is None:
            disk_mb = self._value(req_grp, DISK)
            rec = Recommendation(
                ram_mb=self._value(req_grp, RAM),
                disk_gb=math.ceil(disk_mb / 1024) if disk_mb else 0,
                time_s=float(self._value(req_grp, TIME)),
            )
            self._cache[req_grp] = rec
        return rec

    def _value(self, req_grp: str, kind: str) -> int:
        values = self._samples.get((req_grp, kind))
        if not values:
            return 0
        return percentile_recommendation(values, _UNITS[kind])


def percentile_recommendation(sorted_values: list[int], unit: int) -> int:
    """About the 95th percentile of sorted samples, rounded up to a multiple of ``unit``.

    With few samples the maximum is used (one outlier among five is not noise).
    """
    top = sorted_values[-1]
    if top <= 0:
        return 0
    n = len(sorted_values)
    candidate = top if n <= 5 else sorted_values[min(n - 1, math.ceil(n * 0.95) - 1)]
    if top - candidate < unit:
        candidate = top
    candidate = max(candidate, unit)
    return math.ceil(candidate / unit) * unit
