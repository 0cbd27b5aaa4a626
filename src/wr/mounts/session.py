"""Mounting a job's (or ``wr mount``'s) configs, and undoing that with uploads.

`MountSession` is one mount config: its targets are checked (each bucket listed once, as wr
does, so a missing bucket or a refused key fails before anything runs, with the server's
answer), then one ``rclone mount`` serves them, through rclone's ``union`` backend when
there are several. `JobMounts` is all of a job's configs, mounted in order and undone in
reverse; a failure part-way unmounts what was mounted (without uploading) and raises.

Caching (docs/mounts.md): rclone's VFS cache belongs to a mount point, not to a target, so
a mount point is cached as far as its most demanding target asks: ``full`` when any target
that is read from is cached, ``writes`` when only the writable target is, ``off`` (reads
and writes streamed, writes sequential only, as wr's uncached targets) otherwise. Automatic
cache directories are made in the cache base and deleted at unmount; fixed ``CacheDir``s
are kept. A cache still holding files that could not be uploaded is kept, always, and the
unmount says where: rclone uploads them when a mount with the same cache starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from wr.mounts import rclone
from wr.mounts.config import MountConfig, MountError, Placement, place
from wr.mounts.local import local_bytes, remove_empty_parents, remove_local
from wr.mounts.s3access import S3Access, resolve

AUTO_CACHE_PREFIX = ".wr_mount_cache"
"""Name prefix of automatic cache directories made in a cache base."""
MIN_UPLOAD_PATIENCE_S = 10.0
"""Least time an unmount waits for an upload that makes no progress before giving up."""


def upload_patience(retries: int) -> float:
    """How long uploads may stall before an unmount gives up: wr's retry schedule for this
    many retries (0.1 s, tripling, at most 10 s apart), and at least MIN_UPLOAD_PATIENCE_S."""
    total, delay = 0.0, 0.1
    for _ in range(retries + 1):
        total += delay
        delay = min(delay * 3, 10.0)
    return max(total, MIN_UPLOAD_PATIENCE_S)


def cache_mode(config: MountConfig) -> str:
    """rclone's --vfs-cache-mode for a mount point (see the module docstring)."""
    if any(t.cached and not t.write for t in config.targets):
        return "full"
    if any(t.cached for t in config.targets):
        return "writes"
    return "off"


@dataclass(slots=True)
class UnmountReport:
    """What an unmount left undone. `failed` means written files did not reach S3."""

    failed: bool = False
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.problems)


class MountSession:
    """One mount config: building stores; `mount()` makes it; `unmount()` undoes it."""

    def __init__(self, config: MountConfig, placement: Placement, log_dir: str,
                 environ: Mapping[str, str], home: str, log_to_stderr: bool = False) -> None:
        self.config = config
        self.placement = placement
        self.cache_dir = ""
        """The cache in use ("" when uncached); fixed or automatic."""
        self._log_dir = log_dir
        self._environ = environ
        self._home = home
        self._auto_cache = False
        self._log_to_stderr = log_to_stderr
        self._rclone: rclone.RcloneMount | None = None

    @property
    def mount_point(self) -> str:
        return self.placement.mount_point

    def describe(self) -> str:
        return ", ".join(t.path for t in self.config.targets)

    async def mount(self) -> None:
        """Check the targets, prepare the directories and start rclone; MountError says
        which bucket and what the server said."""
        config = self.config
        config.check()
        accesses = [self._access(t.profile) for t in config.targets]
        exe = rclone.binary()
        env = rclone.child_environment(self._environ, any(a.https for a in accesses))
        upstreams = []
        for i, (target, access) in enumerate(zip(config.targets, accesses, strict=True)):
            env.update(rclone.s3_remote(f"t{i}", access))
            upstreams.append(f"t{i}:{target.path.strip('/')}" + ("" if target.write else ":ro"))
        await asyncio.gather(*(self._check(exe, env, i, access)
                               for i, access in enumerate(accesses)))
        if len(upstreams) == 1:
            remote = upstreams[0].removesuffix(":ro")
        else:
            env.update(rclone.union_remote("mux", upstreams))
            remote = "mux:"
        self._prepare_mount_point()
        mode = cache_mode(config)
        if mode != "off":
            self._prepare_cache()
        for attempt in range(3):
            mount = rclone.RcloneMount(
                exe, remote, self.mount_point, env, cache_mode=mode, cache_dir=self.cache_dir,
                read_only=config.writable is None, retries=config.effective_retries,
                verbose=config.verbose or self._log_to_stderr,
                log_file="" if self._log_to_stderr else
                os.path.join(self._log_dir, f"{id(self)}.{attempt}.log"))
            try:
                await mount.start()
            except MountError as exc:
                mount.kill()
                # The free port picked for rclone's remote control was taken meanwhile.
                if "address already in use" in str(exc) and attempt < 2:
                    continue
                self._drop_cache()
                raise
            except BaseException:
                mount.kill()
                self._drop_cache()
                raise
            self._rclone = mount
            return

    def _access(self, profile: str) -> S3Access:
        try:
            return resolve(profile, self._environ, self._home)
        except MountError as exc:
            raise MountError(f"mount of {self.describe()}: {exc}") from None

    async def _check(self, exe: str, env: dict[str, str], i: int, access: S3Access) -> None:
        target = self.config.targets[i]
        try:
            await rclone.check_target(exe, env, f"t{i}:{target.path.strip('/')}",
                                      self.config.effective_retries)
        except MountError as exc:
            raise MountError(
                f'could not access S3 bucket "{target.bucket}" (target {target.path}, '
                f'profile {access.profile}, endpoint {access.endpoint}): {exc}') from None

    def _prepare_mount_point(self) -> None:
        path = self.mount_point
        if rclone.is_mounted(path):
            raise MountError(f"Mount directory {path} is already a mount point")
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            with os.scandir(path) as entries:
                if next(entries, None) is not None:
                    raise MountError(f"Mount directory {path} was not empty")
        except OSError as exc:
            raise MountError(f"could not make the mount directory {path}: {exc}") from None

    def _prepare_cache(self) -> None:
        try:
            if self.placement.cache_dir:
                self.cache_dir = self.placement.cache_dir
                os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
            else:
                os.makedirs(self.placement.cache_base, mode=0o700, exist_ok=True)
                self.cache_dir = tempfile.mkdtemp(prefix=AUTO_CACHE_PREFIX,
                                                  dir=self.placement.cache_base)
                self._auto_cache = True
        except OSError as exc:
            raise MountError(f"could not make the cache directory for {self.describe()} "
                             f"in {self.placement.cache_base}: {exc}") from None

    def _drop_cache(self) -> None:
        if self._auto_cache and self.cache_dir:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            self.cache_dir = ""

    async def unmount(self, upload: bool = True) -> UnmountReport:
        """Unmount, first waiting for written files to upload when `upload`; the report
        says what did not reach S3 and where it was kept."""
        report = UnmountReport()
        mount, self._rclone = self._rclone, None
        if mount is None:
            return report
        pending: list[str] = []
        said = ""
        writable = self.config.writable
        if upload and writable is not None:
            if self.cache_dir:
                pending, said = await mount.flush(upload_patience(self.config.effective_retries))
            else:
                with contextlib.suppress(MountError):
                    errors, said = await mount.errors()
                    if errors:
                        report.failed = True
                        report.problems.append(
                            f"failed to upload to {writable.path}: rclone reported {errors} "
                            f"error(s) while streaming writes, the last: {said}")
        problem = await mount.stop()
        if problem:
            report.problems.append(f"Unmount failure: {problem}")
        if self.cache_dir:
            pending = await asyncio.to_thread(mount.pending)
        if pending:
            if upload:
                report.failed = True
                where = writable.path if writable else self.describe()
                report.problems.append(
                    f"failed to upload {len(pending)} file(s) to {where}"
                    f"{f' ({said})' if said else ''}; they are kept in the cache "
                    f"{self.cache_dir}: {', '.join(pending[:10])}")
            else:
                report.problems.append(f"{len(pending)} written file(s) were not uploaded; "
                                       f"they are kept in the cache {self.cache_dir}")
        else:
            await asyncio.to_thread(self._drop_cache)
        if report.failed or self.config.verbose:
            tail = mount.log_tail(50)
            if tail:
                report.problems.append(f"rclone log for {self.mount_point}:\n{tail}")
        return report

    def kill(self) -> None:
        """Unmount now, without uploading (files not uploaded stay in the cache)."""
        mount, self._rclone = self._rclone, None
        if mount is not None:
            mount.kill()


class JobMounts:
    """All the mounts of one job (or of one ``wr mount``), in order."""

    def __init__(self, configs: list[MountConfig], *, cwd: str, actual_cwd: str = "",
                 cwd_matters: bool = True, environ: Mapping[str, str] | None = None,
                 home: str | None = None, log_to_stderr: bool = False) -> None:
        self.configs = configs
        self._log_to_stderr = log_to_stderr
        self._environ = dict(os.environ if environ is None else environ)
        self._home = os.path.expanduser("~") if home is None else home
        self._placements = [place(c, cwd=cwd, actual_cwd=actual_cwd, cwd_matters=cwd_matters)
                            for c in configs]
        self._sessions: list[MountSession] = []
        self._log_dir = ""
        self._cleanup: tuple[str, str] | None = None
        self._kept: list[str] = []
        """Caches left on disk after unmount (fixed ones, and ones holding unuploaded files)."""

    @property
    def mount_points(self) -> list[str]:
        return [p.mount_point for p in self._placements]

    @property
    def placements(self) -> list[Placement]:
        return list(self._placements)

    @property
    def cache_dirs(self) -> list[str]:
        return [s.cache_dir for s in self._sessions if s.cache_dir]

    async def mount(self) -> None:
        """Mount every config in order; on a failure unmount the ones made and raise
        MountError (its text goes into the job's stderr)."""
        seen: dict[str, int] = {}
        for i, point in enumerate(self.mount_points):
            if point in seen:
                raise MountError(f"mount configs {seen[point] + 1} and {i + 1} would both mount "
                                 f"at {point}; give each its own Mount")
            seen[point] = i
        self._log_dir = tempfile.mkdtemp(prefix="wr_mount_logs")
        try:
            for config, placement in zip(self.configs, self._placements, strict=True):
                session = MountSession(config, placement, self._log_dir, self._environ,
                                       self._home, self._log_to_stderr)
                await session.mount()
                self._sessions.append(session)
        except BaseException:
            await asyncio.shield(self.unmount(upload=False))
            raise

    async def unmount(self, upload: bool = True) -> UnmountReport:
        """Unmount everything in reverse order (uploading written files when `upload`),
        then finish a cleanup that was asked for while mounted."""
        report = UnmountReport()
        while self._sessions:
            session = self._sessions.pop()
            part = await session.unmount(upload)
            if session.cache_dir:
                self._kept.append(session.cache_dir)
            report.failed = report.failed or part.failed
            report.problems += part.problems
        if self._cleanup is not None:
            unique, base = self._cleanup
            report.problems += await asyncio.to_thread(self._finish_cleanup, unique, base)
        if self._log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = ""
        return report

    def kill(self) -> None:
        """Synchronous last resort (a cancelled execution): unmount all without uploading."""
        while self._sessions:
            self._sessions.pop().kill()
        if self._log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = ""

    def disk_bytes(self, actual_cwd: str, tmp: str) -> int:
        """The job's disk use: its cwd (without what is mounted) and tmp, plus the caches."""
        caches = self.cache_dirs
        skip = set(self.mount_points) | set(caches)
        total = sum(local_bytes(d, skip) for d in (actual_cwd, tmp) if d)
        return total + sum(local_bytes(c) for c in caches)

    async def cleanup(self, unique: str, base: str) -> list[str]:
        """A cleanup behaviour while mounted: delete the job's unique directory except the
        mount points and caches (never reaching into a mount), and finish after unmount."""
        if not unique:
            return []
        self._cleanup = (unique, base)
        keep = set(self.mount_points) | set(self.cache_dirs)
        return await asyncio.to_thread(remove_local, unique, keep)

    def discard(self, unique: str, base: str) -> None:
        """Delete a job's unique directory after a failed start, never through a mount."""
        if unique:
            remove_local(unique, set(self._kept))
            if not os.path.exists(unique):
                remove_empty_parents(unique, base)

    def _finish_cleanup(self, unique: str, base: str) -> list[str]:
        keep = {c for c in self._kept if os.path.isdir(c)}
        problems = remove_local(unique, keep)
        if not os.path.exists(unique):
            remove_empty_parents(unique, base)
        return problems
