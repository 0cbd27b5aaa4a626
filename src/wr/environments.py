"""The environments jobs run with: the caller's, stored once by content (issue 15, part 1).

wr runs the jobs that ``wr add`` adds on the manager's machine with the environment of the
shell that added them, the job's ``env`` overrides on top (spec containers-mounts-lsf-env.md
§1). A conda or venv ``bin/`` on the caller's ``PATH`` must reach the job, or its command
exits 127.

How an environment travels and is kept:

* A client sends it once, before its jobs: ``PUT /rest/v1/environments/`` with a JSON
  object (``{"NAME": "VALUE"}``) or array (``["NAME=VALUE"]``). The manager stores it by
  content and answers its key, `env_key`: the BLAKE2b-128 hex digest of its entries joined
  by NULs, so equal environments have one key and one row, however often they are sent.
  Then jobs name it: ``env_key=<key>`` in the URL query of a POST (a default for every
  job, so a request's jobs share one string), or ``env_key`` in a job object. An add naming
  a key the manager has not stored is a 400 and stores nothing.
* The store keeps ``envs(key, data)``: the entries, zlib-compressed. A job keeps only the
  key (one field of its rarely used part, shared by a request's alike jobs), so a million
  queued jobs added from one shell hold one environment, not a million.
* A runner gets a job with its ``env_key`` and asks for the environment the first time it
  meets that key (the ``env`` op of wr.manager.runner_ws), keeping the last few it used.
* A job with no ``env_key`` (REST and Python-client adds that sent none) runs with the
  runner's own environment, which is the manager's as it started runners (wr's rule).
* The job's ``env`` overrides go on top (`wr.exec_spec.job_environment`); a stored
  environment first gets the runner's ``WR_*`` variables (where this manager is) and the
  directory of the runner's Python (its ``wr`` command) at the end of ``PATH``, as wr
  does, so a job can still talk to its manager.
* Nobody sees a stored environment through the API: status objects show the overrides
  (``Env``), no answer, event or log line carries one, and the db is 0600.

This module is pure but for `Environments`, the manager's view of the stored ones; it
imports only the standard library, so ``wr add`` can compute keys without loading the
manager's code.
"""

from __future__ import annotations

import collections
import hashlib
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ENV_KEY", "EnvError", "Environments", "base_environment", "check_env_key", "decode",
    "encode", "entries", "env_key",
]

ENV_KEY = re.compile(r"[0-9a-f]{32}")
"""What an environment's key looks like: 32 lowercase hex digits."""
CACHE_SIZE = 16
"""Environments the manager (and each runner) keeps decoded; others are read again."""
MAX_ENTRIES = 100_000
"""The most variables one environment may have (a real one has tens to hundreds)."""


class EnvError(ValueError):
    """An environment that cannot be stored; the message quotes what was wrong."""


def entries(value: Any) -> list[str]:
    """An environment as sent (a JSON object of names to values, or an array of
    ``NAME=VALUE`` strings) as its ``NAME=VALUE`` entries, checked: a name is not empty and
    holds no ``=``, and nothing holds a NUL (no process could be given it)."""
    if isinstance(value, Mapping):
        items = []
        for name, text in value.items():
            if not isinstance(text, str):
                raise EnvError(f"the value of environment variable {name!r} must be a "
                               f"string, not {_shown(text)}")
            items.append(_checked(f"{name}={text}", str(name)))
    elif isinstance(value, list):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise EnvError(f"an environment entry must be a NAME=VALUE string, not "
                               f"{_shown(item)}")
            items.append(_checked(item, item.partition("=")[0]))
    else:
        raise EnvError("an environment must be a JSON object of names to values, or an "
                       f"array of NAME=VALUE strings, not {_shown(value)}")
    if len(items) > MAX_ENTRIES:
        raise EnvError(f"an environment of {len(items)} variables is more than the "
                       f"{MAX_ENTRIES} accepted")
    names = [item.partition("=")[0] for item in items]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        twice = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise EnvError(f"environment variable {twice!r} is given more than once")
    return items


def _checked(item: str, name: str) -> str:
    # Messages quote names, never values: an environment holds secrets, and even its
    # sender's error should not echo them (issue 15).
    if "=" in name:
        raise EnvError(f"environment variable name {_short(name.partition('=')[0])!r}=... "
                       "holds '=': names cannot")
    if not name:
        raise EnvError("an environment entry has an empty name (it starts with '='); "
                       "entries are NAME=VALUE")
    if "=" not in item:
        raise EnvError(f"environment entry {_short(item)!r} is not NAME=VALUE")
    if "\x00" in item:
        raise EnvError(f"environment variable {name!r} holds a NUL character")
    return item


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(value: Any) -> str:
    import json

    try:
        return _short(json.dumps(value), 80)
    except (TypeError, ValueError):
        return _short(repr(value), 80)


def _joined(items: Iterable[str]) -> bytes:
    return "\x00".join(items).encode("utf-8", "surrogatepass")


def env_key(items: Iterable[str]) -> str:
    """The key of an environment: the same entries in the same order, the same key."""
    return hashlib.blake2b(_joined(items), digest_size=16).hexdigest()


def encode(items: list[str]) -> tuple[str, bytes]:
    """An environment's key and its stored form."""
    raw = _joined(items)
    return hashlib.blake2b(raw, digest_size=16).hexdigest(), zlib.compress(raw, 6)


def decode(data: bytes) -> list[str]:
    """The entries of a stored environment (raises `zlib.error` on a damaged one)."""
    raw = zlib.decompress(data)
    return raw.decode("utf-8", "surrogatepass").split("\x00") if raw else []


def check_env_key(name: str, value: str) -> str:
    """The `wr.job_values.CHECKS` check of ``env_key``: the form of a key (whether the
    manager holds it is checked when jobs are added, `Environments.check`)."""
    if not ENV_KEY.fullmatch(value):
        raise ValueError(f"{name} ({_short(value)}) is not an environment's key (32 "
                         "lowercase hex digits, as PUT /rest/v1/environments/ answers)")
    return value


def base_environment(items: Iterable[str], own: Mapping[str, str],
                     wr_dir: str) -> dict[str, str]:
    """The environment a job with a stored one starts from, before its ``env`` overrides:
    the stored entries, then the runner's ``WR_*`` variables (which manager, which
    deployment: a job that runs ``wr`` reaches its own manager, as wr's runners ensure),
    and ``wr_dir`` (where the runner's ``wr`` command is) at the end of ``PATH`` unless it
    is one of its directories, as wr appends its executable's directory."""
    env = dict(item.partition("=")[::2] for item in items)
    env.update({name: value for name, value in own.items() if name.startswith("WR_")})
    path = env.get("PATH", "")
    if wr_dir and wr_dir not in path.split(":"):
        env["PATH"] = f"{path}:{wr_dir}" if path else wr_dir
    return env


class Environments:
    """The manager's stored environments: which keys it holds, and the last few used,
    decoded. ``store`` is a `wr.store.Store` (opened)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.known: set[str] = set()
        """Keys stored; a few per shell that added jobs, so all are kept."""
        self._cache: collections.OrderedDict[str, list[str]] = collections.OrderedDict()

    async def load(self) -> None:
        """Learn the keys the store holds (at start)."""
        self.known = set(await self.store.env_keys())

    async def put(self, value: Any) -> str:
        """Store an environment as sent (once per content) and return its key, once it is
        durable; an environment that cannot be stored is an `EnvError`."""
        items = entries(value)
        key, data = encode(items)
        if key not in self.known:
            await self.store.put_env(key, data)
            self.known.add(key)
        self._remember(key, items)
        return key

    def check(self, key: str) -> None:
        """Refuse a job naming an environment the manager does not hold."""
        if key not in self.known:
            raise EnvError(f"env_key {_short(key)} is not an environment this manager holds; "
                           "PUT the environment to /rest/v1/environments/ first and use the "
                           "key it answers")

    async def get(self, key: str) -> list[str] | None:
        """A stored environment's entries (None: not held, or damaged)."""
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        if key not in self.known:
            return None
        data = await self.store.env(key)
        if data is None:
            return None
        try:
            items = decode(data)
        except (zlib.error, UnicodeDecodeError):
            return None
        self._remember(key, items)
        return items

    def _remember(self, key: str, items: list[str]) -> None:
        self._cache[key] = items
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
