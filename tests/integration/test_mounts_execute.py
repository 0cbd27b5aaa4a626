"""execute.Execution with mounts, driven directly (no manager): how kills and stops end a
mounted job, against a real moto server with real rclone and FUSE (issue 18)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.s3_server import S3Server, mounted_below, needs_fuse, s3_server
from wr.execute import ExecSpec, Execution, Outcome
from wr.jobs import FailReason

pytestmark = [pytest.mark.integration, needs_fuse]


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    with s3_server(tmp_path) as server:
        home = tmp_path / "home"
        server.write_s3cfg(home)
        monkeypatch.setenv("HOME", str(home))
        yield server


def _spec(cmd: str, base: Path, mounts: list[dict]) -> ExecSpec:
    return ExecSpec(key="0123456789abcdef0123456789abcdef", cmd=cmd, cwd=str(base),
                    cwd_matters=False, change_home=False, env_override=[], base_env=None,
                    expected_ram_mb=0, expected_time_s=3600, retries_left=0,
                    no_retry_over_walltime_s=0, modules=[], behaviours=[], mounts=mounts)


async def _run_until_written_then(kill: str, base: Path) -> tuple[Execution, object]:
    mounts = [{"Targets": [{"Path": "outs/x", "Cache": True, "Write": True}]}]
    execution = Execution(_spec("echo partial > part.txt; touch ../tmp/ready; sleep 600",
                                base, mounts))
    await execution.start()
    ready = Path(execution.actual_cwd).parent / "tmp" / "ready"
    for _ in range(600):
        if ready.exists():
            break
        await asyncio.sleep(0.05)
    execution.kill(kill)
    return execution, await asyncio.wait_for(execution.wait(), 120)


def test_a_signalled_job_uploads_what_it_wrote_before_it_is_released(
        s3: S3Server, tmp_path: Path) -> None:
    """Steps: a mounted job writes part.txt and sleeps; the runner is signalled (kill
    "signal"). Expected: released with "runner received a signal to stop"; part.txt is in
    the bucket; nothing is left mounted."""
    s3.make_bucket("outs")
    execution, result = asyncio.run(_run_until_written_then("signal", tmp_path / "jobs"))
    assert (result.outcome, result.fail_reason) == (Outcome.RELEASE, FailReason.SIGNAL)
    assert s3.read("outs", "x/part.txt") == b"partial\n"
    assert mounted_below(tmp_path) == []


def test_a_job_stopped_with_the_manager_is_unmounted_without_upload_keeping_its_cache(
        s3: S3Server, tmp_path: Path) -> None:
    """Steps: the same, but the kill is a "stop" (the manager is going away). Expected:
    outcome interrupted; the automatic cache is kept, holding part.txt; nothing is left
    mounted (the upload may or may not have happened before the stop: what matters is
    that nothing was lost)."""
    s3.make_bucket("outs")
    execution, result = asyncio.run(_run_until_written_then("stop", tmp_path / "jobs"))
    assert result.outcome == Outcome.INTERRUPTED
    assert mounted_below(tmp_path) == []
    cached = [p for p in (tmp_path / "jobs").rglob("part.txt") if "/vfs/" in str(p)]
    uploaded = "x/part.txt" in s3.keys("outs")
    assert uploaded or (cached and cached[0].read_text() == "partial\n")


def test_peak_disk_of_a_mounted_job_counts_its_cache_not_the_bucket(
        s3: S3Server, tmp_path: Path) -> None:
    """Steps: a 4 MB object read through a cached read-only default mount. Expected:
    complete; PeakDisk counts the cached copy (4 MB, plus rclone's few bytes of metadata,
    rounded up) once, not the mounted view as well (which would make it 8 or more)."""
    import os

    s3.make_bucket("data", {"big.bin": os.urandom(4 * 1024 * 1024)})
    spec = _spec("cat big.bin > /dev/null", tmp_path / "jobs",
                 [{"Targets": [{"Path": "data", "Cache": True}]}])

    async def run() -> object:
        execution = Execution(spec)
        await execution.start()
        return await asyncio.wait_for(execution.wait(), 120)

    result = asyncio.run(run())
    assert result.outcome == Outcome.ARCHIVE, result.stderr
    assert 4 <= result.peak_disk_mb < 8, result.peak_disk_mb
    assert mounted_below(tmp_path) == []
