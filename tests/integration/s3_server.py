"""A real S3-compatible server for mount tests: moto's standalone server on a free loopback
port, in its own process so that a test can stop it (to make uploads fail) and read its
request log (to see what was fetched from it). Buckets are made and checked with boto3,
which is independent of the rclone under test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "wrtestkey"
SECRET_KEY = "wrtestsecret"


def fuse_usable() -> str:
    """"" if rclone can FUSE-mount here, else why not (the reason a test is skipped with)."""
    if not shutil.which("rclone"):
        return "rclone is not installed (scripts/test installs it as root)"
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "fusermount3 is not installed (Debian fuse3; scripts/test installs it as root)"
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not available to this user"
    return ""


needs_fuse = pytest.mark.skipif(bool(fuse_usable()), reason=fuse_usable() or "ok")


class S3Server:
    """One moto server process; `stop()` and `start()` may be called again."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "moto.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"moto server did not start:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def make_bucket(self, name: str, files: dict[str, bytes] | None = None) -> None:
        c = self.client()
        c.create_bucket(Bucket=name)
        for key, body in (files or {}).items():
            c.put_object(Bucket=name, Key=key, Body=body)

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket: str) -> list[str]:
        out = self.client().list_objects_v2(Bucket=bucket).get("Contents") or []
        return sorted(o["Key"] for o in out)

    def gets_of(self, bucket: str, key: str) -> int:
        """How many GETs of this object the server has answered (from its request log)."""
        return self.log().count(f"GET /{bucket}/{key} HTTP")

    def write_s3cfg(self, home: Path, profile: str = "default") -> None:
        """An s3cmd-style config in `home` that points `profile` at this server."""
        home.mkdir(parents=True, exist_ok=True)
        with open(home / ".s3cfg", "a") as f:
            f.write(f"[{profile}]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"
                    f"host_base = 127.0.0.1:{self.port}\nuse_https = False\n\n")


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[S3Server]:
    server = S3Server(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def mounted_below(path: Path) -> list[str]:
    """Mount points at or under `path` still in this machine's mount table."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split(" ")[4].replace("\\040", " ")
            if point == str(path) or point.startswith(str(path) + "/"):
                found.append(point)
    return found
