"""Every state change a manager made to the jobs of a report group, from its event stream.

A test that must know a job *never* passed through a state (never ``lost``, never run twice)
cannot learn it by polling ``status``: a short visit falls between two polls. The manager's
event stream (docs/events.md) keeps every change, so the test reads them all afterwards.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson


def job_history(api: httpx.Client, url: str, rep_grp: str
                ) -> dict[str, list[dict[str, Any]]]:
    """Each job's changes (``From``, ``To``, ``FailReason``, ``Time``, ...) in order, by
    key, since the manager at ``url`` (this run of it) started, read with ``api`` (which
    trusts its CA and sends its token): the stream replays them from the start
    (``after=0``) and its first keep-alive comes once it has caught up."""
    changes: dict[str, list[dict[str, Any]]] = {}
    with api.stream("GET", f"{url}/rest/v1/events/", timeout=httpx.Timeout(30, read=30),
                    params={"after": "0", "keepalive": "0.5", "rep_grp": rep_grp}) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith(":"):
                break  # idle: everything stored so far has been sent
            if line.startswith("data:"):
                event = orjson.loads(line[5:])
                changes.setdefault(event["Key"], []).append(event)
    return changes


def moves(history: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    """A job's changes as (from, to) pairs."""
    return [(e["From"], e["To"]) for e in history]
