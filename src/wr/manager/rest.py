"""REST API v1: the seed page's endpoints (spec/seed-rest-api.txt), over HTTPS with a token.

Error bodies are ``text/plain`` and end in a newline, as wr's; success bodies are JSON with a
trailing newline. Every path below its endpoint reaches that endpoint (``/rest/v1/info/x`` is
info), and ``/rest/v1/jobs`` works without its slash, as DESIGN.md settles.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response

from wr import __version__
from wr.errors import (
    BadRequest,
    PayloadTooLarge,
    StorageUnavailable,
    Unauthorized,
    WrError,
)
from wr.jobs import DELETABLE_STATES, RUN_STATES, Job, State
from wr.manager.answers import Chosen, Selection, json_array_answer
from wr.manager.core import Added, Manager
from wr.manager.names import ids_in_path
from wr.manager.owned_files import upload_refusal
from wr.manager.selection import history_of, select_jobs
from wr.pacing import Pacer
from wr.security import tokens_match
from wr.status import (
    SimilarGroups,
    display_env,
    encode,
    job_status,
    parse_limit,
    parse_state_filter,
    status_bytes,
)
from wr.submission import paced_job_parts

API_VERSION = "1"
STD_LIMIT = 1000
"""Jobs beyond this many with output in one answer get no StdOut/StdErr (as wr)."""


def json_response(value: Any, status: int = 200) -> Response:
    return Response(encode(value), status_code=status,
                    media_type="application/json; charset=UTF-8")


def text_error(message: str, status: int) -> Response:
    return Response(message.rstrip("\n") + "\n", status_code=status,
                    media_type="text/plain; charset=utf-8",
                    headers={"X-Content-Type-Options": "nosniff"})


def check_token(request: HTTPConnection, token: str) -> None:
    """wr's order of checks: ?token= first, then the Authorization header. Applied to
    every route by the route table (routing.py), never by a handler (issue 14)."""
    candidate = request.query_params.get("token", "")
    if not candidate:
        header = request.headers.get("authorization", "")
        if not header:
            raise Unauthorized("Authorization header required")
        if not header.startswith("Bearer "):
            raise Unauthorized("Authorization requires Bearer scheme")
        candidate = header[len("Bearer "):]
    if not tokens_match(candidate, token):
        raise Unauthorized("Invalid token")


class RestAPI:
    """The REST handlers, bound to one manager and its token."""

    def __init__(self, manager: Manager, token: str, max_body: int) -> None:
        self.manager = manager
        self.token = token
        self.max_body = max_body

    async def _body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            raise PayloadTooLarge(f"request body of {length} bytes is over the limit of "
                                  f"{self.max_body} bytes (setting maxbodysize)")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"request body is over the limit of {self.max_body} "
                                      f"bytes (setting maxbodysize)")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- endpoints --------------------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        if request.method != "GET":
            return text_error("Only GET is supported", 400)
        return json_response({"Version": __version__, "API": API_VERSION})

    async def info(self, request: Request) -> Response:
        if request.method != "GET":
            return text_error("Only GET is supported", 400)
        return json_response(self.manager.info())

    async def warnings(self, request: Request) -> Response:
        if request.method != "GET":
            return text_error("Only GET is supported", 400)
        return json_response([
            {"Msg": w.msg, "FirstDate": int(w.first), "LastDate": int(w.last), "Count": w.count}
            for w in self.manager.take_warnings()
        ])

    async def servers(self, request: Request) -> Response:
        if request.method == "GET":
            return json_response([])
        if request.method == "DELETE":
            if not request.query_params.get("id"):
                return text_error("id parameter is required", 400)
            return text_error("Server was not known to be bad", 404)
        return text_error("Only GET and DELETE are supported", 400)

    async def upload(self, request: Request) -> Response:
        if request.method != "PUT":
            return text_error("Only PUT is supported", 400)
        body = await self._body(request)
        wanted = request.query_params.get("path", "")
        try:
            path = self._save_upload(body, wanted)
        except (IsADirectoryError, NotADirectoryError, FileExistsError,
                PermissionError) as exc:
            raise BadRequest(f"path {wanted!r} cannot be written: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageUnavailable(f"no space to store the upload: {exc.strerror}"
                                         ) from None
            if exc.errno in _PATH_ERRNOS:  # the path's fault, not the server's (issue 13)
                raise BadRequest(f"path {wanted!r} cannot be written: {exc.strerror}"
                                 ) from None
            return text_error("file upload failed", 500)
        return json_response({"path": str(path)})

    def _save_upload(self, body: bytes, wanted: str) -> Path:
        if wanted:
            if "\x00" in wanted:
                raise BadRequest("path must not contain NUL bytes")
            if wanted.startswith("~/") or wanted == "~":
                path = Path.home() / wanted[2:]
            else:
                path = Path(wanted)
            if not path.is_absolute():
                raise BadRequest(f"path {wanted!r} must be absolute or start with ~/")
            # Its token, keys and db, wherever configured; /proc and the like (issue 13).
            refusal = upload_refusal(path, self.manager.config)
            if refusal is not None:
                raise BadRequest(f"path {wanted!r} {refusal}")
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, body)
            return path
        digest = hashlib.md5(body).hexdigest()
        root = self.manager.config.upload_dir
        path = root / digest[0] / digest[1] / digest[2] / digest[3:]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, body)
        return path

    async def jobs(self, request: Request) -> Response:
        method = request.method
        if method == "POST":
            return await self._add(request)
        if method == "GET":
            return await self.status_answer(request)
        if method == "DELETE":
            return await self._cancel(request)
        return text_error("So far only GET, POST and DELETE are supported", 400)

    async def _add(self, request: Request) -> Response:
        pacer = Pacer()
        added = await self.add_posted(request, pacer)
        return json_array_answer(
            added.queued, lambda jobs: [status_bytes(job, now=time.time()) for job in jobs],
            status=201)

    async def add_posted(self, request: Request, pacer: Pacer) -> Added:
        """Store and queue the jobs a POST carries (body and query): what both ways of
        adding (``/rest/v1/jobs/`` and ``/rest/v1/add/``) do before they answer. ``pacer``
        shares the event loop with other requests meanwhile (issue 13)."""
        body = await self._body(request)
        parts, rerun = paced_job_parts(body, request.query_params, now=time.time(),
                                       pacer=pacer)
        del body  # freed once parsed, not held through the rest of the add
        return await self.manager.add_parts(parts, rerun=rerun, pacer=pacer)

    def _params(self, request: Request) -> tuple[list[str] | None, str, int, bool, bool, bool]:
        q = request.query_params
        ids = ids_in_path(request)  # decoded once, split before decoding (issue 13)
        state = parse_state_filter(q.get("state", "")) or ""
        # parse_limit takes plain decimal digits only, as wr's strconv.Atoi: int() would
        # also take " 1" and "1_000".
        limit = parse_limit(q.get("limit", ""))
        return (ids, state, limit, q.get("std") == "true", q.get("env") == "true",
                q.get("search") == "true")

    async def _select(self, request: Request, pacer: Pacer | None = None) -> Selection:
        """The jobs a GET or DELETE addresses (`wr.manager.selection`), each with the rep
        group to report it under and, with ``limit``, how many like it were left out."""
        ids, state, limit, _, _, search = self._params(request)
        manager = self.manager
        pacer = pacer if pacer is not None else Pacer()
        out = Selection()
        for picked in await select_jobs(manager.queue, manager.store, ids, search=search,
                                        state=state, pacer=pacer):
            jobs = picked.jobs + await history_of(manager.store, picked)
            await self._limit(out, jobs, limit, picked.name, pacer)
        return out

    @staticmethod
    async def _limit(out: Selection, jobs: list[Job], limit: int, rep: str | None,
                     pacer: Pacer) -> None:
        """Add ``jobs`` to ``out``, only the first ``limit`` of each kind if ``limit``."""
        if limit <= 0:
            out.add(jobs, rep)
            return
        groups = SimilarGroups(limit)
        async for chunk in pacer.steps(jobs):
            groups.add(chunk)
        kept = groups.result()
        out.add([job for job, _ in kept], rep, [n for _, n in kept])

    async def _extras(self, request: Request, chosen: Sequence[Chosen],
                      pacer: Pacer | None = None
                      ) -> tuple[dict[str, tuple[str, str]], dict[str, str] | None]:
        """What status objects show beyond the jobs, as asked: the std of failed jobs
        (``std=true``, up to STD_LIMIT of them), the manager's environment (``env=true``)."""
        _, _, _, want_std, want_env, _ = self._params(request)
        std: dict[str, tuple[str, str]] = {}
        if want_std:
            keys: list[str] = []
            async for chunk in (pacer or Pacer()).steps(chosen):
                keys.extend([j.key for j, _, _ in chunk
                             if j.state == State.BURIED or (j.exited and j.exitcode != 0)])
            if 0 < len(keys) <= STD_LIMIT:
                std = await self.manager.store.std(keys)
        return std, (dict(os.environ) if want_env else None)

    @staticmethod
    def _objects(chosen: Sequence[Chosen],
                 std: dict[str, tuple[str, str]], env_base: dict[str, str] | None,
                 state: str | None = None) -> list[dict[str, Any]]:
        now = time.time()
        return [job_status(job, now=now, std=std.get(job.key),
                           env=display_env(job, env_base) if env_base is not None else None,
                           similar=similar, rep_grp=rep, state=state)
                for job, rep, similar in chosen]

    async def _status(self, request: Request, *, chosen: Sequence[Chosen],
                      state: str | None = None) -> list[dict[str, Any]]:
        """The status objects of chosen jobs, whole (a DELETE answers what it did)."""
        std, env_base = await self._extras(request, chosen)
        return self._objects(chosen, std, env_base, state)

    async def status_answer(self, request: Request) -> Response:
        """GET's answer: the chosen jobs' status objects, streamed if many (issue 13)."""
        pacer = Pacer()
        chosen = await self._select(request, pacer)
        std, env_base = await self._extras(request, chosen, pacer)

        def encode(chunk: Sequence[Chosen]) -> list[bytes]:
            now = time.time()
            return [status_bytes(job, now=now, std=std.get(job.key),
                                 env=display_env(job, env_base) if env_base is not None
                                 else None, similar=similar, rep_grp=rep)
                    for job, rep, similar in chunk]

        return json_array_answer(chosen, encode)

    async def _cancel(self, request: Request) -> Response:
        state = request.query_params.get("state", "")
        if state not in ("running", "lost", "deletable"):
            return text_error("state must be supplied as one of running|lost|deletable", 400)
        chosen = await self._select(request)
        manager = self.manager
        if state == "deletable":
            keys = [j.key for j, _, _ in chosen if j.state in DELETABLE_STATES]
            removed = {j.key for j in await manager.delete(keys)}
            picked = [c for c in chosen if c[0].key in removed]
            return json_response(await self._status(request, chosen=picked, state="deleted"))
        wanted = (State.LOST,) if state == "lost" else (State.RUNNING, State.RESERVED)
        targets = [c for c in chosen if c[0].state in wanted and c[0].state in RUN_STATES]
        before = await self._status(request, chosen=targets)
        await manager.kill([j.key for j, _, _ in targets])
        return json_response(before, status=202)


_PATH_ERRNOS = (errno.ENOENT, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL,
                errno.EXDEV, errno.ENXIO, errno.ETXTBSY)
"""Upload failures that say the path cannot hold a file: a 400, not a 500."""


def _write_atomically(path: Path, body: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with __import__("contextlib").suppress(OSError):
            os.unlink(tmp)
        raise


async def error_handler(request: Request, exc: Exception) -> Response:
    """One place turns errors into answers (STYLE.md)."""
    if isinstance(exc, WrError):
        return text_error(exc.message, exc.status)
    if isinstance(exc, ClientDisconnect):
        # The client went away mid-request (or stalled and was cut off): nobody to answer,
        # nothing to log as an error.
        return text_error("client disconnected", 400)
    if isinstance(exc, HTTPException):
        # The router's own 404 and 405 (and the page's static files'): text like every
        # other error, not the framework's JSON.
        response = text_error(exc.detail, exc.status_code)
        response.headers.update(exc.headers or {})
        return response
    import logging

    logging.getLogger("wr.manager").exception("unexpected error answering %s", request.url.path)
    return text_error("internal error", 500)
