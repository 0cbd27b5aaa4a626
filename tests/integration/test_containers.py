"""Jobs in containers and unix groups, end to end: a real manager, its runners, real podman
containers of a locally built image, `wr add`/`wr kill`/`wr status` as a user types them.

Issue 15: a job that asks for a container, mounts or a group must get them or fail visibly,
never run bare on the host.
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import container_image
from tests.conftest import ManagerHandle, running_manager, wait_for
from tests.container_image import MARKER, BusyboxImage

pytestmark = pytest.mark.integration

busybox_image = container_image.busybox_image
"""The session's test image (a fixture)."""

ENDED = ("complete", "buried")


@pytest.fixture(scope="module")
def cmanager(busybox_image: BusyboxImage,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerHandle]:
    """One manager for the module, whose runners (and so jobs) can run the test image."""
    with running_manager(tmp_path_factory.mktemp("containers"), **busybox_image.env) as m:
        yield m


def _ended(client: Any, key: str, timeout: float = 120) -> dict[str, Any]:
    """The job once complete or buried, with its output."""
    return wait_for(lambda: (j := client.status(key, std="true")[0])["State"] in ENDED and j,
                    timeout=timeout, what=f"job {key} to end")


def _add(client: Any, job: dict[str, Any], rep: str) -> str:
    return client.add([{"retries": 0, **job}], rep_grp=rep)[0]["Key"]


def _actual_cwd(job: dict[str, Any]) -> Path:
    """Where the job ran: its `Cwd` is shown relative to its `CwdBase`."""
    return Path(job["CwdBase"].rstrip("/") + job["Cwd"])


def _report(job: dict[str, Any]) -> list[str]:
    """The lines a complete job wrote to `report` in its working directory (wr keeps the
    output of failed jobs only)."""
    return (_actual_cwd(job) / "report").read_text().splitlines()


def test_a_docker_job_sees_the_image_not_the_host(cmanager: ManagerHandle,
                                                  busybox_image: BusyboxImage,
                                                  tmp_path: Path, tag: str) -> None:
    """The issue's reproduction: `cat /etc/os-release` with_docker printed the host's Debian.
    Steps: add a with_docker job printing the image's os-release and marker file, an `env`
    variable whose value has `:` and spaces, and its working directory, and writing a file.
    Expect: complete; the image's files; the whole value; its actual working directory, where the
    file is on the host; the container named after the job key is gone."""
    cmd = (f"{{ cat /etc/os-release; cat /wr-test-image; echo; echo \"V=$V\"; pwd; }} > report;"
           f" echo {tag} > written")
    with cmanager.client() as c:
        key = _add(c, {"cmd": cmd, "with_docker": busybox_image.name,
                       "env": ["V=/a:/b c"], "cwd": str(tmp_path)}, tag)
        job = _ended(c, key)
    assert job["State"] == "complete", job
    out = _report(job)
    assert 'NAME="wr test busybox"' in out and MARKER in out
    assert not any("Debian" in line for line in out)
    assert "V=/a:/b c" in out
    assert out[-1] == str(_actual_cwd(job)) != str(tmp_path)
    assert (_actual_cwd(job) / "written").read_text() == f"{tag}\n"
    assert job["WithDocker"] == busybox_image.name
    assert busybox_image.containers_named(key) == []


def test_wr_kill_kills_the_container_and_leaves_none(cmanager: ManagerHandle,
                                                     busybox_image: BusyboxImage,
                                                     tag: str) -> None:
    """Steps: `wr add --with_docker IMG` a `sleep 600`; once its container runs, `wr kill -i`.
    Expect: buried "killed by user request" long before 600 s; `podman ps -a` shows no
    container of that name."""
    add = cmanager.wr("add", "--with_docker", busybox_image.name, "-i", tag, "-r", "0",
                      input=f"echo {tag}; sleep 600\n", check=True)
    assert "Added 1 new commands" in add.stderr + add.stdout
    with cmanager.client() as c:
        key = wait_for(lambda: c.status(tag), what="the job")[0]["Key"]
        wait_for(lambda: busybox_image.podman_cmd("ps", "--format", "{{.Names}}")
                 .stdout.split().count(key), timeout=120, what="its container to run")
        killed = cmanager.wr("kill", "-i", tag, check=True)
        assert "Initiated the termination of 1 running commands" in killed.stderr
        job = _ended(c, key)
    assert (job["State"], job["FailReason"]) == ("buried", "killed by user request")
    assert job["Walltime"] < 300
    assert busybox_image.containers_named(key) == []
    shown = cmanager.wr("status", "-i", tag, "-o", "d", check=True).stdout
    assert f"Cmd running inside docker container running image: {busybox_image.name}" in shown


def test_container_mounts_bind_host_directories(cmanager: ManagerHandle,
                                                busybox_image: BusyboxImage,
                                                tmp_path: Path, tag: str) -> None:
    """Steps: bind a host directory read-only at /data and another writable at /out; the
    command reads /data/input, writes /out/result, and tries to write to /data.
    Expect: the input read, the result on the host, the read-only bind refused the write."""
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    (data / "input").write_text(tag)
    cmd = ("{ cat /data/input; echo; cat /data/input > /out/result; touch /data/no || echo ro;"
           " } > report 2>&1")
    with cmanager.client() as c:
        key = _add(c, {"cmd": cmd, "with_docker": busybox_image.name,
                       "container_mounts": f"{data}:/data:ro,{out}:/out"}, tag)
        job = _ended(c, key)
    assert job["State"] == "complete", job
    lines = _report(job)
    assert lines[0] == tag and lines[-1] == "ro"
    assert (out / "result").read_text() == tag
    assert not (data / "no").exists()
    assert job["ContainerMounts"] == f"{data}:/data:ro,{out}:/out"


def test_container_memory_is_the_jobs(cmanager: ManagerHandle, busybox_image: BusyboxImage,
                                      tag: str) -> None:
    """The container's processes are the engine's children, not the job's: their 200 MB
    count in PeakRAM all the same (with_docker monitors its own container)."""
    cmd = "(head -c 200000000 /dev/zero; sleep 4) | tail -c 200000000 > /dev/null"
    with cmanager.client() as c:
        key = _add(c, {"cmd": cmd, "with_docker": busybox_image.name}, tag)
        job = _ended(c, key)
    assert job["State"] == "complete", job
    assert job["PeakRAM"] >= 190


def test_monitor_docker_adds_a_started_containers_memory(cmanager: ManagerHandle,
                                                         busybox_image: BusyboxImage,
                                                         tag: str) -> None:
    """A command that starts its own container (`podman run --name N`) with
    monitor_docker N: the container's 200 MB count in the job's PeakRAM."""
    name = f"wr-{tag[:40]}-{uuid.uuid4().hex[:6]}"
    hog = "(head -c 200000000 /dev/zero; sleep 4) | tail -c 200000000 > /dev/null"
    cmd = f"podman run --rm --name {name} {busybox_image.name} sh -c '{hog}'"
    with cmanager.client() as c:
        key = _add(c, {"cmd": cmd, "monitor_docker": name}, tag)
        job = _ended(c, key)
    assert job["State"] == "complete", job
    assert job["PeakRAM"] >= 190


def test_a_singularity_job_on_a_host_without_it_is_buried(cmanager: ManagerHandle,
                                                          tmp_path: Path, tag: str) -> None:
    """Steps: add a with_singularity job that would write a file. Expect: buried at once
    with a FailReason naming singularity, the reason in its stderr, and no file: it never
    ran bare on the host."""
    if any(shutil.which(n) for n in ("singularity", "apptainer")):
        pytest.skip("singularity is installed here, so its absence cannot be tested")
    with cmanager.client() as c:
        key = _add(c, {"cmd": f"touch {tmp_path}/ran", "with_singularity": "img.sif",
                       "retries": 3}, tag)
        job = _ended(c, key)
    assert (job["State"], job["FailReason"]) == ("buried",
                                                 "command not found: singularity (or "
                                                 "apptainer)")
    assert "neither is on PATH" in job["StdErr"]
    assert not (tmp_path / "ran").exists()


def test_the_singularity_command_line(make_manager: Any, tmp_path: Path, tag: str) -> None:
    """singularity and apptainer cannot be installed here (Debian's "singularity" package
    is a game), so this test puts a STAND-IN `singularity` first on the runners' PATH: a
    script that writes its arguments to `singularity-args` in the working directory and
    runs the `/bin/sh -c CMD` it was given on the host. It checks how wr calls singularity
    (`exec`, one `-B` per container mount, the image, `/bin/sh -c` and the command), and
    that the job runs in its working directory with its `env`; not singularity itself."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "singularity"
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > singularity-args\n'
                        'eval "cmd=\\${$#}"\nexec /bin/sh -c "$cmd"\n')
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    m = make_manager(PATH=f"{bin_dir}:{os.environ['PATH']}")
    m.start()
    with m.client() as c:
        key = _add(c, {"cmd": '{ echo "V=$V"; pwd; } > report', "with_singularity": "library://x/y:1",
                       "container_mounts": "/srv:/data:ro,/opt", "env": ["V=v 1"]}, tag)
        job = _ended(c, key)
    assert job["State"] == "complete", job
    cwd = _actual_cwd(job)
    assert _report(job) == ["V=v 1", str(cwd)]
    assert (cwd / "singularity-args").read_text().splitlines() == [
        "exec", "-B", "/srv:/data:ro", "-B", "/opt:/opt", "library://x/y:1", "/bin/sh", "-c",
        '{ echo "V=$V"; pwd; } > report']


def _a_group_to_switch_to() -> str:
    """nogroup as root (root may take any group); else a supplementary group of ours."""
    if os.geteuid() == 0:
        return "nogroup"
    for gid in os.getgroups():
        if gid != os.getegid():
            return grp.getgrgid(gid).gr_name
    pytest.skip("not root and in no supplementary group: no group to switch to")


def test_a_group_job_runs_as_that_group(cmanager: ManagerHandle, tag: str) -> None:
    """The issue's reproduction: `"group":"nogroup"` ran as root's own group.
    Expect: `id -gn` prints the group; a file the job makes belongs to it."""
    group = _a_group_to_switch_to()
    with cmanager.client() as c:
        key = _add(c, {"cmd": "{ id -gn; touch made; stat -c %G made; } > report",
                       "group": group}, tag)
        job = _ended(c, key)
    assert job["State"] == "complete", job
    assert _report(job) == [group, group]


def test_an_unknown_group_buries_naming_it(cmanager: ManagerHandle, tmp_path: Path,
                                           tag: str) -> None:
    group = f"wr-no-such-group-{uuid.uuid4().hex[:6]}"
    with cmanager.client() as c:
        key = _add(c, {"cmd": f"touch {tmp_path}/ran", "group": group, "retries": 3}, tag)
        job = _ended(c, key)
    assert (job["State"], job["FailReason"]) == (
        "buried", f"command failed to start: unix group '{group}' does not exist")
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("job, message", [
    ({"container_mounts": "data:/data"},
     "container_mounts item 'data:/data' (in 'data:/data') is not of the form "
     "/outside[:/inside][:ro|rw]"),
    ({"with_docker": "a", "with_singularity": "b"},
     "with_docker (a) and with_singularity (b) are mutually exclusive"),
])
def test_container_options_that_could_never_run_are_refused(cmanager: ManagerHandle,
                                                            job: dict[str, Any],
                                                            message: str, tag: str) -> None:
    with cmanager.http() as h:
        r = h.post("/rest/v1/jobs/", params={"rep_grp": tag}, json=[{"cmd": "true", **job}])
        assert r.status_code == 400 and message in r.text, r.text
    with cmanager.client() as c:
        assert c.status(tag) == []


def test_wr_mod_changes_the_group_of_a_buried_job(cmanager: ManagerHandle, tag: str) -> None:
    """Steps: a job with an unknown group is buried; `wr mod --group G` then `wr retry`.
    Expect: the same job (key) runs again, now as G."""
    group = _a_group_to_switch_to()
    with cmanager.client() as c:
        key = _add(c, {"cmd": "id -gn > report", "group": "wr-no-such-group-x"}, tag)
        assert _ended(c, key)["State"] == "buried"
        modified = cmanager.wr("mod", "-i", tag, "--group", group, check=True)
        assert "Modified 1 incomplete" in modified.stderr
        cmanager.wr("retry", "-i", tag, check=True)
        job = wait_for(lambda: (j := c.status(key)[0])["State"] == "complete" and j,
                       timeout=120, what="the retried job to complete")
    assert _report(job) == [group]
