"""``GET /rest/v1/events/`` against a real manager: every change once, across reconnects.

The stream is read with httpx while jobs run. Receiving the response headers means the
stream has subscribed (wr.manager.stream), so a test adds its jobs only after opening it and
never sleeps to "let it start".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import ManagerHandle, wait_for
from tests.integration.event_stream import HAPPY_PATH, blocks, client, events

pytestmark = pytest.mark.integration

# -- helpers ----------------------------------------------------------------------------------

def add(api: httpx.Client, cmds: list[str], rep_grp: str, **query: Any) -> None:
    body = [{"cmd": c} for c in cmds]
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(body),
                 params={"rep_grp": rep_grp, "memory": "20M", "time": "1m", **query})
    assert r.status_code == 201, r.text


# -- the stream -------------------------------------------------------------------------------

def test_every_transition_exactly_once_across_a_disconnect(manager: ManagerHandle) -> None:
    """50 jobs run while the stream is read; the client disconnects mid-way and resumes.

    1. open the stream, then add 50 jobs;
    2. read 70 changes and disconnect (jobs are still running);
    3. reconnect with Last-Event-ID = the last id seen, read until all 50 are complete.
    Expected: ids run on without a gap or a repeat, and each job went
    ready -> reserved -> running -> complete, each change seen once.
    """
    cmds = [f"sleep 0.05 # ev {i}" for i in range(50)]
    seen: list[tuple[str, dict[str, Any]]] = []
    with client(manager) as api:
        with api.stream("GET", "/rest/v1/events/") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            add(api, cmds, "ev", limit_grps="evlim:2")  # 2 at a time, however many cores
            for item in events(r):
                seen.append(item)
                if len(seen) == 70:
                    break
        running = api.get("/rest/v1/jobs/ev").json()
        assert any(j["State"] != "complete" for j in running), "the jobs finished too fast"
        done = sum(1 for _, e in seen if e["To"] == "complete")
        with api.stream("GET", "/rest/v1/events/",
                        headers={"Last-Event-ID": seen[-1][0]}) as r:
            for item in events(r):
                seen.append(item)
                done += item[1]["To"] == "complete"
                if done == 50:
                    break
    numbers = [e["id"] for _, e in seen]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "gap or repeat"
    assert [int(i.rsplit("-", 1)[1]) for i, _ in seen] == numbers
    paths: dict[str, list[tuple[str | None, str]]] = {}
    for _, e in seen:
        assert e["RepGroup"] == "ev"
        paths.setdefault(e["Key"], []).append((e["From"], e["To"]))
    assert len(paths) == 50
    for key, path in paths.items():
        assert path == HAPPY_PATH, (key, path)


def test_resume_from_after_replays_what_was_missed(manager: ManagerHandle) -> None:
    """A client that was away while jobs ran gets all of it from ?after= (here: 0, the
    start), then the live changes."""
    with client(manager) as api:
        add(api, ["true # away 1", "true # away 2"], "away")
        wait_for(lambda: len(api.get("/rest/v1/jobs/away?state=complete").json()) == 2,
                 what="jobs to complete")
        with api.stream("GET", "/rest/v1/events/?after=0") as r:
            it = events(r)
            replayed = [next(it)[1] for _ in range(8)]
            add(api, ["true # away 3"], "away")
            live = [next(it)[1] for _ in range(4)]
    assert [e["id"] for e in replayed + live] == list(range(1, 13))
    assert sorted(((e["From"], e["To"]) for e in replayed), key=str) == sorted(
        HAPPY_PATH * 2, key=str)
    assert [(e["From"], e["To"]) for e in live] == HAPPY_PATH


def test_filters_by_rep_group_and_new_state(manager: ManagerHandle) -> None:
    """rep_grp (exact, or substring with search=true) and state (comma-separated new
    states) pick the changes; a failed job's event carries its exit code and reason."""
    exact_query = {"rep_grp": "flt.a", "state": "complete,buried"}
    search_query = {"rep_grp": "flt", "search": "true", "state": "buried"}
    with (client(manager) as api,
          api.stream("GET", "/rest/v1/events/", params=exact_query) as exact,
          api.stream("GET", "/rest/v1/events/", params=search_query) as search):
        add(api, ["true # flt a"], "flt.a")
        add(api, ["exit 3 # flt b"], "flt.b")
        add(api, ["exit 4 # flt a"], "flt.a")
        got_exact = [e for _, e in _take(events(exact), 2)]
        got_search = [e for _, e in _take(events(search), 2)]
    assert sorted((e["To"], e["Exitcode"]) for e in got_exact) == [("buried", 4),
                                                                    ("complete", 0)]
    assert all(e["RepGroup"] == "flt.a" for e in got_exact)
    assert sorted((e["RepGroup"], e["Exitcode"]) for e in got_search) == [("flt.a", 4),
                                                                          ("flt.b", 3)]
    assert all(e["From"] == "running" and e["FailReason"] for e in got_search)


def test_keepalive_moves_a_filtered_streams_resume_point(manager: ManagerHandle) -> None:
    """An idle stream gets `: keep-alive` comments; when the filter left changes out, the
    keep-alive block carries their last id (no data: not an event) so resuming from it
    does not replay them."""
    quiet = {"rep_grp": "nobody", "keepalive": "0.2"}
    with client(manager) as api, api.stream("GET", "/rest/v1/events/", params=quiet) as r:
        add(api, ["true # ka"], "ka")
        wait_for(lambda: api.get("/rest/v1/jobs/ka").json()[0]["State"] == "complete",
                 what="the job to complete")
        moved = []
        for block in blocks(r):
            assert "data" not in block
            if block.get(":") == ["keep-alive"] and "id" in block:
                moved.append(int(block["id"].rsplit("-", 1)[1]))
                if moved[-1] == 4:  # the job's 4 changes, all left out
                    break
    assert moved == sorted(set(moved)) and moved[-1] == 4, moved


def test_resync_when_the_id_is_not_from_this_manager(manager: ManagerHandle) -> None:
    """An id from another run of the manager (or beyond the last change) cannot be resumed:
    the stream starts with a resync event whose id is the current position, then goes on."""
    with client(manager) as api:
        add(api, ["true # rs"], "rs")
        wait_for(lambda: api.get("/rest/v1/jobs/rs").json()[0]["State"] == "complete",
                 what="the job to complete")
        for last in ("0badc0de-2", "99999"):
            with api.stream("GET", "/rest/v1/events/", headers={"Last-Event-ID": last}) as r:
                first = next(b for b in blocks(r) if "data" in b)
            assert first["event"] == "resync"
            data = orjson.loads(first["data"])
            assert data["LastId"] == 4 and first["id"].endswith("-4"), first
            assert data["Reason"]


def test_bad_requests_are_answered_in_text(manager: ManagerHandle) -> None:
    with client(manager) as api:
        for params, text in (({"state": "bogus"}, 'unknown state "bogus"'),
                             ({"after": "x1"}, "after value (x1) is not an event id"),
                             ({"keepalive": "0"}, "keepalive value (0) must be")):
            r = api.get("/rest/v1/events/", params=params)
            assert r.status_code == 400, r.text
            assert r.headers["content-type"].startswith("text/plain")
            assert text in r.text
    with httpx.Client(verify=manager.ssl_context(), trust_env=False) as anon:
        r = anon.get(f"{manager.url}/rest/v1/events/")
        assert r.status_code == 401 and r.text == "Authorization header required\n"
        with anon.stream("GET", f"{manager.url}/rest/v1/events?token={manager.token}") as r:
            assert r.status_code == 200


def test_an_open_stream_ends_when_the_manager_stops(manager: ManagerHandle) -> None:
    """The manager ends every stream as it stops (a stream never holds up a stop)."""
    stopping = threading.Thread(target=manager.stop)
    with client(manager) as api, api.stream("GET", "/rest/v1/events/") as r:
        started = time.monotonic()
        stopping.start()
        assert list(events(r)) == []
        assert time.monotonic() - started < 2.0, "the stream outlived the stop"
    stopping.join(30)


def _take(it: Iterator[Any], n: int) -> list[Any]:
    return [next(it) for _ in range(n)]
