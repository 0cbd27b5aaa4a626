"""Names in paths: what the client encodes, the manager decodes exactly once (issue 13).

The scope is built as uvicorn builds it (``path`` percent-decoded once from ``raw_path``)
and matched by the manager's own route templates, so the property covers the whole way a
name travels except the socket (tests/integration/test_names_in_paths.py covers that).
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.routing import Match, Route

from wr.client import _path_ids, _path_name
from wr.errors import BadRequest
from wr.manager.names import ids_in_path, name_in_path


async def _endpoint(request: Request) -> None:  # never called: only the templates are used
    raise AssertionError


JOBS = Route("/rest/v1/jobs/{ids:names}", _endpoint)
LIMIT = Route("/rest/v1/limits/{name:names}", _endpoint)


def request_for(route: Route, raw_path: bytes) -> Request:
    """The request the manager's handler sees for ``raw_path``, as uvicorn and the router
    make it."""
    scope = {"type": "http", "method": "GET", "raw_path": raw_path,
             "path": unquote(raw_path.decode("ascii")), "query_string": b"", "headers": []}
    match, child = route.matches(scope)
    assert match == Match.FULL, raw_path
    return Request({**scope, **child})


names = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@given(st.lists(names, min_size=1, max_size=6).filter(lambda ns: ns != [""]))
def test_every_list_of_names_round_trips(ids: list[str]) -> None:
    raw = ("/rest/v1/jobs/" + _path_ids(ids)).encode("ascii")
    assert ids_in_path(request_for(JOBS, raw)) == ids


@given(names.filter(bool))
def test_every_single_name_round_trips_as_a_string(name: str) -> None:
    raw = ("/rest/v1/jobs/" + _path_ids(name)).encode("ascii")
    assert ids_in_path(request_for(JOBS, raw)) == [name]
    raw = ("/rest/v1/limits/" + _path_name(name)).encode("ascii")
    assert name_in_path(request_for(LIMIT, raw)) == name


@pytest.mark.parametrize(("raw", "ids"), [
    (b"/rest/v1/jobs/", None),
    (b"/rest/v1/jobs/zz%2541", ["zz%41"]),           # one decoding: not "zzA"
    (b"/rest/v1/jobs/zzA", ["zzA"]),
    (b"/rest/v1/jobs/a%2Cb,c", ["a,b", "c"]),        # split before decoding
    (b"/rest/v1/jobs/a,b", ["a", "b"]),
    (b"/rest/v1/jobs/a,,b,", ["a", "", "b", ""]),    # empty pieces kept, as wr
    (b"/rest/v1/jobs/a+b", ["a+b"]),                 # a literal plus in a path
    (b"/rest/v1/jobs/a%20b", ["a b"]),
    (b"/rest/v1/jobs/a/b,a%2Fb", ["a/b", "a/b"]),    # "/" plain or encoded
    (b"/rest/v1/jobs/na%C3%AFve", ["naïve"]),
    (b"/rest/v1/%6Aobs/x", ["x"]),                   # an encoded letter in the fixed part
    (b"/rest/v1/jobs//x", ["/x"]),
    (b"/rest/v1/jobs/%0A", ["\n"]),                  # Starlette's $ and .* stop at a \n
    (b"/rest/v1/jobs/a%0A,b%0Ac", ["a\n", "b\nc"]),
])
def test_ids_in_path(raw: bytes, ids: list[str] | None) -> None:
    assert ids_in_path(request_for(JOBS, raw)) == ids


def test_a_path_without_the_parameter_has_no_ids() -> None:
    route = Route("/rest/v1/jobs", _endpoint)
    assert ids_in_path(request_for(route, b"/rest/v1/jobs")) is None


def test_a_line_break_after_a_route_without_names_is_refused_not_read_as_all() -> None:
    """``^/rest/v1/jobs$`` matches ``/rest/v1/jobs\\n``: no ids would mean every job."""
    route = Route("/rest/v1/jobs", _endpoint)
    with pytest.raises(BadRequest, match="line break"):
        ids_in_path(request_for(route, b"/rest/v1/jobs%0A"))


def test_a_piece_that_is_not_utf8_is_refused_with_its_text() -> None:
    with pytest.raises(BadRequest, match=r"id '%FF' in the path is not UTF-8"):
        ids_in_path(request_for(JOBS, b"/rest/v1/jobs/ok,%FF"))


def test_an_encoded_slash_in_the_fixed_part_is_refused_not_misread() -> None:
    """``/rest%2Fv1/jobs/x`` decodes to a path the route matches, but its raw segments do
    not line up with the route's: reading names from it would start one segment late."""
    with pytest.raises(BadRequest, match="written plainly"):
        ids_in_path(request_for(JOBS, b"/rest%2Fv1/jobs/x"))


@pytest.mark.parametrize(("ids", "path"), [
    ("", ""), ([], ""), ("a,b", "a%2Cb"), (["a", "b"], "a,b"), ("50%", "50%25"),
    ("a+b", "a%2Bb"), ("a/b", "a%2Fb"), ("日本", "%E6%97%A5%E6%9C%AC"),
])
def test_the_client_encodes_each_name_whole(ids: str | list[str], path: str) -> None:
    assert _path_ids(ids) == path
