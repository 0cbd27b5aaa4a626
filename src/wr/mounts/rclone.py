"""Running ``rclone``: the check that a bucket can be reached, and one ``rclone mount``.

Why rclone (docs/mounts.md): it is a well-kept, packaged S3 client with a FUSE mount, a VFS
cache that serves repeated reads locally and writes files back after they are closed, a
``union`` backend that overlays several targets on one directory with one writable
upstream, and a remote-control API to ask what it is doing. We do not write a file system.

How we drive it:

* remotes are configured only through ``RCLONE_CONFIG_<NAME>_*`` variables in the child's
  environment (``--config /dev/null``), so keys never appear on a command line; the
  remote-control API listens on a free loopback port with a random user and password, also
  passed in the environment. Our own ``AWS_*`` and ``RCLONE_*`` variables are not inherited:
  AWS_CA_BUNDLE makes rclone refuse a plain-http endpoint, and a stray RCLONE_VFS_CACHE_MODE
  must not change what a job asked for;
* writes are queued for upload as soon as a file is closed (``--vfs-write-back 0s``), and an
  unmount first waits until rclone's cache holds no dirty file: rclone itself does not wait
  for uploads when it is unmounted (it leaves them for its next start), so a plain unmount
  would lose writes. The cache's own metadata (``vfsMeta/.../<file>`` with ``"Dirty": true``)
  is the record of what is still to upload, read again after rclone has exited.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from wr.mounts.config import MountError
from wr.mounts.s3access import S3Access

MOUNT_TIMEOUT_S = 60.0
"""How long rclone gets to make a mount appear."""
EXIT_TIMEOUT_S = 30.0
"""How long rclone gets to exit after its mount is gone, before it is killed."""
SETTLE_S = 0.3
"""How long rclone must have nothing left to upload before an unmount believes it."""
CACHE_MAX_AGE = "100000h"
"""Cached files are never aged out during a mount (wr's caches keep everything)."""


def binary() -> str:
    """The rclone executable; MountError if it is not installed."""
    found = shutil.which("rclone")
    if not found:
        raise MountError("rclone is not installed on this machine (Debian: apt-get install "
                         "rclone fuse3); it is needed to mount S3 buckets")
    return found


def child_environment(environ: Mapping[str, str], https: bool) -> dict[str, str]:
    """Our environment without AWS_* and RCLONE_* (kept: AWS_CA_BUNDLE for https)."""
    env = {k: v for k, v in environ.items()
           if not k.startswith(("AWS_", "RCLONE_"))}
    if https and environ.get("AWS_CA_BUNDLE"):
        env["AWS_CA_BUNDLE"] = environ["AWS_CA_BUNDLE"]
    return env


def s3_remote(name: str, access: S3Access) -> dict[str, str]:
    """Environment variables that define the S3 remote `name` for rclone."""
    prefix = f"RCLONE_CONFIG_{name.upper()}_"
    env = {prefix + "TYPE": "s3", prefix + "PROVIDER": "Other",
           prefix + "ENDPOINT": access.endpoint, prefix + "ENV_AUTH": "false",
           prefix + "FORCE_PATH_STYLE": "true"}
    if access.region:
        env[prefix + "REGION"] = access.region
    if access.access_key:
        env[prefix + "ACCESS_KEY_ID"] = access.access_key
    if access.secret_key:
        env[prefix + "SECRET_ACCESS_KEY"] = access.secret_key
    return env


def union_remote(name: str, upstreams: list[str]) -> dict[str, str]:
    """Environment variables for a union of `upstreams` (``remote:path[:ro]``); new files
    go to the first upstream that may be written (the only one not marked ``:ro``)."""
    prefix = f"RCLONE_CONFIG_{name.upper()}_"
    return {prefix + "TYPE": "union", prefix + "UPSTREAMS": " ".join(upstreams),
            prefix + "CREATE_POLICY": "ff", prefix + "ACTION_POLICY": "ff",
            prefix + "SEARCH_POLICY": "ff"}


_XML_CODE = re.compile(r"<Code>([^<]*)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def server_answer(stderr: str) -> str:
    """What the S3 server said in an error response rclone dumped, plus rclone's verdict."""
    codes = _XML_CODE.findall(stderr)
    messages = _XML_MESSAGE.findall(stderr)
    verdict = ""
    for line in stderr.splitlines():
        if "Failed to" in line or " ERROR " in line or "caused by" in line:
            verdict = line.split(" : ", 1)[-1].strip()
            verdict = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", verdict)
    said = f"{codes[-1]}: {messages[-1]}" if codes and messages else ""
    return "; ".join(x for x in (said, verdict) if x) or stderr.strip()[-500:]


async def check_target(exe: str, env: dict[str, str], remote: str, retries: int) -> None:
    """List `remote` (``name:bucket/path``) once, as wr checks credentials before mounting;
    MountError with the server's answer if the bucket cannot be read."""
    argv = [exe, "--config", "/dev/null", "lsjson", "--stat", "--dump", "bodies",
            "--low-level-retries", str(retries), "--retries", "1", remote]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=env, start_new_session=True)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise MountError(server_answer(err.decode(errors="replace")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def is_mounted(path: str) -> bool:
    """Whether a file system is mounted exactly at `path` (read from mountinfo, which never
    blocks, where a stat of a stuck FUSE mount could)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            return any(_unescape(line.split(" ", 5)[4]) == path for line in f)
    except OSError:
        return os.path.ismount(path)


def dirty_files(meta_dir: str) -> list[str]:
    """Files rclone's cache still has to upload (relative paths), from its metadata."""
    found = []
    for root, _, files in os.walk(meta_dir):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, encoding="utf-8") as f:
                    if json.load(f).get("Dirty"):
                        found.append(os.path.relpath(path, meta_dir))
            except (OSError, ValueError, AttributeError):
                continue
    return sorted(found)


class RcloneMount:
    """One ``rclone mount`` child process and its remote-control API.

    Building stores; `start()` spawns and waits for the mount; `flush()` waits for uploads;
    `stop()` unmounts and waits for rclone to exit; `kill()` is the synchronous last resort.
    """

    def __init__(self, exe: str, remote: str, mount_point: str, env: dict[str, str],
                 *, cache_mode: str, cache_dir: str, read_only: bool, retries: int,
                 verbose: bool, log_file: str) -> None:
        self.mount_point = mount_point
        self.log_file = log_file
        self.cache_dir = cache_dir
        self.meta_dir = ""
        self._port = free_port()
        self._user = "wr"
        self._password = secrets.token_urlsafe(24)
        self._env = {**env, "RCLONE_RC_USER": self._user, "RCLONE_RC_PASS": self._password}
        argv = [exe, "--config", "/dev/null", "mount", remote, mount_point,
                "--vfs-cache-mode", cache_mode, "--low-level-retries", str(retries),
                "--umask", "077", "--rc", "--rc-addr", f"127.0.0.1:{self._port}",
                "--log-level", "INFO" if verbose else "NOTICE"]
        if log_file:
            argv += ["--log-file", log_file]
        if cache_mode != "off":
            argv += ["--cache-dir", cache_dir, "--vfs-write-back", "0s",
                     "--vfs-cache-max-age", CACHE_MAX_AGE]
        if read_only:
            argv.append("--read-only")
        self.argv = argv
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        """Spawn rclone and wait until the mount is there; MountError with rclone's log
        if it exits or does not mount in MOUNT_TIMEOUT_S."""
        # Without a log file rclone logs to our stderr (wr mount --verbose).
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=None if not self.log_file else subprocess.DEVNULL,
                                     env=self._env, close_fds=True, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not is_mounted(self.mount_point):
            if self.proc.poll() is not None:
                raise MountError(f"rclone could not mount {self.mount_point}: "
                                 f"{self.log_tail() or f'exit code {self.proc.returncode}'}")
            if time.monotonic() > deadline:
                self.kill()
                raise MountError(f"rclone did not mount {self.mount_point} within "
                                 f"{MOUNT_TIMEOUT_S:.0f}s: {self.log_tail()}")
            await asyncio.sleep(0.02)
        if self.cache_dir:
            with contextlib.suppress(MountError):
                stats = await self.rc("vfs/stats")
                self.meta_dir = str((stats.get("diskCache") or {}).get("pathMeta") or "")

    async def rc(self, command: str, **params: Any) -> dict[str, Any]:
        """Call rclone's remote-control API; MountError if it does not answer."""
        return await asyncio.to_thread(self._rc, command, params)

    def _rc(self, command: str, params: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self._port}/{command}", data=json.dumps(params).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Basic " +
                     base64.b64encode(f"{self._user}:{self._password}".encode()).decode()})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return dict(json.load(reply))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise MountError(f"rclone's remote control did not answer {command}: {exc}") \
                from None

    def pending(self) -> list[str]:
        """Files written but not yet uploaded."""
        return dirty_files(self.meta_dir) if self.meta_dir else []

    async def flush(self, patience: float) -> tuple[list[str], str]:
        """Wait until every written file is uploaded, or until nothing has moved for
        `patience` seconds; returns (files still not uploaded, rclone's last error).

        The kernel tells rclone a file was closed (FUSE release) only after close() has
        returned to the command, so "nothing to upload" must hold for SETTLE_S before it
        is believed; what is left dirty after rclone exits is checked again by the caller.
        """
        last_progress = time.monotonic()
        clean_since = 0.0
        seen: tuple[int, int, int] = (-1, -1, -1)
        last_error = ""
        while True:
            pending = await asyncio.to_thread(self.pending)
            try:
                stats = await self.rc("core/stats")
            except MountError as exc:
                return pending, str(exc)
            last_error = str(stats.get("lastError") or last_error)
            now = (len(pending), int(stats.get("bytes") or 0), int(stats.get("errors") or 0))
            if now != seen:
                seen, last_progress, clean_since = now, time.monotonic(), 0.0
            if not pending and not stats.get("transferring"):
                clean_since = clean_since or time.monotonic()
                if time.monotonic() - clean_since >= SETTLE_S:
                    return [], last_error
            elif time.monotonic() - last_progress > patience:
                return pending, last_error
            await asyncio.sleep(0.05)

    async def errors(self) -> tuple[int, str]:
        """(rclone's error count, its last error): uncached writes fail here, not in a flush."""
        stats = await self.rc("core/stats")
        return int(stats.get("errors") or 0), str(stats.get("lastError") or "")

    async def stop(self) -> str:
        """Unmount and wait for rclone to exit; "" or what went wrong (logged, as wr does)."""
        problem = ""
        if is_mounted(self.mount_point):
            problem = await _fusermount(self.mount_point)
        proc = self.proc
        if proc is not None:
            deadline = time.monotonic() + EXIT_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if proc.poll() is None:
                self.kill()
                problem = problem or f"rclone for {self.mount_point} had to be killed"
        return problem

    def kill(self) -> None:
        """Stop rclone now without uploading, and detach its mount (lazily if busy)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        if is_mounted(self.mount_point):
            for tool in ("fusermount3", "fusermount"):
                if shutil.which(tool):
                    subprocess.run([tool, "-uz", self.mount_point], check=False,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    break

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_file:
            return ""
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:]).strip()
        except OSError:
            return ""


async def _fusermount(path: str) -> str:
    """Unmount a FUSE mount, retrying while it is busy, then lazily; "" or the problem."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        return "neither fusermount3 nor fusermount is installed"
    said = ""
    for attempt in range(20):
        proc = await asyncio.create_subprocess_exec(
            tool, "-u", path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode == 0 or not is_mounted(path):
            return ""
        said = err.decode(errors="replace").strip()
        await asyncio.sleep(0.05 * (attempt + 1))
    proc = await asyncio.create_subprocess_exec(tool, "-uz", path, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
    await proc.wait()
    return f"{path} was busy ({said}); it was detached lazily"
