"""Python client for a wr manager's REST API (used by the command line and by users).

    from wr.client import Client
    with Client.for_deployment() as c:
        c.add([{"cmd": "echo hello", "cpus": 1}], rep_grp="greetings")
        print(c.status("greetings"))

It finds the manager the way the command line does: the deployment's config, the token in
``client.token``, the CA in ``ca.pem``, and the ports of a running manager in
``manager.info``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from wr.config import Config, load_config_from_process, read_info
from wr.errors import WrError

__all__ = ["Client", "ClientError"]


class ClientError(WrError):
    """The manager answered with an error (``status`` is its HTTP status)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """A connection to one manager's REST API."""

    def __init__(self, base_url: str, token: str, *, ca_file: str | None = None,
                 timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        from wr.transport import Http

        context = None
        if ca_file:
            from wr.security import client_ssl_context

            context = client_ssl_context(ca_file)
        self._http = Http(self.base_url, context=context, timeout=timeout,
                          headers={"Authorization": f"Bearer {token}"})
        self._envs_sent: set[str] = set()
        """Keys of the environments this client has stored on the manager."""

    @classmethod
    def for_deployment(cls, deployment: str | None = None, *, config: Config | None = None,
                       timeout: float = 120.0) -> Client:
        """Connect to the manager of a deployment (default: as ``wr`` would choose)."""
        config = config or load_config_from_process(deployment)
        try:
            token = config.token_file.read_text().strip()
        except OSError as exc:
            raise WrError(f"could not read token file; has the manager been started? "
                          f"[{exc}]") from exc
        info = read_info(config) or {}
        port = info.get("web_port") or config.manager_web
        url = f"https://{config.cert_domain}:{port}"
        return cls(url, token, ca_file=str(config.ca_file), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: bytes | None = None) -> Any:
        """One request; errors become ClientError with the manager's message."""
        from wr.transport import TransportError

        try:
            r = self._http.request(method, path, params=params, body=body)
        except TransportError as exc:
            raise WrError(f"could not reach the manager at {self.base_url}: {exc}") from exc
        if r.status >= 400:
            raise ClientError(r.text.strip() or r.reason, r.status)
        return orjson.loads(r.content) if r.content else None

    def version(self) -> dict[str, str]:
        return self._call("GET", "/rest/version/")

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/rest/v1/info/")

    def add(self, jobs: Sequence[Mapping[str, Any]], *,
            environment: Mapping[str, str] | Sequence[str] | None = None,
            **defaults: Any) -> list[dict[str, Any]]:
        """Add jobs (each a dict of the REST job properties); keyword defaults apply to all.

        Jobs run with the environment of the runner that runs them (the manager's) unless
        ``environment`` gives one: ``environment=os.environ`` runs them with this
        process's, as ``wr add`` does, their ``env`` overrides (a job property, or the
        ``env`` default here) on top. It is sent once per distinct content
        (`put_environment`)."""
        return self._call("POST", "/rest/v1/jobs/",
                          params=_query(self._with_env(defaults, environment)),
                          body=orjson.dumps(list(jobs)))

    def put_environment(self, env: Mapping[str, str] | Sequence[str]) -> str:
        """Store an environment (names to values, or ``NAME=VALUE`` strings) on the
        manager for jobs to run with; returns its key, for the ``env_key`` of jobs. The
        manager keeps each distinct environment once; this client sends each once."""
        from wr.environments import env_key

        items = ([f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping)
                 else list(env))
        key = env_key(items)
        if key not in self._envs_sent:
            answer = self._call("PUT", "/rest/v1/environments/", body=orjson.dumps(items))
            self._envs_sent.add(answer["Key"])
            key = answer["Key"]
        return key

    def _with_env(self, defaults: dict[str, Any],
                  environment: Mapping[str, str] | Sequence[str] | None) -> dict[str, Any]:
        if environment is None:
            return defaults
        return {**defaults, "env_key": self.put_environment(environment)}

    def status(self, ids: str | Iterable[str] = "", **params: Any) -> list[dict[str, Any]]:
        """Status of all incomplete jobs, or of the given rep groups / keys (one as a
        string, several as a list; any name works, commas and all)."""
        return self._call("GET", "/rest/v1/jobs/" + _path_ids(ids), params=_query(params))

    def cancel(self, state: str, ids: str | Iterable[str] = "", **params: Any
               ) -> list[dict[str, Any]]:
        """DELETE: kill running jobs, confirm lost ones dead, or remove deletable ones."""
        return self._call("DELETE", "/rest/v1/jobs/" + _path_ids(ids),
                          params=_query({**params, "state": state}))

    def warnings(self) -> list[dict[str, Any]]:
        return self._call("GET", "/rest/v1/warnings/")

    # -- management (one server-side step each, however many jobs) -------------------------

    def action(self, action: str, *, ids: Iterable[str] = (), keys: Iterable[str] = (),
               all: bool = False, search: bool = False, **extra: Any) -> dict[str, Any]:
        """Run ``kill``, ``confirmdead``, ``retry``, ``remove`` or ``modify`` on the jobs
        selected by rep groups/keys (``ids``), ``keys``, or ``all``; answers
        ``{"Eligible", "Affected", "Keys", "Modified"}``."""
        body = {"ids": list(ids), "keys": list(keys), "all": all, "search": search, **extra}
        return self._call("POST", f"/rest/v1/actions/{action}", body=orjson.dumps(body))

    def kill(self, **selection: Any) -> dict[str, Any]:
        """Kill running jobs (they end buried, "killed by user request")."""
        return self.action("kill", **selection)

    def confirm_dead(self, **selection: Any) -> dict[str, Any]:
        """Confirm lost jobs dead: they are retried or buried by their retries."""
        return self.action("confirmdead", **selection)

    def retry(self, **selection: Any) -> dict[str, Any]:
        """Retry buried jobs, with their retries restored."""
        return self.action("retry", **selection)

    def remove(self, *, buried_only: bool = False, **selection: Any) -> dict[str, Any]:
        """Remove jobs that are not running (only buried ones with ``buried_only``)."""
        return self.action("remove", buried_only=buried_only, **selection)

    def modify(self, changes: Mapping[str, Any], **selection: Any) -> dict[str, Any]:
        """Change properties of queued, not running jobs; ``Modified`` maps old to new keys."""
        return self.action("modify", changes=dict(changes), **selection)

    def limits(self) -> dict[str, int]:
        return self._call("GET", "/rest/v1/limits/")

    def limit(self, name: str) -> int:
        """A limit group's limit (-1: none)."""
        return self._call("GET", _limit_path(name))["limit"]

    def set_limit(self, name: str, limit: int) -> int:
        """Set a limit group's limit (-1 removes it)."""
        return self._call("PUT", _limit_path(name),
                          params={"limit": str(limit)})["limit"]

    def pause(self) -> dict[str, Any]:
        return self._call("POST", "/rest/v1/manager/pause")

    def resume(self) -> dict[str, Any]:
        return self._call("POST", "/rest/v1/manager/resume")

    def drain(self) -> dict[str, Any]:
        return self._call("POST", "/rest/v1/manager/drain")

    def backup(self, path: str) -> None:
        """Write a consistent copy of the manager's database to ``path`` (via path.tmp)."""
        import os

        tmp = f"{path}.tmp"
        with self._http.stream("GET", "/rest/v1/manager/backup") as r:
            if r.status >= 400:
                raise ClientError(r.read().decode("utf-8", "replace").strip(), r.status)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
        os.replace(tmp, path)

    def wait(self, rep_grp: str, *, timeout: float | None = None, interval: float = 0.5
             ) -> list[dict[str, Any]]:
        """Wait until no job of ``rep_grp`` is still to run (all complete or buried);
        returns their final status."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            jobs = self.status(rep_grp)
            if all(j["State"] in ("complete", "buried") for j in jobs):
                return jobs
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"jobs of {rep_grp!r} still running after {timeout}s")
            time.sleep(interval)

    # -- figures the manager computes (wr.manager.summary): fast at 100,000s of jobs -------

    def submit(self, jobs: Sequence[Mapping[str, Any]] | bytes, *, keys: bool = False,
               environment: Mapping[str, str] | Sequence[str] | None = None,
               **defaults: Any) -> dict[str, Any]:
        """Add jobs as `add` does (``environment`` too), but answer only ``{"Added": n, "Existed":
        m}`` (with ``keys``, also ``"Keys"``: the input jobs now queued). ``jobs`` may be
        the JSON array already encoded. One call is one atomic step: all of it is added or
        none.

            c.submit([{"cmd": "echo 1"}, {"cmd": "echo 2"}], rep_grp="demo", cpus=1)
        """
        body = jobs if isinstance(jobs, bytes) else orjson.dumps(list(jobs))
        params = _query({**self._with_env(defaults, environment), "keys": keys or None})
        return self._call("POST", "/rest/v1/add/", params=params, body=body)

    def counts(self, ids: str | Iterable[str] = "", **params: Any) -> dict[str, int]:
        """How many of the selected jobs are in each state (``complete``, ``running``,
        ``ready``, ``dependent``, ``lost``, ``delayed``, ``buried``); selection as `status`.
        """
        return self._call("GET", "/rest/v1/counts/" + _path_ids(ids), params=_query(params))

    def summary(self, ids: str | Iterable[str] = "", **params: Any) -> dict[str, Any]:
        """Per rep group: counts, mean and standard deviation of resource usage of its
        completed jobs, and its buried jobs by exit code and fail reason (``RepGroups``),
        plus ``All`` over them when there are several; selection as `status`."""
        return self._call("GET", "/rest/v1/summary/" + _path_ids(ids), params=_query(params))

    def details(self, ids: str | Iterable[str] = "", **params: Any) -> list[dict[str, Any]]:
        """`status`, with ``ReqGroup``, ``Priority``, ``Retries``, ``ActualCwd`` and
        ``ReadyAt`` added to each job (what ``wr status`` shows)."""
        return self._call("GET", "/rest/v1/details/" + _path_ids(ids), params=_query(params))

    def lsf_jobs(self) -> dict[str, Any]:
        """The queued jobs with LSF job ids (bsub mode): ``{"Host", "LastID", "Jobs":
        [{"JobID", "Key", "State", "Name", "Host", "Submitted", "Started"}, ...]}``."""
        return self._call("GET", "/rest/v1/lsf/jobs/")


def _query(params: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, list | tuple):
            out[k] = ",".join(map(str, v))
        else:
            out[k] = str(v)
    return out


def _path_ids(ids: str | Iterable[str]) -> str:
    """Ids (one as a string, several as an iterable) as the path after ``.../jobs/``.

    The manager splits on literal commas and then percent-decodes each piece once (issue
    13), so each name is encoded whole: a ``,`` in a name becomes ``%2C``, a ``%``
    ``%25``, a ``/`` ``%2F``, a ``+`` ``%2B`` (a literal plus either way, in a path), and
    every name round-trips.
    """
    names = [ids] if isinstance(ids, str) else list(ids)
    if names == [""]:
        return ""
    return ",".join(_path_name(name) for name in names)


def _limit_path(name: str) -> str:
    if not name:  # "/rest/v1/limits/" is the list of every limit, not a group
        raise WrError("a limit group name must not be empty")
    return "/rest/v1/limits/" + _path_name(name)


def _path_name(name: str) -> str:
    """One name as a path segment, every reserved character percent-encoded (UTF-8)."""
    from urllib.parse import quote

    return quote(name, safe="")
