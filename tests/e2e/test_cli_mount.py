"""The real ``wr mount`` against a real moto S3 server, with real rclone and FUSE (issue 18).

Each test runs ``wr mount`` as a subprocess in a temporary directory, with a HOME whose
``.s3cfg`` points at the server; AWS_CA_BUNDLE stays set, as on these machines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import wait_for
from tests.integration.s3_server import S3Server, mounted_below, needs_fuse, s3_server

pytestmark = [pytest.mark.e2e, needs_fuse]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with s3_server(tmp_path) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, s3: S3Server) -> dict[str, str]:
    home = tmp_path / "home"
    s3.write_s3cfg(home)
    out = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out.update(HOME=str(home), AWS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt")
    return out


def _wr(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wr.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _foreground(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "wr.cli.main", "mount", "-f", *args],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_foreground_mount_serves_reads_and_uploads_writes_when_stopped_with_sigterm(
        env: dict[str, str], s3: S3Server, tmp_path: Path) -> None:
    """Steps: `wr mount -f -m ur:refs,cw:results/run` in a directory; read refs' file
    through ./mnt; write 40 files and SIGTERM at once. Expected: exit 0; every file is in
    results/run with its content (nothing lost to rclone's upload queue); nothing mounted;
    the automatic cache is gone."""
    s3.make_bucket("refs", {"in.txt": b"input"})
    s3.make_bucket("results")
    proc = _foreground(env, tmp_path, "-m", "ur:refs,cw:results/run")
    try:
        wait_for(lambda: mounted_below(tmp_path / "mnt") or proc.poll() is not None,
                 timeout=60, what="the mount")
        assert proc.poll() is None, proc.communicate()
        assert (tmp_path / "mnt" / "in.txt").read_text() == "input"
        for i in range(40):
            (tmp_path / "mnt" / f"out{i}.txt").write_text(f"line {i}\n" * 1000)
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert s3.keys("results") == sorted(f"run/out{i}.txt" for i in range(40))
    assert s3.read("results", "run/out7.txt") == b"line 7\n" * 1000
    assert mounted_below(tmp_path) == []
    assert not list(tmp_path.glob(".wr_mount_cache*"))


def test_background_mount_detaches_only_once_mounted_and_resolves_relative_paths(
        env: dict[str, str], s3: S3Server, tmp_path: Path) -> None:
    """Steps: `wr mount -j` with a relative Mount 'data' and a fixed relative CacheDir,
    in the background. Expected: it returns 0 with the mount already there under the
    directory it was run in and a pid to stop; a file written there is uploaded when that
    pid gets SIGTERM, after which the process is gone, nothing is mounted, and the fixed
    cache is kept."""
    s3.make_bucket("bgr")
    out = _wr(env, tmp_path, "mount", "-j",
              '[{"Mount":"data","Targets":[{"Path":"bgr/x","CacheDir":"keep","Write":true}]}]')
    assert out.returncode == 0, out.stderr
    assert mounted_below(tmp_path) == [str(tmp_path / "data")]
    pid = int(re.search(r"kill -TERM (\d+)", out.stderr).group(1))
    (tmp_path / "data" / "r.txt").write_text("written in the background\n")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not psutil.pid_exists(pid) or
             psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, timeout=120,
             what="the background wr mount to exit")
    assert s3.read("bgr", "x/r.txt") == b"written in the background\n"
    assert mounted_below(tmp_path) == []
    assert (tmp_path / "keep").is_dir()


@pytest.mark.parametrize("args, said", [
    ([], "--mounts or --mount_json is required"),
    (["-m", "cr:a", "-j", "[]"], "--mounts and --mount_json are mutually exclusive"),
    (["-m", "xr:bucket"], "'xr:bucket' did not start with c or u"),
    (["-m", "cr:a:b"], "'cr:a:b' was not in the right format"),
    (["-j", "[{"], "had a problem with the provided mount JSON ([{)"),
    (["-j", '[{"Targets":[{"Path":"a","Write":true},{"Path":"b","Write":true}]}]'],
     "you can't have more than one writeable remote"),
])
def test_bad_options_are_refused_before_anything_is_mounted(
        env: dict[str, str], tmp_path: Path, args: list[str], said: str) -> None:
    out = _wr(env, tmp_path, "mount", *args)
    assert out.returncode == 2, out.stderr
    assert said in out.stderr
    assert mounted_below(tmp_path) == []


def test_background_mount_of_a_missing_bucket_reports_the_server_answer(
        env: dict[str, str], s3: S3Server, tmp_path: Path) -> None:
    """Unlike wr's daemon, which fails silently: exit 1 with the bucket and NoSuchBucket."""
    out = _wr(env, tmp_path, "mount", "-m", "cr:absent/x")
    assert out.returncode == 1
    assert 'could not access S3 bucket "absent"' in out.stderr
    assert "NoSuchBucket" in out.stderr
    assert mounted_below(tmp_path) == []
    assert not (tmp_path / "mnt").exists() or not any((tmp_path / "mnt").iterdir())


def test_wr_add_and_mod_mounts_and_status_shows_a_mount_failure(
        make_manager: Any, s3: S3Server, tmp_path: Path) -> None:
    """Steps: `wr add --mounts ur:missing` (a bucket that does not exist) held in a limit
    group; `wr mod --mounts ur:present` changes its mounts (and so its key); a second job
    keeps the bad mount and runs. Expected: the modified job runs with its bucket
    listed by `ls`; the other is buried with the mount FailReason, and `wr status` shows
    the server's answer as its Details."""
    s3.make_bucket("present", {"hello.txt": b"hi"})
    mgr = make_manager(AWS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt")
    s3.write_s3cfg(mgr.home)
    mgr.start()
    base = tmp_path / "jobs"
    listing = tmp_path / "listing"
    mgr.wr("add", "-i", "held", "--mounts", "ur:missing", "-l", "hold:0", "--retries", "0",
           "-c", str(base), input=f"ls > {listing}\n", check=True)
    out = mgr.wr("mod", "-i", "held", "--mounts", "ur:present", check=True)
    assert "=>" in out.stdout
    mgr.wr("limit", "-g", "hold:1", check=True)
    mgr.wr("add", "-i", "bad", "--mounts", "ur:missing", "--retries", "0", "-c", str(base),
           input="true\n", check=True)
    with mgr.client() as c:
        wait_for(lambda: c.status("held")[0]["State"] == "complete", timeout=90,
                 what="the modified job to complete")
        assert c.status("held")[0]["Mounts"] == '[{"Targets":[{"Path":"present"}]}]'
        wait_for(lambda: c.status("bad")[0]["State"] == "buried", timeout=90,
                 what="the job with the missing bucket to be buried")
    assert listing.read_text() == "hello.txt\n"
    status = mgr.wr("status", "-i", "bad", check=True).stdout
    assert "Previous problem: mounting of remote file system(s) failed" in status
    assert 'Details: failed to mount remote file system(s): could not access S3 bucket ' \
           '"missing"' in status
    assert "NoSuchBucket" in status
