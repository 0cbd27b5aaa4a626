"""One huge request must not stall everyone; big answers stream (issue 13, item 8).

Against a real manager: small requests are answered while a 200,000-job POST is processed;
big answers (GET, details, a POST's status objects) come chunked, with the bytes the whole
answer had; an answer streaming while its jobs are removed stays whole and correct; and a
big POST with a bad job at its very end, or broken JSON there, stores nothing.
"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any

import orjson

from tests.conftest import ManagerHandle, wait_for
from wr.status import encode

BIG = 200_000
HOLD = {"limit_grps": "hold:0"}  # nothing runs: the jobs stay queued as added


def big_body(n: int, last: bytes = b'{"cmd":"echo last"}') -> bytes:
    return b"[" + b",".join(b'{"cmd":"echo %d"}' % i for i in range(n - 1)) + b"," + last + b"]"


def test_small_requests_are_answered_while_a_big_post_is_processed(
        manager: ManagerHandle) -> None:
    """Steps: POST 200,000 jobs to /rest/v1/add/ from one connection; once its body is
    sent, ask GET /rest/v1/info/ over and over from another until the POST is answered.
    Expected: the POST adds every job; the info requests are answered all along while it
    is processed, not once it is done: several before the POST's answer, and none of the
    stretches without an answer takes half the POST's time (before, the event loop was
    held for the conversion and for the queueing, each a large share of it)."""
    body = big_body(BIG)
    sent = threading.Event()
    outcome: dict[str, Any] = {}

    def post() -> None:
        conn = http.client.HTTPSConnection("localhost", manager.web_port,
                                           context=manager.ssl_context(), timeout=600)
        try:
            conn.request("POST", "/rest/v1/add/?rep_grp=big&limit_grps=hold:0", body,
                         {"Authorization": f"Bearer {manager.token}"})
            outcome["sent"] = time.monotonic()
            sent.set()
            response = conn.getresponse()
            outcome["answered"] = time.monotonic()
            outcome["status"], outcome["body"] = response.status, response.read()
        finally:
            sent.set()
            conn.close()

    with manager.http() as api:
        assert api.get("/rest/v1/info/").status_code == 200  # connected before it starts
        poster = threading.Thread(target=post)
        poster.start()
        sent.wait(120)
        answers = []
        while poster.is_alive():
            assert api.get("/rest/v1/info/").status_code == 200
            answers.append(time.monotonic())
        poster.join()
    assert outcome["status"] == 201, outcome
    assert orjson.loads(outcome["body"]) == {"Added": BIG, "Existed": 0}
    start, end = outcome["sent"], outcome["answered"]
    during = [t for t in answers if t < end]
    marks = [start, *during, end]
    longest = max(b - a for a, b in zip(marks, marks[1:], strict=False))
    print(f"\nPOST {end - start:.2f} s; {len(during)} info answers meanwhile; "
          f"longest wait {longest:.2f} s")
    assert len(during) >= 5
    assert longest < (end - start) / 2


def add(api: Any, objects: list[dict[str, Any]], **params: str) -> Any:
    r = api.post("/rest/v1/jobs/", content=orjson.dumps(objects), params=params)
    assert r.status_code == 201, r.text
    return r


def assert_streamed(r: Any) -> None:
    assert r.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.headers
    assert r.headers["content-type"] == "application/json; charset=UTF-8"


def test_big_answers_are_chunked_and_hold_the_bytes_of_the_whole_answer(
        manager: ManagerHandle) -> None:
    """Steps: POST 2,500 jobs of several kinds in three rep groups (1,000, 1,000, 500);
    GET every job, the details of every job, and each rep group.
    Expected: the POST's answer, the GET and the details are chunked (each is over the
    1,000 objects of one chunk); each body is exactly what encoding its objects at once
    gives (a JSON array and a newline, as before streaming); the GET holds each job
    once, with the objects the small unstreamed answers of the rep groups give."""
    objects = []
    for i in range(2500):
        obj: dict[str, Any] = {"cmd": f"echo {i} \"é\" \\ }},{{",
                               "rep_grp": f"g{min(i // 1000, 2)}"}
        if i % 4 == 1:
            obj["env"] = [f"A={i}"]
        elif i % 4 == 2:
            obj["priority"] = 5
        objects.append(obj)
    with manager.http() as api:
        posted = add(api, objects, **HOLD)
        assert_streamed(posted)
        assert posted.content == encode(orjson.loads(posted.content))
        assert len(posted.json()) == 2500

        everything = api.get("/rest/v1/jobs/")
        assert_streamed(everything)
        assert everything.content == encode(orjson.loads(everything.content))
        by_key = {o["Key"]: o for o in everything.json()}
        assert len(by_key) == len(everything.json()) == 2500
        assert by_key == {o["Key"]: o for o in posted.json()}

        for group in ("g0", "g1", "g2"):
            small = api.get(f"/rest/v1/jobs/{group}")
            assert small.headers["content-length"] == str(len(small.content))
            assert all(by_key[o["Key"]] == o for o in small.json())

        details = api.get("/rest/v1/details/")
        assert_streamed(details)
        assert details.content == encode(orjson.loads(details.content))
        for obj in details.json():
            extra = {k: obj.pop(k) for k in ("ReqGroup", "Priority", "Retries", "ActualCwd",
                                             "ReadyAt", "WaitingFor")}
            assert obj == by_key[obj["Key"]]
            assert extra["ReqGroup"] == "echo" and extra["ReadyAt"] is None
            assert extra["WaitingFor"] == "limit group 'hold' (its limit is 0)"


def test_an_answer_streaming_while_its_jobs_are_removed_stays_whole(
        manager: ManagerHandle) -> None:
    """Steps: queue 50,000 jobs (about 32 MB of status objects); start a GET of every job
    and read only its first 64 KB, so the manager must wait for us; meanwhile remove every
    job with another client; then read the rest.
    Expected: the removal is answered while the GET is still being sent; the GET's answer
    is one valid array holding each of the 50,000 jobs exactly once, those encoded before
    the removal as ready and the rest as deleted; the manager logs no error."""
    n = 50_000
    with manager.http() as api, manager.http() as other:
        r = api.post("/rest/v1/add/", content=big_body(n), params=HOLD)
        assert r.json() == {"Added": n, "Existed": 0}
        with api.stream("GET", "/rest/v1/jobs/") as streamed:
            assert_streamed(streamed)
            chunks = streamed.iter_raw(65536)
            body = [next(chunks)]
            removed = other.delete("/rest/v1/jobs/", params={"state": "deletable"})
            assert removed.status_code == 200 and len(removed.json()) == n
            body.extend(chunks)
    objects = orjson.loads(b"".join(body))
    assert len(objects) == n
    assert len({o["Key"] for o in objects}) == n
    states = [o["State"] for o in objects]
    assert set(states) == {"ready", "deleted"}
    first_deleted = states.index("deleted")
    assert set(states[first_deleted:]) == {"deleted"}
    assert "error" not in manager.log().lower()


def counts(api: Any) -> dict[str, int]:
    return api.get("/rest/v1/counts/").json()


def test_a_bad_job_at_the_end_of_a_big_post_stores_nothing(manager: ManagerHandle) -> None:
    """Steps: POST 200,000 jobs whose very last one has no command; then 200,000 whose
    first job is bad and whose JSON breaks after the last; restart the manager; POST 10
    good jobs.
    Expected: the first POST is refused with the last job's fault, the second with the
    JSON error (the same text, position included, as parsing the whole body gives: it
    comes before any job's fault); nothing of either is queued, nor stored (the restarted
    manager has no job); the writer is not left stuck: the 10 jobs are added."""
    with manager.http() as api:
        r = api.post("/rest/v1/add/", content=big_body(BIG, last=b'{"cmd":""}'),
                     params=HOLD)
        assert r.status_code == 400
        assert r.text == "there was a problem interpreting your job: cmd was not specified\n"
        assert not any(counts(api).values())

        broken = big_body(BIG).replace(b'{"cmd":"echo 0"}', b'{"cmd":""}')[:-1] + b",]"
        r = api.post("/rest/v1/add/", content=broken, params=HOLD)
        try:
            orjson.loads(broken)
        except orjson.JSONDecodeError as e:
            expected = f"the request body is not valid JSON: {e}\n"
        assert (r.status_code, r.text) == (400, expected)
        assert not any(counts(api).values())
    manager.stop()
    manager.start()
    with manager.http() as api:
        assert not any(counts(api).values())
        assert api.get("/rest/v1/jobs/").json() == []
        r = api.post("/rest/v1/add/", content=big_body(10), params=HOLD)
        assert r.json() == {"Added": 10, "Existed": 0}
        wait_for(lambda: counts(api)["ready"] == 10, what="the 10 jobs queued")


def test_a_big_post_that_repeats_jobs_across_its_parts_keeps_the_first_of_each(
        manager: ManagerHandle) -> None:
    """Steps: POST 3,000 jobs whose last 1,000 repeat the commands of the first 1,000 under
    another rep group (so the repeats come in later slices of the add than the jobs they
    repeat); list every job; restart the manager and list them again.
    Expected: 2,000 added, 1,000 existed; each command is queued once, under the rep
    group of its first appearance, before and after the restart (the store and the queue
    kept the same job)."""
    objects = ([{"cmd": f"echo {i}", "rep_grp": "first"} for i in range(2000)]
               + [{"cmd": f"echo {i}", "rep_grp": "second"} for i in range(1000)])
    with manager.http() as api:
        r = api.post("/rest/v1/add/", content=orjson.dumps(objects), params=HOLD)
        assert r.json() == {"Added": 2000, "Existed": 1000}
        listed = {o["Cmd"]: o["RepGroup"] for o in api.get("/rest/v1/jobs/").json()}
    assert listed == {f"echo {i}": "first" for i in range(2000)}
    manager.stop()
    manager.start()
    with manager.http() as api:
        again = {o["Cmd"]: o["RepGroup"] for o in api.get("/rest/v1/jobs/").json()}
    assert again == listed
