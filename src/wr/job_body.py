"""The body of a POST of jobs: a JSON array of job objects, read whole or a piece at a time.

A 1,000,000-job body (21 MB) took 0.55 s in one ``orjson.loads`` and made a million dicts at
once; the event loop could do nothing else meanwhile, and a thread would not help: orjson
keeps the GIL (parsed in a worker thread, those 21 MB held the loop for all of the 0.32 s
the parse took). `JobObjects` cuts a big array between elements into pieces of about
``PIECE_BYTES`` and parses each alone, so the manager can convert and store one piece's
jobs, drop its dicts and let other requests in before it parses the next (issue 13).

Where to cut: after a ``}`` followed by optional whitespace and a ``,``. Such a place may
also be inside a string or a nested object, but the parse itself tells: the first piece is
the body up to the cut plus ``]``, each later one ``[0`` (a stand-in element) plus the body
from the comma that began it up to the next cut plus ``]``. Given that a piece begins at a
true boundary, it parses only if it also ends at one: a cut inside a string leaves that
string unterminated, a cut inside a nested value leaves a bracket unclosed. A piece that
fails is tried again four times longer, up to the rest of the body, whose errors are then
real; so by induction every piece that parses begins and ends at true boundaries.

Errors are those a whole parse gives, with the same text: orjson's message with its line,
column and character position translated to the whole body, and the same order of
precedence (`parse_jobs_body`): invalid UTF-8 first (orjson checks the encoding before it
parses), then any other JSON error, then the first element that is not an object; only a
body free of those can fail on a job's content (the caller's check, after `drain`).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Generator, Iterator
from typing import Any

import orjson

from wr.errors import BadRequest

PIECE_BYTES = 64 * 1024
"""Bytes of body parsed at a time: about 3,000 small job objects, 3 ms of orjson."""
CHECK_BYTES = 1 << 20
"""Bytes of a non-ASCII body checked for valid UTF-8 at a time."""
_CUT = re.compile(rb"\}[ \t\r\n]*,")
_SPACE = re.compile(rb"[ \t\r\n]*")
_EMPTY = "the request body is empty; expected a JSON array of job objects"
_NOT_JSON = "the request body is not valid JSON: "


def parse_jobs_body(body: bytes) -> list[dict[str, Any]]:
    """Decode a POST body: a JSON array of job objects (JSON ``null`` is no jobs).

    A ``null`` element becomes ``{}``, so it fails later with "cmd was not specified".
    """
    objects = JobObjects(body)
    return [obj for piece in objects.pieces() for obj in piece]


class JobObjects:
    """The job objects of one body, a piece at a time (see the module's docstring)."""

    def __init__(self, body: bytes, piece_bytes: int = PIECE_BYTES) -> None:
        if not body or body.isspace():
            raise BadRequest(_EMPTY)
        self._body = body
        self._piece_bytes = piece_bytes
        self._cursor = self._parsed()
        self._count = 0
        self._bad: BadRequest | None = None

    def pieces(self) -> Iterator[list[dict[str, Any]]]:
        """Lists of job objects, in order (each ``null`` element as ``{}``); an empty list
        is only a pause (the caller may let others run). Raises `BadRequest` as a whole
        parse would: a non-object element is reported only once the rest of the body has
        been parsed, as a JSON error anywhere takes precedence over it."""
        for elements in self._cursor:
            self._check(elements)
            if self._bad is not None:
                yield from self.drain()  # raises, with this error or a JSON one
            yield elements

    def drain(self) -> Iterator[list[dict[str, Any]]]:
        """Parse and check what is left of the body without keeping it, pausing (an empty
        list) after each piece; raise the error that takes precedence over a bad job's
        (a JSON error, or an element that is not an object), if there is one."""
        for elements in self._cursor:
            if self._bad is None:
                self._check(elements)
            yield []
        if self._bad is not None:
            raise self._bad

    def _check(self, elements: list[Any]) -> None:
        """Objects stay, ``null`` becomes ``{}``; the first other element is remembered."""
        for i, item in enumerate(elements):
            if type(item) is dict:
                continue
            if item is None:
                elements[i] = {}
            else:
                self._bad = BadRequest(
                    f"expected a JSON array of job objects, but element {self._count + i} is "
                    f"{json_kind(item)}: {show_value(item)}")
                break
        self._count += len(elements)

    # -- parsing ----------------------------------------------------------------------------

    def _parsed(self) -> Iterator[list[Any]]:
        body = self._body
        space = _SPACE.match(body)  # (not lstrip: that copies a 100 MB body)
        start = space.end() if space else 0
        if len(body) <= 2 * self._piece_bytes or body[start:start + 1] != b"[":
            yield _whole(body)
            return
        if not body.isascii() and not (yield from _check_utf8(body)):
            # orjson's own error (it checks the encoding before parsing); should orjson
            # accept what Python's decoder refused, the lot in one parse.
            yield _whole(body)
            return
        yield from self._cut(body)

    def _cut(self, body: bytes) -> Iterator[list[Any]]:
        comma = -1  # where the current piece begins: -1 for the first, else its comma
        size = self._piece_bytes
        while True:
            begin = 0 if comma < 0 else comma
            match = _CUT.search(body, begin + size)
            if match is None:  # the rest, ending with the body's own "]"
                yield _last_piece(body, comma)
                return
            end = match.start() + 1
            view = memoryview(body)
            text = b"".join((view[:end], b"]") if comma < 0
                            else (b"[0", view[comma:end], b"]"))
            try:
                elements = orjson.loads(text)
            except orjson.JSONDecodeError:
                size *= 4  # a cut inside a string or a nested value, or a real error
                continue
            if comma >= 0:
                del elements[0]  # the stand-in
            comma = match.end() - 1
            size = self._piece_bytes
            yield elements


def _whole(body: bytes) -> list[Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(_NOT_JSON + str(e)) from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise BadRequest(f"expected a JSON array of job objects, got {json_kind(data)}")
    return data


def _last_piece(body: bytes, comma: int) -> list[Any]:
    if comma < 0:
        return _whole(body)
    try:
        elements = orjson.loads(b"[0" + body[comma:])
    except orjson.JSONDecodeError as e:
        raise BadRequest(_NOT_JSON + _translated(body, comma, e)) from None
    del elements[0]
    return elements


def _translated(body: bytes, comma: int, e: orjson.JSONDecodeError) -> str:
    """orjson's message for the piece ``[0`` + body[comma:], placed in the whole body."""
    lead = 2  # the characters of "[0", standing in for everything before the comma

    def chars(text: bytes) -> int:
        return len(text) if text.isascii() else len(text.decode())

    before = body[:comma]
    line_start = before.rfind(b"\n") + 1
    position = chars(before) + e.pos - lead
    line = before.count(b"\n") + e.lineno
    column = e.colno if e.lineno > 1 else chars(before[line_start:]) + e.colno - lead
    return f"{e.msg}: line {line} column {column} (char {position})"


def _check_utf8(body: bytes) -> Generator[list[Any], None, bool]:
    """Whether ``body`` is valid UTF-8, checked a slice at a time with a pause (an empty
    list) after each: invalid UTF-8 is the error orjson reports before any other."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for begin in range(0, len(body), CHECK_BYTES):
        end = begin + CHECK_BYTES
        try:
            decoder.decode(body[begin:end], final=end >= len(body))
        except UnicodeDecodeError:
            return False
        yield []
    return True


def json_kind(value: Any) -> str:
    """What a JSON value is, for a message (``an object``, ``a number``, ...)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__


def show_value(value: Any, limit: int = 80) -> str:
    """A value as the user wrote it (JSON), shortened for an error message."""
    try:
        text = orjson.dumps(value).decode()
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
