"""``GET /metrics`` against a real manager: Prometheus' own parser reads it, and its figures
agree with what the REST API says about the same jobs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.integration


def scrape(api: httpx.Client, **kwargs: Any) -> dict[str, Any]:
    """{family name: {sample name + labels: value}}, parsed by prometheus_client."""
    r = api.get("/metrics", **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(r.text):
        samples = out.setdefault(family.name, {"type": family.type})
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_metrics_match_the_rest_view(manager: ManagerHandle) -> None:
    """Steps: add 6 jobs that succeed, 3 that fail twice (retries=1) and 2 held back by a
    limit of 0; wait until the others are complete or buried; scrape.
    Expected: the gauges equal the REST counts by state, the counters equal what the
    status objects say (attempts, retries, outcomes), and every attempt is in both
    histograms."""
    body = ([{"cmd": f"true # ok {i}"} for i in range(6)]
            + [{"cmd": f"exit 1 # bad {i}", "retries": 1} for i in range(3)]
            + [{"cmd": f"true # held {i}", "limit_grps": ["hold:0"]} for i in range(2)])
    with manager.http(timeout=30) as api:
        empty = scrape(api)
        assert empty["wr_jobs_added"]["wr_jobs_added_total"] == 0
        assert empty["wr_jobs"]["type"] == "gauge"
        r = api.post("/rest/v1/jobs/?rep_grp=m&memory=20M&time=1m", content=orjson.dumps(body))
        assert r.status_code == 201, r.text

        def settled() -> list[dict[str, Any]] | None:
            jobs = api.get("/rest/v1/jobs/m").json()
            states = Counter(j["State"] for j in jobs)
            return jobs if states["complete"] == 6 and states["buried"] == 3 else None

        jobs = wait_for(settled, what="6 complete and 3 buried jobs")
        live = api.get("/rest/v1/jobs/").json()
        m = scrape(api)

    by_state = Counter(j["State"] for j in live)
    for state in ("delayed", "ready", "reserved", "running", "lost", "buried", "dependent"):
        assert m["wr_jobs"][f"wr_jobs{{state={state}}}"] == by_state[state], state
    assert by_state == {"ready": 2, "buried": 3}

    attempts = sum(j["Attempts"] for j in jobs)
    assert attempts == 6 + 3 * 2
    assert m["wr_jobs_added"]["wr_jobs_added_total"] == len(body)
    assert m["wr_jobs_started"]["wr_jobs_started_total"] == attempts
    # Every attempt was a reservation; a local runner gives none back unstarted.
    assert m["wr_jobs_reserved"]["wr_jobs_reserved_total"] == attempts
    assert m["wr_jobs_completed"]["wr_jobs_completed_total"] == 6
    assert m["wr_jobs_buried"]["wr_jobs_buried_total"] == 3
    assert m["wr_jobs_retried"]["wr_jobs_retried_total"] == 3
    assert m["wr_jobs_completed"]["type"] == "counter"
    for name in ("wr_job_wait_seconds", "wr_job_run_seconds"):
        assert m[name]["type"] == "histogram"
        assert m[name][f"{name}_count"] == attempts
        assert m[name][f"{name}_bucket{{le=+Inf}}"] == attempts
        assert m[name][f"{name}_sum"] >= 0
    assert m["wr_job_run_seconds"]["wr_job_run_seconds_bucket{le=5}"] == attempts
    assert m["wr_store_commit_seconds"]["wr_store_commit_seconds_count"] > 0
    assert m["wr_events"]["wr_events_total"] >= 2 * 1 + 4 * 6 + 3 * 8
    assert set(m["wr_runners"]) == {"type", "wr_runners{scheduler=local}"}
    assert m["wr_runner_connections"]["wr_runner_connections{scheduler=local}"] >= 0
    info = m["wr_manager_info"]
    assert info["wr_manager_info{deployment=production,scheduler=local,version=0.1.0}"] == 1


def test_metrics_need_the_token(manager: ManagerHandle) -> None:
    with manager.http(token=False) as anon:
        r = anon.get("/metrics")
        assert r.status_code == 401
        assert r.text == "Authorization header required\n"
        assert anon.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert "wr_jobs" in scrape(anon, params={"token": manager.token})
