"""Big answers streamed a chunk at a time (wr.manager.answers, wr.status.status_bytes) are
the bytes the whole answer was, and the work that builds them gives the loop back
(wr.pacing)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from starlette.responses import StreamingResponse

from wr.jobs import Job, State
from wr.manager.answers import CHUNK, Selection, json_array_answer
from wr.pacing import Pacer
from wr.status import encode, job_status, status_bytes
from wr.submission import jobs_from_request


def mixed_jobs(n: int) -> list[Job]:
    """Jobs of every kind an answer meets: never run (from templates, shared or own rare
    parts, odd text), run and failed, with dependencies."""
    objects: list[dict[str, Any]] = []
    for i in range(n):
        kind = i % 5
        obj: dict[str, Any] = {"cmd": f"echo {i} \"é\" \\ }},{{"}
        if kind == 1:
            obj["env"] = [f"A={i}"]
        elif kind == 2:
            obj.update(deps=["d"], dep_grps=["g"])
        elif kind == 3:
            obj["limit_grps"] = ["l:2"]
        objects.append(obj)
    jobs = jobs_from_request(orjson.dumps(objects), {"rep_grp": "r"}, now=5.0)[0]
    for i, job in enumerate(jobs):
        job.compact()
        if i % 5 == 4:
            job.started, job.ended, job.exitcode = 6.0, 8.5, 1
            job.state = State.BURIED
    return jobs


@pytest.mark.parametrize("kwargs", [
    {}, {"rep_grp": "found-by"}, {"similar": 2}, {"state": "deleted"},
    {"std": ("out", "err")}, {"env": ["A=1", "B=2"]},
])
def test_status_bytes_are_the_status_object_encoded(kwargs: dict[str, Any]) -> None:
    for _ in range(2):  # the second time from cached templates
        for job in mixed_jobs(10):
            assert status_bytes(job, now=10.0, **kwargs) == orjson.dumps(
                job_status(job, now=10.0, **kwargs))


def body_of(response: Any) -> tuple[bytes, list[bytes]]:
    """What a response sends: its body, and the pieces it is sent in."""
    if not isinstance(response, StreamingResponse):
        return response.body, [response.body]

    async def read() -> list[bytes]:
        return [bytes(chunk) async for chunk in response.body_iterator]

    pieces = asyncio.run(read())
    return b"".join(pieces), pieces


@pytest.mark.parametrize("n", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_an_answer_is_the_whole_array_whether_streamed_or_not(n: int) -> None:
    jobs = mixed_jobs(n)
    response = json_array_answer(
        jobs, lambda chunk: [status_bytes(job, now=10.0) for job in chunk], status=201)
    body, pieces = body_of(response)
    assert body == encode([job_status(job, now=10.0) for job in jobs])
    assert response.status_code == 201
    assert response.media_type == "application/json; charset=UTF-8"
    streamed = isinstance(response, StreamingResponse)
    assert streamed == (n > CHUNK)
    if streamed:  # a chunk of objects a piece, then the closing bracket
        assert len(pieces) == -(-n // CHUNK) + 1
        assert "content-length" not in response.headers
    else:
        assert response.headers["content-length"] == str(len(body))


def test_a_streamed_answer_shows_each_job_as_it_is_when_its_chunk_is_encoded() -> None:
    """A job removed while the answer streams is shown as it then is, once."""
    jobs = mixed_jobs(2 * CHUNK + 1)
    response = json_array_answer(
        jobs, lambda chunk: [status_bytes(job, now=10.0) for job in chunk])
    assert isinstance(response, StreamingResponse)

    async def read() -> bytes:
        pieces = []
        async for chunk in response.body_iterator:
            pieces.append(bytes(chunk))
            jobs[-1].state = State.DELETED  # after the first chunk went out
        return b"".join(pieces)

    objects = orjson.loads(asyncio.run(read()))
    assert [o["Key"] for o in objects] == [j.key for j in jobs]
    assert objects[0]["State"] == "ready"
    assert objects[-1]["State"] == "deleted"


def test_a_pacer_gives_the_loop_back_once_a_slice_has_passed() -> None:
    async def go() -> tuple[int, int, list[str]]:
        seen: list[str] = []

        async def other() -> None:
            seen.append("other ran")

        never, always = Pacer(slice=3600.0), Pacer(slice=0.0)
        task = asyncio.ensure_future(other())
        async for _ in never.steps(list(range(10)), step=2):
            pass
        assert not seen  # the long slice never ended: nothing else ran
        async for _ in always.steps(list(range(10)), step=2):
            pass
        await task
        return never.yields, always.yields, seen

    never, always, seen = asyncio.run(go())
    assert (never, always, seen) == (0, 5, ["other ran"])


def test_a_selection_reads_as_the_list_of_its_tuples() -> None:
    jobs = mixed_jobs(12)
    selection = Selection()
    expected: list[tuple[Job, str | None, int]] = []
    for run, rep, similar in ((jobs[:5], None, None), (jobs[5:6], "a", [3]),
                              ([], "empty", None), (jobs[6:], "b", list(range(6)))):
        selection.add(run, rep, similar)
        expected.extend(zip(run, [rep] * len(run), similar or [0] * len(run), strict=True))
    assert len(selection) == len(expected) == 12
    assert list(selection) == expected
    for start in range(13):
        for stop in range(start, 14):
            assert selection[start:stop] == expected[start:stop]
    assert [selection[i] for i in range(-12, 12)] == expected + expected
    with pytest.raises(IndexError):
        selection[12]
    with pytest.raises(ValueError, match="steps of 1"):
        selection[::2]
