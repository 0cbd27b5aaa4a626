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

import httpx
import orjson

from wr.config import Config, load_config_from_process
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
        verify: Any = True
        if ca_file:
            from wr.security import client_ssl_context

            verify = client_ssl_context(ca_file)
        self._http = httpx.Client(
            base_url=self.base_url, verify=verify, timeout=timeout,
            headers={"Authorization": f"Bearer {token}"}, trust_env=False,
        )

    @classmethod
    def for_deployment(cls, deployment: str | None = None, *, config: Config | None = None,
                       timeout: float = 120.0) -> Client:
        """Connect to the manager of a deployment (default: as ``wr`` would choose)."""
        from wr.manager.server import read_info

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
        try:
            r = self._http.request(method, path, params=params, content=body)
        except httpx.HTTPError as exc:
            raise WrError(f"could not reach the manager at {self.base_url}: {exc}") from exc
        if r.status_code >= 400:
            raise ClientError(r.text.strip() or r.reason_phrase, r.status_code)
        return orjson.loads(r.content) if r.content else None

    def version(self) -> dict[str, str]:
        return self._call("GET", "/rest/version/")

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/rest/v1/info/")

    def add(self, jobs: Sequence[Mapping[str, Any]], **defaults: Any) -> list[dict[str, Any]]:
        """Add jobs (each a dict of the REST job properties); keyword defaults apply to all."""
        return self._call("POST", "/rest/v1/jobs/", params=_query(defaults),
                          body=orjson.dumps(list(jobs)))

    def status(self, ids: str | Iterable[str] = "", **params: Any) -> list[dict[str, Any]]:
        """Status of all incomplete jobs, or of the given rep groups / keys."""
        return self._call("GET", "/rest/v1/jobs/" + _ids(ids), params=_query(params))

    def cancel(self, state: str, ids: str | Iterable[str] = "", **params: Any
               ) -> list[dict[str, Any]]:
        """DELETE: kill running jobs, confirm lost ones dead, or remove deletable ones."""
        return self._call("DELETE", "/rest/v1/jobs/" + _ids(ids),
                          params=_query({**params, "state": state}))

    def warnings(self) -> list[dict[str, Any]]:
        return self._call("GET", "/rest/v1/warnings/")


def _ids(ids: str | Iterable[str]) -> str:
    return ids if isinstance(ids, str) else ",".join(ids)


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
