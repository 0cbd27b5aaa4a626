"""A big POST body parsed a piece at a time (wr.job_body) reads exactly as one parse would.

The property: for any body, cutting it into pieces (tiny ones here, so that every body is
cut many times and cuts land inside strings and nested values) gives the same job objects
as one ``orjson.loads``, or fails with the same message, character positions included, as
the whole parse would (`whole_parse` below is the reading every body got before, kept here
as the reference). Bodies are arrays of job-like objects whose strings are full of ``},``,
written compactly or with spaces and newlines, then maybe damaged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wr.errors import BadRequest
from wr.job_body import JobObjects, json_kind, parse_jobs_body, show_value
from wr.pacing import Pacer
from wr.submission import PROBLEM, jobs_from_request, paced_job_parts


def whole_parse(body: bytes) -> list[Any]:
    """How a body was read before pieces: one parse, then every element checked."""
    if not body or body.isspace():
        raise BadRequest("the request body is empty; expected a JSON array of job objects")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise BadRequest(f"expected a JSON array of job objects, got {json_kind(data)}")
    out = []
    for i, item in enumerate(data):
        if item is None:
            item = {}
        elif not isinstance(item, dict):
            raise BadRequest(f"expected a JSON array of job objects, but element {i} is "
                             f"{json_kind(item)}: {show_value(item)}")
        out.append(item)
    return out


def outcome(read: Any, body: bytes) -> Any:
    try:
        return read(body)
    except BadRequest as e:
        return ("error", e.message)


def in_pieces(piece_bytes: int) -> Any:
    def read(body: bytes) -> list[Any]:
        return [o for piece in JobObjects(body, piece_bytes).pieces() for o in piece]
    return read


tricky_text = st.text(st.sampled_from('ab},{ ]["\\:\n\té'), max_size=12)
leaf = st.none() | st.booleans() | st.integers(-5, 5) | tricky_text
value = st.recursive(leaf, lambda kids: st.lists(kids, max_size=3)
                     | st.dictionaries(tricky_text, kids, max_size=3), max_leaves=8)
job = st.dictionaries(st.sampled_from(["cmd", "rep_grp", "env", "x"]), value, max_size=3)
element = job | st.none() | leaf | st.lists(value, max_size=2)


@st.composite
def bodies(draw: Any) -> bytes:
    items = draw(st.lists(st.one_of(job, job, job, element), max_size=12))
    style = draw(st.sampled_from(["orjson", "spaced", "indented"]))
    if style == "orjson":
        body = orjson.dumps(items)
    elif style == "spaced":
        body = json.dumps(items, ensure_ascii=False).encode()
    else:
        body = json.dumps(items, indent=1, ensure_ascii=False).encode()
    damage = draw(st.sampled_from(["none", "none", "cut", "insert", "drop", "bytes"]))
    if damage != "none" and body:
        at = draw(st.integers(0, len(body) - 1))
        if damage == "cut":
            body = body[:at]
        elif damage == "insert":
            body = body[:at] + draw(st.sampled_from([b",", b"}", b"]", b'"', b"x", b"\xff",
                                                     b"\xed\xa0\x80", b"\n", b"[0"])) + body[at:]
        elif damage == "drop":
            body = body[:at] + body[at + 1:]
        else:
            body = body[:at] + draw(st.binary(max_size=3)) + body[at:]
    return draw(st.sampled_from([b"", b" ", b"\n"])) + body + draw(
        st.sampled_from([b"", b" ", b"\n", b",", b"]"]))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), st.integers(1, 40))
@example(b'[{"cmd":"a"},{"cmd":"b"},]', 1)
@example(b'[{"cmd":"a"}, {"cmd":"},{"}, {"cmd":"c"}]', 1)
@example(b'[{"cmd":"a"},{"cmd":"\xc3\xa9"},\n{"cmd":b}]', 1)
@example(b'[{"cmd":"a"},{"cmd":b},{"cmd":"\xff"}]', 1)
@example(b'[{"cmd":"a"},5,{"cmd":"c"}] x', 1)
def test_pieces_read_as_one_parse(body: bytes, piece_bytes: int) -> None:
    assert outcome(in_pieces(piece_bytes), body) == outcome(whole_parse, body)


def test_a_big_body_is_cut_into_pieces_that_hold_every_job_once() -> None:
    objects = [{"cmd": f"echo {i} }},{{", "env": [f"A={i}"]} for i in range(5000)]
    body = orjson.dumps(objects)
    pieces = list(JobObjects(body, piece_bytes=4096).pieces())
    assert len(pieces) > 20
    assert [o for piece in pieces for o in piece] == objects


def test_parse_jobs_body_reads_big_bodies_too() -> None:
    objects = [{"cmd": f"echo {i}"} for i in range(50_000)]
    assert parse_jobs_body(orjson.dumps(objects)) == objects


def test_an_error_far_into_a_big_body_is_placed_as_a_whole_parse_places_it() -> None:
    body = orjson.dumps([{"cmd": f"échö {i}"} for i in range(100_000)]).replace(
        b'"cmd":"\xc3\xa9ch\xc3\xb6 99999"', b'"cmd":\n  99999x')
    with pytest.raises(BadRequest) as info:
        parse_jobs_body(body)
    expected = outcome(whole_parse, body)
    assert ("error", info.value.message) == expected
    assert "line 2 column 8" in info.value.message


def run_paced(body: bytes, query: dict[str, str] | None = None) -> list[Any]:
    async def go() -> list[Any]:
        parts, _ = paced_job_parts(body, query or {}, now=0.0, pacer=Pacer(0.0), size=700)
        return [job async for part in parts for job in part]
    return asyncio.run(go())


def test_paced_parts_are_the_jobs_of_one_reading() -> None:
    body = orjson.dumps([{"cmd": f"echo {i}", "priority": i % 7} for i in range(3000)])
    paced = run_paced(body, {"rep_grp": "r"})
    whole, _ = jobs_from_request(body, {"rep_grp": "r"}, now=0.0)
    assert [(j.key, j.priority, j.rep_grp) for j in paced] == \
        [(j.key, j.priority, j.rep_grp) for j in whole]


@pytest.mark.parametrize(("tail", "message"), [
    # A JSON error at the end comes before a bad job at the start, as in one parse.
    (b'{"cmd":"x"} trailing', "the request body is not valid JSON: unexpected character"),
    # So does an element that is no object.
    (b'{"cmd":"x"},7]', "expected a JSON array of job objects, but element 50002 is a "
     "number: 7"),
    # With nothing else wrong, the bad job is the answer.
    (b'{"cmd":"x"}]', PROBLEM + "priority value (300) is not in the range 0..255"),
])
def test_paced_parts_report_what_one_reading_reports_first(tail: bytes,
                                                           message: str) -> None:
    head = b'[{"cmd":"bad","priority":300},' + b",".join(
        b'{"cmd":"echo %d"}' % i for i in range(50_000)) + b","
    body = head + tail
    with pytest.raises(BadRequest) as paced:
        run_paced(body)
    with pytest.raises(BadRequest) as whole:
        jobs_from_request(body, {}, now=0.0)
    assert paced.value.message == whole.value.message
    assert paced.value.message.startswith(message)


def test_a_bad_job_in_the_last_part_fails_the_paced_reading() -> None:
    body = orjson.dumps([{"cmd": f"echo {i}"} for i in range(20_000)] + [{"cmd": ""}])
    with pytest.raises(BadRequest) as info:
        run_paced(body)
    assert info.value.message == PROBLEM + "cmd was not specified"
