"""Jobs with S3 mounts (issue 18), against a real moto S3 server, real rclone and FUSE.

The manager's runners mount with the manager's HOME, where each test writes an ``.s3cfg``
pointing at the server; the manager's environment has no AWS_* variables (AWS_CA_BUNDLE
would otherwise reach rclone, which is what the mount code must cope with, so one test
keeps it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManagerHandle, wait_for
from tests.integration.s3_server import S3Server, mounted_below, needs_fuse, s3_server

pytestmark = [pytest.mark.integration, needs_fuse]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with s3_server(tmp_path) as server:
        yield server


@pytest.fixture
def s3_manager(make_manager: Any, s3: S3Server, tmp_path: Path) -> ManagerHandle:
    handle = make_manager(AWS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt")
    s3.write_s3cfg(handle.home)
    handle.start()
    return handle


def _ended(c: Any, key: str, timeout: float = 90) -> dict[str, Any]:
    try:
        return wait_for(lambda: (j := c.status(key, std="true")[0])["State"]
                        in ("complete", "buried") and j, timeout=timeout,
                        what=f"job {key} to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {c.status(key, std='true')[0]}") from None


def _add(c: Any, cmd: str, mounts: list[dict[str, Any]], base: Path, **extra: Any) -> str:
    job = {"cmd": cmd, "cwd": str(base), "mounts": mounts, "retries": 0, **extra}
    return c.add([job], rep_grp="mounts")[0]["Key"]


def test_a_job_reads_its_input_and_writes_its_output_through_its_mount(
        s3_manager: ManagerHandle, s3: S3Server, tmp_path: Path) -> None:
    """Steps: bucket with data/in.txt; a job with one cached writable target reads it from
    its working directory (the default mount point) and writes out.txt and a file in a new
    sub-directory. Expected: complete; both outputs are in the bucket under the target's
    path; nothing is left mounted; the default cleanup left no job directory behind."""
    s3.make_bucket("inout", {"data/in.txt": b"hello from s3\n"})
    base = tmp_path / "jobs"
    with s3_manager.client() as c:
        key = _add(c, "cat in.txt | tr a-z A-Z > out.txt && mkdir -p sub && "
                      "seq 1 5000 > sub/numbers.txt",
                   [{"Targets": [{"Path": "inout/data", "Cache": True, "Write": True}]}], base)
        job = _ended(c, key)
    assert job["State"] == "complete", job
    assert s3.read("inout", "data/out.txt") == b"HELLO FROM S3\n"
    assert s3.read("inout", "data/sub/numbers.txt").decode().splitlines()[-1] == "5000"
    assert mounted_below(tmp_path) == []
    assert not (base / "wr_cwd").exists() or not any((base / "wr_cwd").rglob("*.txt"))
    assert s3.keys("inout") == ["data/in.txt", "data/out.txt", "data/sub/numbers.txt"]


def test_two_targets_are_multiplexed_in_one_directory_and_writes_go_to_the_writable(
        s3_manager: ManagerHandle, s3: S3Server, tmp_path: Path) -> None:
    """Steps: buckets refs (a.txt) and results (old.txt); `--mounts ur:refs,cw:results/run1`
    (the simple form, as wr add takes it). The job lists its directory and writes new.txt.
    Expected: it saw both buckets' files merged; new.txt is in results/run1 only."""
    s3.make_bucket("refs", {"a.txt": b"A"})
    s3.make_bucket("results", {"run1/old.txt": b"old"})
    from wr.mounts import parse_simple

    mounts = parse_simple("ur:refs,cw:results/run1")
    with s3_manager.client() as c:
        key = _add(c, "ls > listing.txt; cat a.txt old.txt > new.txt", mounts,
                   tmp_path / "jobs",
                   on_exit=[{"run": "true"}])
        job = _ended(c, key)
    assert job["State"] == "complete", job
    assert s3.read("results", "run1/listing.txt").split() == [b"a.txt", b"listing.txt",
                                                               b"old.txt"]
    assert s3.read("results", "run1/new.txt") == b"Aold"
    assert s3.keys("refs") == ["a.txt"]
    assert job["Mounts"] == ('[{"Targets":[{"Path":"refs"},{"Path":"results/run1",'
                             '"Cache":true,"Write":true}]}]')


def test_a_cached_read_is_served_from_the_cache_the_second_time(
        s3_manager: ManagerHandle, s3: S3Server, tmp_path: Path) -> None:
    """Steps: a 2 MB object; two jobs one after the other mount it read-only with the same
    fixed CacheDir and checksum it. Expected: same checksum; the server answered one GET
    of the object in all (the second read came from the cache, which is kept)."""
    body = os.urandom(2 * 1024 * 1024)
    s3.make_bucket("big", {"ref/genome.bin": body})
    cache = tmp_path / "shared_cache"
    mounts = [{"Mount": str(tmp_path / "mnt"),
               "Targets": [{"Path": "big/ref", "CacheDir": str(cache)}]}]
    outputs = []
    with s3_manager.client() as c:
        for i in range(2):
            key = _add(c, f"md5sum {tmp_path}/mnt/genome.bin > {tmp_path}/sum{i}", mounts,
                       tmp_path / "jobs")
            job = _ended(c, key)
            assert job["State"] == "complete", job
            outputs.append((tmp_path / f"sum{i}").read_text().split()[0])
            assert s3.gets_of("big", "ref/genome.bin") == 1, s3.log()[-2000:]
    import hashlib

    assert outputs == [hashlib.md5(body).hexdigest()] * 2
    assert any(p.is_file() and p.stat().st_size == len(body) for p in cache.rglob("*"))


@pytest.mark.parametrize("target, said", [
    ({"Path": "data", "Profile": "nosuchprofile"}, "S3 profile 'nosuchprofile' was not found"),
    ({"Path": "nosuchbucket/x"}, "NoSuchBucket: The specified bucket does not exist"),
])
def test_a_mount_that_fails_never_runs_the_command(
        s3_manager: ManagerHandle, s3: S3Server, tmp_path: Path, target: dict[str, Any],
        said: str) -> None:
    """Steps: a job whose target names a profile no config file has, or a bucket that does
    not exist; its command would create a marker file. Expected: buried (no retries left)
    with FailReason "mounting of remote file system(s) failed", the reason in its stderr,
    no marker, nothing mounted."""
    s3.make_bucket("data")
    marker = tmp_path / "ran"
    with s3_manager.client() as c:
        key = _add(c, f"touch {marker}", [{"Targets": [target]}], tmp_path / "jobs")
        job = _ended(c, key)
    assert job["State"] == "buried"
    assert job["FailReason"] == "mounting of remote file system(s) failed"
    assert "failed to mount remote file system(s)" in job["StdErr"]
    assert said in job["StdErr"]
    assert not marker.exists()
    assert mounted_below(tmp_path) == []


def test_a_failed_mount_follows_the_jobs_retries(
        s3_manager: ManagerHandle, s3: S3Server, tmp_path: Path) -> None:
    """Steps: a job with 1 retry mounts a bucket that does not exist yet; once it has
    failed once, the bucket is made. Expected: the second attempt mounts and completes."""
    with s3_manager.client() as c:
        key = _add(c, f"ls > {tmp_path}/listing", [{"Targets": [{"Path": "late"}]}],
                   tmp_path / "jobs", retries=1)
        wait_for(lambda: c.status(key)[0]["Attempts"] >= 1 and
                 c.status(key)[0]["State"] in ("delayed", "ready", "running"),
                 timeout=60, what="first attempt to fail")
        s3.make_bucket("late", {"f": b"x"})
        job = _ended(c, key)
    assert job["State"] == "complete", job
    assert job["Attempts"] == 2
    assert (tmp_path / "listing").read_text() == "f\n"


def test_a_failed_upload_leaves_the_job_failed_with_its_files_in_the_cache(
        s3_manager: ManagerHandle, s3: S3Server, tmp_path: Path) -> None:
    """Steps: a job opens out.txt in its cached writable mount, waits for a flag, then
    writes and closes it and exits 0; meanwhile the test stops the S3 server and raises
    the flag. Expected: buried (no retries) with FailReason "failed to upload files to
    remote file system", stderr naming out.txt and the cache that keeps it, the cached
    copy holding what was written; nothing mounted."""
    s3.make_bucket("out")
    flag = tmp_path / "go"
    cmd = (f"exec 3>out.txt; while [ ! -e {flag} ]; do sleep 0.05; done; "
           f"echo precious >&3; exec 3>&-")
    mounts = [{"Retries": 1, "Targets": [{"Path": "out/r", "Cache": True, "Write": True}]}]
    with s3_manager.client() as c:
        key = _add(c, cmd, mounts, tmp_path / "jobs", on_exit=[{"run": "true"}])
        wait_for(lambda: c.status(key)[0]["State"] == "running", what="job to run")
        s3.stop()
        flag.touch()
        job = _ended(c, key, timeout=120)
    assert job["State"] == "buried", job
    assert job["FailReason"] == "failed to upload files to remote file system"
    assert "out.txt" in job["StdErr"] and "kept in the cache" in job["StdErr"]
    kept = [p for p in (tmp_path / "jobs").rglob("out.txt")
            if ".wr_mount_cache" in str(p) and "/vfs/" in str(p)]
    assert kept and kept[0].read_text() == "precious\n"
    assert mounted_below(tmp_path) == []


def test_cleanup_never_deletes_remote_data_and_peak_disk_counts_only_local_bytes(
        s3_manager: ManagerHandle, s3: S3Server, tmp_path: Path) -> None:
    """Steps: a 6 MB object in an uncached read-only mount at a fixed Mount, beside a
    cached writable default mount (the job's cwd); the job reads the big object, writes
    3 MB, and has a cleanup behaviour. Expected: complete; the bucket still has the big
    object and both outputs; PeakDisk counts the written file in the cache (>= 3) but not
    the 6 MB read through the uncached mount (< 6); the job's directory is gone."""
    s3.make_bucket("ref", {"big.bin": os.urandom(6 * 1024 * 1024)})
    s3.make_bucket("res")
    ref = tmp_path / "ref"
    mounts = [{"Mount": str(ref), "Targets": [{"Path": "ref"}]},
              {"Targets": [{"Path": "res/o", "Cache": True, "Write": True}]}]
    with s3_manager.client() as c:
        key = _add(c, f"md5sum {ref}/big.bin > sum.txt && head -c 3145728 /dev/zero > zeros",
                   mounts, tmp_path / "jobs", on_exit=[{"cleanup": True}])
        job = _ended(c, key)
    assert job["State"] == "complete", job
    assert s3.keys("ref") == ["big.bin"]
    assert s3.keys("res") == ["o/sum.txt", "o/zeros"]
    assert 3 <= job["PeakDisk"] < 6, job["PeakDisk"]
    assert mounted_below(tmp_path) == []
    assert not list((tmp_path / "jobs").rglob("zeros"))
