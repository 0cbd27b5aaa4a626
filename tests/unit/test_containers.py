"""Tests for wr.containers and wr.unix_group: parsing and command building as tables, then
one job's run (wr.execute.Execution) in real podman containers of a locally built image.

No manager here: tests/integration/test_containers.py runs the same options end to end.
"""

from __future__ import annotations

import asyncio
import grp
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests import container_image
from tests.conftest import wait_for
from tests.container_image import MARKER, BusyboxImage
from wr import containers
from wr.container_options import ContainerMount, ContainerRequest, parse_container_mounts
from wr.containers import docker_command, find_runtime, parse_size, singularity_command
from wr.execute import ExecResult, ExecSetupError, ExecSpec, Execution
from wr.jobs import Job
from wr.modification import job_to_object
from wr.unix_group import in_group

busybox_image = container_image.busybox_image
"""The session's test image (a fixture)."""

# -- pure parts -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("", []),
    ("/a", [ContainerMount("/a", "/a")]),
    ("/a:/b", [ContainerMount("/a", "/b")]),
    ("/a:/b:ro", [ContainerMount("/a", "/b", True)]),
    ("/a:/b:rw", [ContainerMount("/a", "/b", False)]),
    ("/a:ro", [ContainerMount("/a", "/a", True)]),
    (" /a , /c:/d ", [ContainerMount("/a", "/a"), ContainerMount("/c", "/d")]),
])
def test_container_mounts_that_parse(text: str, expected: list[ContainerMount]) -> None:
    assert parse_container_mounts(text) == expected


@pytest.mark.parametrize("text, bad", [
    ("a", "a"), ("/a:b", "/a:b"), ("/a:/b:rx", "/a:/b:rx"), ("/a:/b:/c", "/a:/b:/c"),
    ("/a,,/b", ""), ("/a,", ""), ("~/x", "~/x"),
])
def test_container_mounts_that_do_not(text: str, bad: str) -> None:
    """wr bound `/a:/b:ro` at /a without a word (spec §2.2 quirk); we name the bad item."""
    with pytest.raises(ValueError) as caught:
        parse_container_mounts(text)
    assert f"item '{bad}'" in str(caught.value)
    assert "/outside[:/inside][:ro|rw]" in str(caught.value)


def test_request_from_a_runner_message() -> None:
    assert ContainerRequest.from_job({"cmd": "x"}) is None
    both = ContainerRequest.from_job({"with_docker": "d", "with_singularity": "s",
                                      "container_mounts": "/a"}, "podman")
    assert both == ContainerRequest("d", "", "/a", "", "podman")  # docker wins, as in wr
    assert ContainerRequest.from_job({"monitor_docker": "?"}) == ContainerRequest(monitor="?")


def test_docker_command_quotes_everything_and_passes_variables_by_name() -> None:
    """`-e NAME` lets the engine copy the value from its environment: nothing is cut at `:`
    (wr's quirk) or reread by a shell."""
    text = docker_command("/usr/bin/podman", "k" * 32, "img:1", "/w d",
                          [ContainerMount("/a", "/b", True), ContainerMount("/c", "/c")],
                          ["FOO", "BAR"])
    assert shlex.split(text) == [
        "/usr/bin/podman", "run", "--rm", "--name", "k" * 32, "-w", "/w d",
        "--mount", "type=bind,source=/w d,target=/w d",
        "--mount", "type=bind,source=/a,target=/b,readonly",
        "--mount", "type=bind,source=/c,target=/c",
        "-e", "FOO", "-e", "BAR", "img:1", "/bin/sh", "-c"]
    run = containers.ContainerRun("/usr/bin/podman", {}, "/w", "k", own=True)
    run.prefix = text
    assert shlex.split(run.command("echo '$x' | cat"))[-1] == "echo '$x' | cat"


def test_singularity_command() -> None:
    text = singularity_command("/opt/apptainer", "docker://alpine",
                               [ContainerMount("/a", "/b", True), ContainerMount("/c", "/c")])
    assert shlex.split(text) == ["/opt/apptainer", "exec", "-B", "/a:/b:ro", "-B", "/c:/c",
                                 "docker://alpine", "/bin/sh", "-c"]


@pytest.mark.parametrize("text, expected", [
    ("51.89MB ", 51_890_000), ("1.5MiB", 1_572_864), ("0B", 0), ("249.9kB", 249_900),
    ("2GiB", 2 * 1024**3), ("12", 12),
])
def test_sizes_as_docker_and_podman_print_them(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "1.5 parsecs", "-1MB"])
def test_sizes_that_are_not(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


MOUNTINFO = """\
30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:7 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:8 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 /inner /mnt/my\\040cg rw - cgroup2 cgroup2 rw
"""


def test_cgroup_mounts_from_mountinfo() -> None:
    mounts = containers.cgroup_mounts(MOUNTINFO)
    assert mounts["memory"] == ("/", "/sys/fs/cgroup/memory")
    assert mounts["cpu"] == mounts["cpuacct"] == ("/", "/sys/fs/cgroup/cpu,cpuacct")
    assert mounts[""] == ("/", "/sys/fs/cgroup/unified")  # the first cgroup2 mount


def _tree(root: Path, *dirs: str) -> None:
    for d in dirs:
        (root / d.lstrip("/")).mkdir(parents=True)
        (root / d.lstrip("/") / "memory.stat").write_text("anon 5\ntotal_rss 7\n")


def test_usage_files_on_cgroup_v1_v2_and_a_foreign_pid(tmp_path: Path) -> None:
    """v1 (or hybrid with memory on v1): memory.stat and cpuacct.usage; v2: memory.stat and
    cpu.stat; a cgroup whose path does not name the container (an engine elsewhere): None."""
    cid = "c0ffee" * 10
    v1 = {"memory": ("/", str(tmp_path / "mem")), "cpuacct": ("/", str(tmp_path / "cpu")),
          "": ("/", str(tmp_path / "v2"))}
    _tree(tmp_path, f"mem/libpod_parent/libpod-{cid}", f"cpu/libpod_parent/libpod-{cid}",
          f"v2/system.slice/docker-{cid}.scope")
    hybrid = (f"4:memory:/libpod_parent/libpod-{cid}\n2:cpuacct:/libpod_parent/libpod-{cid}\n"
              f"0::/libpod_parent/libpod-{cid}\n")
    assert containers.usage_files(hybrid, v1, cid) == (
        str(tmp_path / f"mem/libpod_parent/libpod-{cid}/memory.stat"),
        str(tmp_path / f"cpu/libpod_parent/libpod-{cid}/cpuacct.usage"), True)
    pure = f"0::/system.slice/docker-{cid}.scope\n"
    assert containers.usage_files(pure, {"": v1[""]}, cid) == (
        str(tmp_path / f"v2/system.slice/docker-{cid}.scope/memory.stat"),
        str(tmp_path / f"v2/system.slice/docker-{cid}.scope/cpu.stat"), False)
    assert containers.usage_files(pure, {"": v1[""]}, "another" * 9) is None
    assert containers.usage_files("0::/\n", {}, cid) is None


def test_a_missing_runtime_buries_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ExecSetupError) as caught:
        find_runtime("auto", str(tmp_path))
    assert caught.value.outcome == "bury"
    assert caught.value.fail_reason == "could not interact with docker: no podman or docker " \
                                       "command"
    assert str(tmp_path) in caught.value.detail
    with pytest.raises(ExecSetupError) as caught:
        find_runtime("wr-no-such-engine", None)
    assert "wr-no-such-engine" in caught.value.fail_reason


def test_an_unknown_group_buries_naming_it() -> None:
    with pytest.raises(ExecSetupError) as caught:
        in_group("wr-no-such-group", ["bash", "-c", "true"], os.environ.get("PATH"))
    assert (caught.value.outcome, caught.value.fail_reason) == (
        "bury", "command failed to start: unix group 'wr-no-such-group' does not exist")


def test_the_current_group_needs_no_switch() -> None:
    mine = grp.getgrgid(os.getegid()).gr_name
    assert in_group(mine, ["bash", "-c", "x"], None) == ["bash", "-c", "x"]


def test_modifying_a_job_keeps_its_group() -> None:
    """`wr mod` rebuilds jobs from job_to_object: a group left out would be dropped."""
    job = Job("k" * 32, "true", group="nogroup", with_docker="img", container_mounts="/a")
    obj = job_to_object(job)
    assert (obj["group"], obj["with_docker"], obj["container_mounts"]) == ("nogroup", "img",
                                                                            "/a")


# -- one run, in real containers ------------------------------------------------------------

def spec_for(image: BusyboxImage, base: Path, cmd: str, **changes) -> ExecSpec:
    """A job in the test image, with a key of its own (the container's name)."""
    values = dict(
        key=uuid.uuid4().hex, cmd=cmd, cwd=str(base), cwd_matters=False, change_home=False,
        env_override=[], base_env={**os.environ, **image.env}, expected_ram_mb=1024,
        expected_time_s=3600.0, retries_left=3, no_retry_over_walltime_s=0.0, modules=[],
        behaviours=[], monitor_interval=0.2,
        container=ContainerRequest(docker_image=image.name, runtime="podman"),
    )
    values.update(changes)
    return ExecSpec(**values)


def execute(spec: ExecSpec) -> ExecResult:
    async def go() -> ExecResult:
        execution = Execution(spec)
        await execution.start()
        return await execution.wait()

    return asyncio.run(go())


def setup_error(spec: ExecSpec) -> ExecSetupError:
    with pytest.raises(ExecSetupError) as caught:
        execute(spec)
    return caught.value


def test_the_command_runs_in_the_image_in_its_directory_with_its_variables(
        busybox_image: BusyboxImage, tmp_path: Path) -> None:
    """Steps: run a command that prints the image's marker file and os-release, a variable
    with `:`, spaces and `$` in its value, a host variable not in the job's `env`, and its
    working directory, and writes a file there.
    Expect: the image's files, not the host's; the value whole; the host variable absent;
    the unique working directory, which holds the file on the host; no container left."""
    spec = spec_for(busybox_image, tmp_path, 'cat /wr-test-image; echo; cat /etc/os-release;'
                    ' echo "FOO=$FOO"; echo "HOSTVAR=$WR_TEST_HOSTVAR"; pwd; echo x > made',
                    env_override=["FOO=a:b c$HOME;"])
    spec.base_env["WR_TEST_HOSTVAR"] = "leaked"
    result = execute(spec)
    assert (result.outcome, result.exitcode) == ("archive", 0), result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == MARKER and "ID=wr-test-busybox" in lines
    assert "FOO=a:b c$HOME;" in lines and "HOSTVAR=" in lines
    assert lines[-1] == result.actual_cwd
    assert (Path(result.actual_cwd) / "made").read_text() == "x\n"
    assert busybox_image.containers_named(spec.key) == []


def test_a_failing_command_in_a_container_is_released_and_removed(
        busybox_image: BusyboxImage, tmp_path: Path) -> None:
    spec = spec_for(busybox_image, tmp_path, "echo oops >&2; exit 3")
    result = execute(spec)
    assert (result.outcome, result.exitcode, result.fail_reason) == (
        "release", 3, "command exited non-zero")
    assert result.stderr == "oops"
    assert busybox_image.containers_named(spec.key) == []


def test_a_killed_container_is_gone_afterwards(busybox_image: BusyboxImage,
                                               tmp_path: Path) -> None:
    """Steps: start `sleep 300` in a container; once it runs, kill the job as `wr kill` does.
    Expect: buried "killed by user request" at once (not after 300 s), no container left."""
    spec = spec_for(busybox_image, tmp_path, "echo started; sleep 300")

    async def go() -> ExecResult:
        execution = Execution(spec)
        await execution.start()
        await asyncio.to_thread(wait_for, lambda: busybox_image.podman_cmd(
            "ps", "--format", "{{.Names}}").stdout.split().count(spec.key),
            60, 0.2, "the container to run")
        execution.kill("user")
        return await execution.wait()

    result = asyncio.run(go())
    assert (result.outcome, result.fail_reason) == ("bury", "killed by user request")
    assert result.walltime < 200
    assert busybox_image.containers_named(spec.key) == []


def test_container_memory_and_cpu_are_the_jobs(busybox_image: BusyboxImage,
                                               tmp_path: Path) -> None:
    """Steps: hold 200 MB in the container (tail keeps the last 200 MB it read) for 3 s.
    Expect: PeakRAM counts it (the container is not in the job's process tree); the
    container's CPU time is in the job's."""
    spec = spec_for(busybox_image, tmp_path,
                    "(head -c 200000000 /dev/zero; sleep 3) | tail -c 200000000 > /dev/null")
    result = execute(spec)
    assert result.outcome == "archive", result.stderr
    assert result.peak_ram_mb >= 190
    assert result.cpu_time > 0.05


def test_memory_through_stats_where_the_cgroup_is_not_ours(
        busybox_image: BusyboxImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine on another machine (DOCKER_HOST) reports pids that are not ours; then the
    memory comes from `<cli> stats`. Here the cgroup lookup is made to find nothing."""
    monkeypatch.setattr(containers, "cgroup_files", lambda pid, cid: None)
    spec = spec_for(busybox_image, tmp_path,
                    "(head -c 200000000 /dev/zero; sleep 3) | tail -c 200000000 > /dev/null")
    result = execute(spec)
    assert result.outcome == "archive", result.stderr
    assert result.peak_ram_mb >= 190


def test_a_stopped_leftover_of_the_same_job_is_removed_first(
        busybox_image: BusyboxImage, tmp_path: Path) -> None:
    """A container named after the job, left by an earlier run, would make every run fail
    with a name conflict (wr's "command exited non-zero" forever)."""
    spec = spec_for(busybox_image, tmp_path, "cat /wr-test-image")
    made = busybox_image.podman_cmd("create", "--name", spec.key, busybox_image.name, "true")
    assert made.returncode == 0, made.stderr
    result = execute(spec)
    assert (result.outcome, result.stdout) == ("archive", MARKER), result.stderr
    assert busybox_image.containers_named(spec.key) == []


def test_a_running_leftover_is_waited_for_not_killed(busybox_image: BusyboxImage,
                                                     tmp_path: Path) -> None:
    """A running container of the job's name is an earlier attempt (its runner died): the
    job is given back rather than run twice at once, and the container is left running."""
    spec = spec_for(busybox_image, tmp_path, "true")
    made = busybox_image.podman_cmd("run", "-d", "--name", spec.key, busybox_image.name,
                                    "sleep", "120")
    assert made.returncode == 0, made.stderr
    try:
        error = setup_error(spec)
        assert error.outcome == "release"
        assert error.fail_reason == (f"could not interact with docker: container {spec.key} "
                                     f"is still running")
        assert busybox_image.podman_cmd("ps", "--format", "{{.Names}}").stdout.split().count(
            spec.key) == 1
    finally:
        busybox_image.podman_cmd("rm", "-f", "-t", "0", spec.key)
    assert list(tmp_path.glob("wr_cwd/*")) == []  # the unique directory went too


def test_an_image_that_cannot_be_pulled_gives_the_job_back(busybox_image: BusyboxImage,
                                                           tmp_path: Path) -> None:
    image = f"localhost:1/wr-no-such-image-{uuid.uuid4().hex[:8]}:1"
    error = setup_error(spec_for(busybox_image, tmp_path, "touch ran",
                                 container=ContainerRequest(docker_image=image)))
    assert error.outcome == "release"
    assert error.fail_reason == f"could not interact with docker: image '{image}' could " \
                                f"not be pulled"
    assert "pull failed" in error.detail
    assert not list(tmp_path.rglob("ran"))


def _docker_engine_absent() -> bool:
    docker = shutil.which("docker")
    if not docker:
        return False
    return subprocess.run([docker, "info"], capture_output=True, timeout=60).returncode != 0


def test_a_docker_command_without_an_engine_buries(busybox_image: BusyboxImage,
                                                   tmp_path: Path) -> None:
    """The test machines have docker's command but no engine: wr's "could not interact
    with docker", buried, with docker's own words, and the command never runs bare."""
    if not _docker_engine_absent():
        pytest.skip("needs a docker command with no docker engine behind it, as on the test "
                    "machines")
    spec = spec_for(busybox_image, tmp_path, "touch ran",
                    container=ContainerRequest(docker_image="alpine:3.19", runtime="docker"))
    error = setup_error(spec)
    assert (error.outcome, error.fail_reason) == ("bury", "could not interact with docker")
    assert "docker ps failed" in error.detail
    assert not list(tmp_path.rglob("ran"))


def test_monitor_docker_finds_a_container_the_command_starts(
        busybox_image: BusyboxImage, tmp_path: Path) -> None:
    """monitor_docker by name, by cidfile (relative to the working directory) and `?`: the
    command runs podman itself, and the container's 200 MB are the job's."""
    hog = "(head -c 200000000 /dev/zero; sleep 3) | tail -c 200000000 > /dev/null"
    for monitor, how in [(f"wr-mon-{uuid.uuid4().hex[:8]}", "--name {}"),
                         ("cid.*", "--cidfile cid.txt"), ("?", "")]:
        start = f"podman run --rm {how.format(monitor)} {busybox_image.name} sh -c '{hog}'"
        spec = spec_for(busybox_image, tmp_path, start,
                        container=ContainerRequest(monitor=monitor, runtime="podman"))
        result = execute(spec)
        assert result.outcome == "archive", (monitor, result.stderr)
        assert result.peak_ram_mb >= 190, monitor


def test_a_kill_also_kills_the_monitored_container(busybox_image: BusyboxImage,
                                                   tmp_path: Path) -> None:
    name = f"wr-mon-{uuid.uuid4().hex[:8]}"
    spec = spec_for(busybox_image, tmp_path,
                    f"podman run --rm --name {name} {busybox_image.name} sleep 300",
                    container=ContainerRequest(monitor=name, runtime="podman"))

    async def go() -> ExecResult:
        execution = Execution(spec)
        await execution.start()
        await asyncio.to_thread(wait_for, lambda: execution._box.cid, 60, 0.2,
                                "the monitored container to be found")
        execution.kill("user")
        return await execution.wait()

    result = asyncio.run(go())
    assert result.fail_reason == "killed by user request"
    wait_for(lambda: not busybox_image.containers_named(name), 60,
             what="the --rm container to go")


def test_with_singularity_on_a_host_without_it_buries(tmp_path: Path) -> None:
    if any(shutil.which(n) for n in ("singularity", "apptainer")):
        pytest.skip("singularity is installed here, so its absence cannot be tested")
    spec = ExecSpec(key=uuid.uuid4().hex, cmd=f"touch {tmp_path}/ran", cwd=str(tmp_path),
                    cwd_matters=False, change_home=False, env_override=[], base_env=None,
                    expected_ram_mb=100, expected_time_s=60, retries_left=3,
                    no_retry_over_walltime_s=0, modules=[], behaviours=[],
                    container=ContainerRequest(singularity_image="x.sif"))
    error = setup_error(spec)
    assert (error.outcome, error.fail_reason) == ("bury",
                                                  "command not found: singularity (or "
                                                  "apptainer)")
    assert not (tmp_path / "ran").exists()
