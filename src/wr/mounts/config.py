"""Mount configs: the two ways users write them, and where each one goes on disk.

A job (or ``wr mount``) names S3 locations to mount either in the simple form
``[c|u][r|w]:[profile@]bucket[/path],...`` (all items become targets of one mount,
multiplexed onto one directory) or as wr's JSON array of configs with Go's field names
(spec/containers-mounts-lsf-env.md §4.1, §4.2). Both end up as `MountConfig` values here.

Where a mount goes follows §4.3: a job that does not care about its cwd mounts at its unique
``cwd/`` itself and caches in the unique directory beside it; a cwd_matters job (and
``wr mount``) mounts at ``<cwd>/mnt`` and caches in ``<cwd>``. Our one deliberate difference
(docs/compatibility.md): a relative ``CacheDir`` is joined to the config's ``CacheBase`` when
one is given; wr joins it to the default base even then (§7 item 6).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wr.errors import WrError

DEFAULT_RETRIES = 10
"""Retries per remote call when a config asks for none (wr: 0 or less means 10)."""


class MountError(WrError):
    """A mount could not be made, checked or undone; the message says which and why."""


class MountConfigError(MountError):
    """A mount config that cannot be used as written."""

    status = 400


@dataclass(frozen=True, slots=True)
class Target:
    """One S3 location of a mount."""

    path: str
    """``bucket[/sub/dirs]``."""
    profile: str = ""
    """S3 profile; "" means the runner's $AWS_DEFAULT_PROFILE, $AWS_PROFILE or default."""
    cache: bool = False
    cache_dir: str = ""
    """A fixed cache directory (kept after unmount); setting it turns caching on."""
    write: bool = False

    @property
    def bucket(self) -> str:
        """The first segment of the path."""
        return self.path.strip("/").split("/", 1)[0]

    @property
    def cached(self) -> bool:
        return self.cache or bool(self.cache_dir)


@dataclass(frozen=True, slots=True)
class MountConfig:
    """One mount point with its targets, as wr's MountConfig."""

    targets: tuple[Target, ...]
    mount: str = ""
    cache_base: str = ""
    retries: int = 0
    verbose: bool = False

    @property
    def effective_retries(self) -> int:
        return self.retries if self.retries > 0 else DEFAULT_RETRIES

    @property
    def writable(self) -> Target | None:
        """The writable target, if any."""
        return next((t for t in self.targets if t.write), None)

    def check(self) -> None:
        """Refuse what wr refuses at mount time (§4.5), in wr's words, plus what rclone
        cannot do (a second cache directory in one mount point)."""
        if not self.targets:
            raise MountConfigError("no Targets specified")
        for t in self.targets:
            if not t.bucket:
                raise MountConfigError(f'a mount target needs a Path like "bucket/dir", '
                                       f'not {t.path!r}')
        if sum(t.write for t in self.targets) > 1:
            raise MountConfigError("you can't have more than one writeable remote")
        dirs = {t.cache_dir for t in self.targets if t.cache_dir}
        if len(dirs) > 1:
            # rclone keeps one cache per mount point (docs/mounts.md).
            raise MountConfigError(
                f"the targets of one mount point can share only one CacheDir, not "
                f"{', '.join(sorted(dirs))}")
        if len(self.targets) > 1:
            for t in self.targets:
                if any(c.isspace() for c in t.path):
                    raise MountConfigError(
                        f"a Path with white space ({t.path!r}) can only be mounted alone, "
                        f"not multiplexed with other targets")


def parse_simple(text: str) -> list[dict[str, Any]]:
    """``--mounts`` text as mount JSON: one config with a target per comma-separated item.

    Strict as wr is (§4.1): ``[c|u][r|w]:[profile@]bucket[/path]``; text after a second
    ``@`` is dropped, as wr drops it. Raises MountConfigError quoting the bad item.
    """
    targets: list[dict[str, Any]] = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) != 2 or len(parts[0]) != 2:
            raise MountConfigError(f"'{item}' was not in the right format")
        mode, path = parts
        if mode[0] not in "cu":
            raise MountConfigError(f"'{item}' did not start with c or u")
        if mode[1] not in "rw":
            raise MountConfigError(f"'{item}' did not specify w or r")
        target: dict[str, Any] = {"Path": path, "Cache": mode[0] == "c", "Write": mode[1] == "w"}
        if "@" in path:
            pieces = path.split("@")
            target["Path"] = pieces[1]
            if pieces[0]:
                target["Profile"] = pieces[0]
        targets.append(target)
    return [{"Targets": targets}]


_CONFIG_KEYS = {"mount": ("Mount", str), "cachebase": ("CacheBase", str),
                "retries": ("Retries", int), "verbose": ("Verbose", bool)}
_TARGET_KEYS = {"profile": ("Profile", str), "path": ("Path", str),
                "cachedir": ("CacheDir", str), "cache": ("Cache", bool),
                "write": ("Write", bool)}


def _typed(obj: Mapping[str, Any], keys: dict[str, tuple[str, type]], what: str
           ) -> dict[str, Any]:
    """Go-style case-insensitive field matching with type checks; unknown keys are ignored,
    as Go's decoder ignores them."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        spec = keys.get(str(key).lower())
        if spec is None or value is None:
            continue
        name, kind = spec
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise MountConfigError(
                f"{what} field {name} must be {'a string' if kind is str else kind.__name__}"
                f", not {value!r}")
        out[name] = value
    return out


def from_json(items: Any) -> list[MountConfig]:
    """Mount configs from decoded JSON (a list of objects with wr's Go field names)."""
    if not isinstance(items, list):
        raise MountConfigError(f"mounts must be a JSON array of mount configs, not {items!r}")
    configs = []
    for item in items:
        if not isinstance(item, dict):
            raise MountConfigError(f"a mount config must be an object, not {item!r}")
        fields = _typed(item, _CONFIG_KEYS, "mount config")
        raw_targets = next((v for k, v in item.items() if str(k).lower() == "targets"), None)
        if raw_targets is not None and not isinstance(raw_targets, list):
            raise MountConfigError(f"Targets must be an array of targets, not {raw_targets!r}")
        targets = []
        for raw in raw_targets or []:
            if not isinstance(raw, dict):
                raise MountConfigError(f"a mount target must be an object, not {raw!r}")
            t = _typed(raw, _TARGET_KEYS, "mount target")
            targets.append(Target(path=t.get("Path", ""), profile=t.get("Profile", ""),
                                  cache=t.get("Cache", False), cache_dir=t.get("CacheDir", ""),
                                  write=t.get("Write", False)))
        configs.append(MountConfig(targets=tuple(targets), mount=fields.get("Mount", ""),
                                   cache_base=fields.get("CacheBase", ""),
                                   retries=fields.get("Retries", 0),
                                   verbose=fields.get("Verbose", False)))
    return configs


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one mount config's mount point and cache go (absolute paths)."""

    mount_point: str
    cache_base: str
    cache_dir: str
    """The fixed cache directory, or "" when the mount needs no cache or an automatic one."""
    default_mount: bool
    """True when the config left Mount unset."""


def _absolute(path: str, root: str) -> str:
    path = os.path.expanduser(path)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(root, path))


def place(config: MountConfig, *, cwd: str, actual_cwd: str, cwd_matters: bool) -> Placement:
    """Where `config` mounts and caches for a job whose base dir is `cwd` and whose command
    runs in `actual_cwd` (its unique ``cwd/``; unused when `cwd_matters`), per §4.3."""
    if cwd_matters:
        root, default_mount, default_base = cwd, os.path.join(cwd, "mnt"), cwd
    else:
        root, default_mount = actual_cwd, actual_cwd
        default_base = os.path.dirname(actual_cwd.rstrip("/"))
    mount_point = _absolute(config.mount, root) if config.mount else default_mount
    cache_base = _absolute(config.cache_base, root) if config.cache_base else default_base
    fixed = next((t.cache_dir for t in config.targets if t.cache_dir), "")
    return Placement(mount_point=os.path.normpath(mount_point), cache_base=cache_base,
                     cache_dir=_absolute(fixed, cache_base) if fixed else "",
                     default_mount=not config.mount)
