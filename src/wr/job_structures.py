"""The structured values of a job object: behaviours, mount configs, ``cmd_deps`` and the
content of a ``cloud_script``, each checked for type and turned into what a job keeps.

Split from `wr.submission` (issue 14): these are the values with shapes of their own; the
scalars are `wr.job_values`. Every problem raises `wr.job_values.Invalid` with a message
that quotes the value and says what is accepted.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any

from wr.job_body import show_value as _show
from wr.job_values import Invalid, as_int, check_text, given, json_string, lowered
from wr.jobs import behaviours_from_json, compute_key

MAX_CLOUD_SCRIPT_BYTES = 1 << 20
"""The largest ``cloud_script`` file read into a job."""

_BEHAVIOUR_TYPES = {
    "run": str, "copy_to_manager": list, "cleanup": bool, "cleanup_all": bool,
    "remove": bool, "nothing": bool,
}


# -- behaviours ---------------------------------------------------------------------------

def behaviours(when: str, items: Any) -> list[dict[str, Any]]:
    """Type-check wr behaviour objects, then hand them to jobs.behaviours_from_json."""
    if not isinstance(items, list):
        raise Invalid(f"{when} must be an array of behaviour objects, not {_show(items)}")
    for item in items:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise Invalid(
                f'a behaviour in {when} must be an object like {{"cleanup":true}}, '
                f"not {_show(item)}"
            )
        for key, value in lowered(item).items():
            wanted = _BEHAVIOUR_TYPES.get(key)
            if wanted is None or value is None:
                continue
            if wanted is list:
                ok = isinstance(value, list) and all(isinstance(p, str) for p in value)
            else:
                ok = isinstance(value, wanted)
            if not ok:
                kind = {str: "a string", bool: "true or false",
                        list: "an array of paths"}[wanted]
                raise Invalid(f"behaviour {key} in {when} must be {kind}, not {_show(value)}")
            if isinstance(value, str):
                check_text(f"behaviour {key} in {when}", value)
    return behaviours_from_json(when, items)


# -- mounts -------------------------------------------------------------------------------

_MOUNT_FIELDS: tuple[tuple[str, type], ...] = (
    ("Mount", str), ("CacheBase", str), ("Retries", int), ("Verbose", bool),
)
_TARGET_FIELDS: tuple[tuple[str, type], ...] = (
    ("Profile", str), ("Path", str), ("CacheDir", str), ("Cache", bool), ("Write", bool),
)


def mounts(items: Any) -> list[dict[str, Any]]:
    """Validate mount configs (as ``wr mount --mount_json`` takes) into canonical form.

    Keys come out in wr's spelling and order; zero values are left out except ``Targets``
    and ``Path``, which is also how status objects show them. Sorted by ``Mount``, as wr's key
    computation leaves them.
    """
    if not isinstance(items, list):
        raise Invalid(f"mounts must be an array of mount configs, not {_show(items)}")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise Invalid(f"a mount config must be an object, not {_show(item)}")
        given_keys = lowered(item)
        mount = _fields(given_keys, _MOUNT_FIELDS, "mount config")
        targets = given_keys.get("targets")
        if not isinstance(targets, list) or not targets:
            raise Invalid(
                'a mount config needs "Targets", an array of at least one target like '
                f'{{"Path":"bucket/dir"}}, not {_show(targets)}'
            )
        mount["Targets"] = []
        for target in targets:
            if not isinstance(target, dict):
                raise Invalid(f"a mount target must be an object, not {_show(target)}")
            t = _fields(lowered(target), _TARGET_FIELDS, "mount target")
            if not t.get("Path"):
                raise Invalid(f'a mount target needs a "Path": {_show(target)}')
            mount["Targets"].append(t)
        out.append(mount)
    out.sort(key=lambda m: m.get("Mount", ""))
    return out


def _fields(values: dict[str, Any], spec: tuple[tuple[str, type], ...], what: str
            ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in spec:
        value = values.get(name.lower())
        if not given(value):
            continue
        if kind is int:
            value = as_int(f"{what} {name}", value, non_negative=True)
        elif not isinstance(value, kind):
            wanted = "a string" if kind is str else "true or false"
            raise Invalid(f"{what} {name} must be {wanted}, not {_show(value)}")
        elif kind is str:
            check_text(f"{what} {name}", value)
        if value:
            out[name] = value
    return out


# -- cmd_deps -----------------------------------------------------------------------------

def cmd_deps(items: Any) -> tuple[list[str], list[str]]:
    """Split wr's ``cmd_deps`` into (dep-group names, job keys of essence dependencies).

    An essence names a job by ``JobKey``, or by ``Cmd`` (+ ``Cwd``) (+ ``MountConfigs``),
    hashed the way wr hashes an essence (spec §4.2).
    """
    if not isinstance(items, list):
        raise Invalid(f"cmd_deps must be an array of dependency objects, not {_show(items)}")
    groups: list[str] = []
    keys: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise Invalid(f"a cmd_deps entry must be an object, not {_show(item)}")
        values = lowered(item)
        essence = values.get("essence")
        if given(essence) and essence != {}:
            keys.append(_essence_key(essence))
            continue
        group = json_string(values, "depgroup")
        if not group:
            raise Invalid(f"a cmd_deps entry needs an Essence or a DepGroup: {_show(item)}")
        groups.append(group)
    return groups, keys


def _essence_key(essence: Any) -> str:
    if not isinstance(essence, dict):
        raise Invalid(f"a cmd_deps Essence must be an object, not {_show(essence)}")
    e = lowered(essence)
    job_key = json_string(e, "jobkey")
    if job_key:
        return job_key
    cmd = json_string(e, "cmd")
    if not cmd:
        raise Invalid(f"a cmd_deps Essence needs a JobKey or a Cmd: {_show(essence)}")
    cwd = json_string(e, "cwd")
    mounts_raw = e.get("mountconfigs")
    configs = mounts(mounts_raw) if given(mounts_raw) else []
    return compute_key(cmd, cwd=cwd, cwd_matters=bool(cwd), mounts=configs)


# -- cloud scripts ------------------------------------------------------------------------

def read_script(path: str, cache: dict[str, str]) -> str:
    """The content of a ``cloud_script`` file on this (the manager's) machine."""
    if path.startswith("~/"):
        path = os.path.expanduser("~") + path[1:]
    with contextlib.suppress(OSError, ValueError):  # getcwd() can fail if cwd was removed
        path = os.path.abspath(path)
    if path in cache:
        return cache[path]
    try:
        content = _read_small_text(path)
    except Invalid as e:
        raise Invalid(f"path [{path}] could not be read: {e}") from None
    cache[path] = content
    return content


def _read_small_text(path: str) -> str:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise Invalid("not a regular file")
        if info.st_size > MAX_CLOUD_SCRIPT_BYTES:
            raise Invalid(f"larger than {MAX_CLOUD_SCRIPT_BYTES} bytes")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_CLOUD_SCRIPT_BYTES + 1)
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise Invalid(f"open {path}: {reason}") from None
    except ValueError as e:  # unencodable path
        raise Invalid(str(e)) from None
    if len(data) > MAX_CLOUD_SCRIPT_BYTES:
        raise Invalid(f"larger than {MAX_CLOUD_SCRIPT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("not UTF-8 text") from None
