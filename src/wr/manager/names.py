"""Names in URL paths, percent-decoded exactly once (issue 13, item 1).

Rep group names, job keys and limit group names travel in paths: ``/rest/v1/jobs/<ids>``,
``/rest/v1/counts/<ids>``, ``/rest/v1/summary/<ids>``, ``/rest/v1/details/<ids>`` and
``/rest/v1/limits/<name>``. A name may hold any character but NUL (``%``, ``,``, ``/``,
line breaks), so how a path becomes names has to be exact:

* the server (uvicorn) has already percent-decoded ``scope["path"]`` once; decoding a path
  parameter a second time turned a request for rep group ``zz%41`` (sent as ``zz%2541``)
  into one for ``zzA``, and a delete acted on the wrong jobs;
* ids are comma-separated, so splitting the *decoded* path made a name holding ``,``
  impossible to address;
* Starlette's ``{x:path}`` is ``.*``, which stops at a line break, and its routes end in
  ``$``, which also matches before a final line break: ``/rest/v1/jobs/%0A`` (rep group
  "\\n") matched with *no* ids, which means every job.

So routes that take names use the ``names`` convertor below (anything, line breaks
included), and every handler reads its names here, from the *raw* path
(``scope["raw_path"]``): the part after the route's fixed prefix is split on literal ``,``
first, and each piece is then percent-decoded once, as UTF-8. A client sends a ``,`` inside
a name as ``%2C`` and a ``%`` as ``%25``; a ``/`` may be sent as is or as ``%2F``; ``+`` is
a literal plus, as everywhere in a path (only a query string reads ``+`` as a space).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request

from wr.errors import BadRequest


class NamesConvertor(Convertor[str]):
    """``{param:names}``: the rest of the path, whatever it holds (line breaks too)."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("names", NamesConvertor())


def path_tail(request: Request, param: str) -> bytes:
    """The raw (still percent-encoded) part of the path that the route's ``{param:names}``
    matched: ``b"a%2Cb,c"`` for ``/rest/v1/jobs/a%2Cb,c``; ``b""`` when it matched nothing
    or the route has no such parameter (``/rest/v1/jobs``)."""
    path: str = request.scope["path"]
    decoded_tail = request.path_params.get(param) or ""
    if not decoded_tail:
        if path.endswith("\n"):  # "$" matched before it: something follows the route
            raise BadRequest(f"the path {path!r} ends in a line break after the endpoint's "
                             f"name; names go after its '/', percent-encoded")
        return b""
    # The route matched the decoded path: its fixed part is what precedes the parameter.
    fixed = path[:len(path) - len(decoded_tail)].strip("/").split("/")
    raw: bytes = request.scope.get("raw_path") or path.encode("utf-8")
    segments = raw.split(b"/")[1:]
    # The raw path must agree with it segment by segment: a fixed part written with %2F in
    # it would otherwise shift every name that follows.
    if [_decode(s, "path segment") for s in segments[:len(fixed)]] != fixed:
        raise BadRequest(f"the path {raw.decode('latin-1')!r} must begin with "
                         f"{'/' + '/'.join(fixed) + '/'!r} written plainly (no %2F in it)")
    return b"/".join(segments[len(fixed):])


def ids_in_path(request: Request, param: str = "ids") -> list[str] | None:
    """The comma-separated ids (job keys or rep group names) in the route's ``{param}``,
    each decoded once; None when there are none. Empty pieces are kept (wr's rep group
    ``""``)."""
    tail = path_tail(request, param)
    if not tail:
        return None
    return [_decode(piece, "id") for piece in tail.split(b",")]


def name_in_path(request: Request, param: str = "name") -> str:
    """The one name in the route's ``{param}`` (a limit group), decoded once."""
    return _decode(path_tail(request, param), "name")


def _decode(raw: bytes, what: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} {raw.decode('latin-1')!r} in the path is not UTF-8 once "
                         f"percent-decoded; send names as UTF-8, percent-encoded") from None
