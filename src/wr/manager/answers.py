"""Answers of many status objects, streamed a chunk at a time (issue 13).

An unfiltered ``GET /rest/v1/jobs/`` of 1,000,000 jobs was a 674 MB answer, built whole
(3.8 GB at its peak) while every other client waited 15 s. A big answer is now a chunked
``StreamingResponse``: ``CHUNK`` objects are encoded at a time, sent, and the event loop is
given back between chunks (and whenever the client reads slower than we write, through
uvicorn's flow control), so the manager holds about one chunk of the answer and serves
others meanwhile. The bytes are those of the whole answer: a JSON array and a newline.

What a streamed answer shows: the jobs selected when the request came (a snapshot of the
selection, never a job twice), each as it is when its chunk is encoded; a job that
completes or is removed meanwhile is shown as it then is. Answers of ``CHUNK`` objects or
fewer go out whole, with a Content-Length, as before.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TypeVar, overload

from starlette.responses import Response, StreamingResponse

from wr.jobs import Job
from wr.pacing import Pacer
from wr.status import json_array

CHUNK = 1000
"""Status objects encoded and sent at a time (about 650 KB of the common kind)."""
MEDIA_TYPE = "application/json; charset=UTF-8"

T = TypeVar("T")


def json_array_answer(items: Sequence[T], encode: Callable[[Sequence[T]], list[bytes]],
                      status: int = 200) -> Response:
    """The JSON array of ``encode``'s values for ``items`` (one encoded value per item,
    ``encode`` called a chunk at a time): whole if small, else streamed."""
    if len(items) <= CHUNK:
        return Response(json_array(encode(items)), status_code=status, media_type=MEDIA_TYPE)
    return StreamingResponse(_chunks(items, encode), status_code=status,
                             media_type=MEDIA_TYPE)


async def _chunks(items: Sequence[T], encode: Callable[[Sequence[T]], list[bytes]]
                  ) -> AsyncIterator[bytes]:
    pacer = Pacer()
    opening = b"["
    for start in range(0, len(items), CHUNK):
        yield b"".join((opening, b",".join(encode(items[start:start + CHUNK]))))
        opening = b","
        await pacer.breathe()
    yield b"]\n"


Chosen = tuple[Job, str | None, int]
"""A job an answer shows, the rep group to show it under (None: its own) and its
``Similar`` count."""


class Selection(Sequence[Chosen]):
    """The jobs a request chose, in order, kept as runs of jobs shown under one rep group
    rather than as a tuple per job: a million tuples cost 64 MB, and lived long enough for
    the garbage collector to scan them, holding the loop for half a second."""

    __slots__ = ("_runs", "_starts", "_len")

    def __init__(self) -> None:
        self._runs: list[tuple[Sequence[Job], str | None, Sequence[int] | None]] = []
        self._starts: list[int] = []
        self._len = 0

    def add(self, jobs: Sequence[Job], rep: str | None = None,
            similar: Sequence[int] | None = None) -> None:
        """Append ``jobs`` (``similar``: their Similar counts; None: all 0)."""
        if jobs:
            self._runs.append((jobs, rep, similar))
            self._starts.append(self._len)
            self._len += len(jobs)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Chosen]:
        for jobs, rep, similar in self._runs:
            if similar is None:
                for job in jobs:
                    yield job, rep, 0
            else:
                yield from zip(jobs, [rep] * len(jobs), similar, strict=True)

    @overload
    def __getitem__(self, index: int) -> Chosen: ...

    @overload
    def __getitem__(self, index: slice) -> list[Chosen]: ...

    def __getitem__(self, index: int | slice) -> Chosen | list[Chosen]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._len)
            if step != 1:
                raise ValueError("a Selection is sliced in steps of 1 only")
            return self._range(start, stop)
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("Selection index out of range")
        return self._range(index, index + 1)[0]

    def _range(self, start: int, stop: int) -> list[Chosen]:
        out: list[Chosen] = []
        run = bisect.bisect_right(self._starts, start) - 1
        while start < stop and run < len(self._runs):
            jobs, rep, similar = self._runs[run]
            first = start - self._starts[run]
            last = min(len(jobs), stop - self._starts[run])
            if similar is None:
                out.extend([(job, rep, 0) for job in jobs[first:last]])
            else:
                out.extend(zip(jobs[first:last], [rep] * (last - first),
                               similar[first:last], strict=True))
            start = self._starts[run] + last
            run += 1
        return out
