"""``GET /metrics``: the manager's figures in Prometheus text format (version 0.0.4).

Token-protected like the REST API (``Authorization: Bearer``, which Prometheus sends with
``authorization: {credentials_file: ...}``, or ``?token=``). docs/metrics.md lists every
metric. In short:

* ``wr_jobs{state}``: jobs in the queue now, by state (a gauge read from the queue's counts);
* ``wr_jobs_added_total``, ``wr_jobs_reserved_total``, ``wr_jobs_started_total``,
  ``wr_jobs_completed_total``, ``wr_jobs_buried_total``, ``wr_jobs_retried_total``: what
  happened since the manager started;
* ``wr_job_wait_seconds`` (from ready to started) and ``wr_job_run_seconds`` (one attempt,
  start to end): histograms;
* ``wr_runners{scheduler}`` and ``wr_runner_connections{scheduler}``: gauges;
* ``wr_store_commit_seconds``: a histogram of the database's group commits.

Theory of operation: counting costs the manager nothing it would notice. The manager calls
`Metrics.observe` with each batch of queue events as it persists them (``Manager.watchers``),
so no change is missed, however many arrive at once, and the jobs' own timestamps give the
durations. The store's writer thread times each commit (``Store.on_commit``); that histogram
takes a lock, the others are only touched on the event loop. A scrape renders a few dozen
lines from these numbers and the queue's counters: it never walks the jobs.

Wait time needs to know when a job last became ready. A new job became ready when it was
added (``Job.added``), so only jobs that became ready later (after a retry, a dependency,
a kick) are remembered, until they start: a million jobs added at once cost no memory here.
Jobs the manager recovered at start-up count from when they were added.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wr import __version__
from wr.jobs import QUEUED_STATES, State
from wr.manager.core import Manager
from wr.queue import Changed, Replaced

log = logging.getLogger("wr.manager")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text exposition format."""
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
                86400.0)
"""Upper bounds (seconds) of the ``wr_job_wait_seconds`` buckets."""
RUN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
"""Upper bounds (seconds) of the ``wr_job_run_seconds`` buckets."""
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds (seconds) of the ``wr_store_commit_seconds`` buckets."""
STATE_ORDER = tuple(s for s in State if s in QUEUED_STATES)
"""The states ``wr_jobs`` reports, always all of them (0 included)."""

_READY, _RESERVED, _RUNNING, _LOST = State.READY, State.RESERVED, State.RUNNING, State.LOST
_BURIED, _COMPLETE, _DELAYED, _DEPENDENT = (State.BURIED, State.COMPLETE, State.DELAYED,
                                            State.DEPENDENT)


class Histogram:
    """Cumulative buckets, sum and count; safe to observe from any thread."""

    __slots__ = ("bounds", "_counts", "_sum", "_lock")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)  # the first bound >= value: le is <=
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        """Cumulative counts (the last is +Inf, the total) and the sum, taken together."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        running = 0
        for i, n in enumerate(counts):
            running += n
            counts[i] = running
        return counts, total


class Metrics:
    """Counts one manager's job changes and serves ``/metrics``."""

    def __init__(self, manager: Manager, token: str) -> None:
        self.manager = manager
        self.token = token
        self.added = self.started = self.completed = self.buried = self.retried = 0
        self.reserved = 0
        self.wait = Histogram(WAIT_BUCKETS)
        self.run = Histogram(RUN_BUCKETS)
        self.commit = Histogram(COMMIT_BUCKETS)
        self._ready_since: dict[str, float] = {}
        manager.watchers.append(self.observe)
        manager.store.on_commit = self.commit.observe

    # -- counting ---------------------------------------------------------------------------

    def observe(self, events: Iterable[Any], now: float) -> None:
        """Count a batch of queue events (called by the manager as it persists them).

        States are compared by identity (members of one enum), which keeps this to about
        a microsecond per change: a 100,000-job add is counted in a few tens of ms."""
        try:
            for ev in events:
                if type(ev) is Changed:
                    old = ev.old
                    if old is None:
                        self.added += 1
                        if ev.new is _READY and not ev.job.attempts:
                            continue  # a new job: ready since Job.added
                    self._changed(ev.job, old, ev.new, now)
                elif type(ev) is Replaced and ev.old_key != ev.job.key:
                    since = self._ready_since.pop(ev.old_key, None)
                    if since is not None:
                        self._ready_since[ev.job.key] = since
        except Exception:  # figures are never worth failing the manager's work for
            log.exception("metrics: could not count job changes")

    def _changed(self, job: Any, old: State | None, new: State, now: float) -> None:
        if new is _RESERVED:
            self.reserved += 1
        elif new is _READY:
            # Remember when it became ready, unless it is only back from a reservation
            # that never started (it has been waiting all along).
            if old is not _RESERVED:
                self._ready_since[job.key] = now
        elif new is not _RESERVED and new is not _LOST:  # it stopped waiting
            since = self._ready_since.pop(job.key, None)
            if new is _RUNNING and old is _RESERVED:
                self.started += 1
                began = job.started if job.started is not None else now
                self.wait.observe(max(0.0, began - (job.added if since is None else since)))
        if ((old is _RUNNING or old is _LOST) and new is not _RUNNING and new is not _LOST
                and job.exited and job.started is not None and job.ended is not None):
            self.run.observe(max(0.0, job.ended - job.started))
        if new is _COMPLETE:
            self.completed += 1
        elif new is _BURIED:
            self.buried += 1
        elif ((new is _READY or new is _DELAYED or new is _DEPENDENT)
              and (old is _LOST or old is _BURIED or (old is _RUNNING and job.exited))):
            self.retried += 1

    # -- serving ----------------------------------------------------------------------------

    async def metrics(self, request: Request) -> Response:
        return Response(self.render(), media_type=CONTENT_TYPE)

    def render(self) -> str:
        m = self.manager
        counts = m.queue.counts
        sched = _label(m.scheduler.name)
        out: list[str] = []
        _family(out, "wr_manager_info", "gauge",
                "The manager's version, deployment and scheduler (always 1).",
                [(f'{{version="{_label(__version__)}",deployment='
                  f'"{_label(m.config.deployment)}",scheduler="{sched}"}}', 1)])
        _family(out, "wr_jobs", "gauge", "Jobs in the queue now, by state.",
                [(f'{{state="{s}"}}', counts[s]) for s in STATE_ORDER])
        for name, value, text in (
            ("wr_jobs_added_total", self.added, "Jobs that entered the queue."),
            ("wr_jobs_reserved_total", self.reserved, "Jobs handed to runners (reserved)."),
            ("wr_jobs_started_total", self.started, "Job attempts started by runners."),
            ("wr_jobs_completed_total", self.completed, "Jobs that completed (exit code 0)."),
            ("wr_jobs_buried_total", self.buried,
             "Jobs buried: failed with no retries left, killed, or impossible to run."),
            ("wr_jobs_retried_total", self.retried,
             "Failed or lost attempts queued to run again, automatically or by 'wr retry'."),
            ("wr_events_total", m.events.last_id,
             "Job state changes published on /rest/v1/events/."),
        ):
            _family(out, name, "counter", text + " Since the manager started.", [("", value)])
        _histogram(out, "wr_job_wait_seconds",
                   "Seconds from a job becoming ready to a runner starting it.", self.wait)
        _histogram(out, "wr_job_run_seconds",
                   "Seconds one attempt of a job ran (start to end).", self.run)
        _family(out, "wr_runners", "gauge",
                "Runner processes the scheduler has starting or running.",
                [(f'{{scheduler="{sched}"}}', m.scheduler.runners())])
        _family(out, "wr_runner_connections", "gauge", "Runners connected to the manager.",
                [(f'{{scheduler="{sched}"}}', len(m.runner_links))])
        _histogram(out, "wr_store_commit_seconds",
                   "Seconds each database group commit took (write and sync).", self.commit)
        _family(out, "wr_scrape_timestamp_seconds", "gauge",
                "When this page was made (Unix seconds).", [("", time.time())])
        return "".join(out)


def _family(out: list[str], name: str, kind: str, text: str,
            samples: list[tuple[str, float]]) -> None:
    out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")
    out.extend(f"{name}{labels} {_number(value)}\n" for labels, value in samples)


def _histogram(out: list[str], name: str, text: str, hist: Histogram) -> None:
    counts, total = hist.snapshot()
    out.append(f"# HELP {name} {text}\n# TYPE {name} histogram\n")
    for bound, n in zip((*hist.bounds, "+Inf"), counts, strict=True):
        le = bound if isinstance(bound, str) else _number(bound)
        out.append(f'{name}_bucket{{le="{le}"}} {n}\n')
    out.append(f"{name}_sum {_number(total)}\n{name}_count {counts[-1]}\n")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
