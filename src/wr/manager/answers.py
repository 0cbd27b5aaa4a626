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

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from starlette.responses import Response, StreamingResponse

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
