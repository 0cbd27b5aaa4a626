"""A real container image for the container tests, built here from Debian's busybox-static.

No image registry can be reached from the test machines, so the session imports a tiny
image of its own with `podman import`: a static busybox with a link for each of its applets,
an `/etc/os-release` of its own and a marker file, `/wr-test-image`, that no host has. It is
tagged with a name unique to the session and removed at its end.

Debian's podman needs, on these machines, the runc runtime and no default ulimits (crun
cannot handle the kernel's hybrid cgroups, and raising limits is not permitted): the
fixture writes such a containers.conf and gives its path as CONTAINERS_CONF, which tests
pass on to the manager (and so to runners and jobs).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

OS_RELEASE = 'NAME="wr test busybox"\nID=wr-test-busybox\n'
"""The image's /etc/os-release."""
MARKER = "inside the wr test image"
"""The content of the image's /wr-test-image."""
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
pids_limit = 0

[engine]
runtime = "runc"
"""


@dataclass(frozen=True)
class BusyboxImage:
    """The session's image, and the environment podman needs to run it."""

    name: str
    podman: str
    env: dict[str, str]
    """Variables to add to a manager's (or a command's) environment: CONTAINERS_CONF."""

    def podman_cmd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.podman, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **self.env})

    def containers_named(self, name: str) -> list[str]:
        """Every container (running or not) with exactly this name: `podman ps -a`."""
        out = self.podman_cmd("ps", "-a", "--format", "{{.Names}}").stdout.split()
        return [n for n in out if n == name]


def _missing() -> list[str]:
    return [tool for tool in ("podman", "runc", "busybox") if not shutil.which(tool)]


def _rootfs_tar(busybox: str) -> bytes:
    """A tar of the image's root file system."""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes = b"", mode: int = 0o644,
                kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for folder in ("bin", "etc", "tmp", "data", "out"):
            add(folder, mode=0o1777 if folder == "tmp" else 0o755, kind=tarfile.DIRTYPE)
        add("bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in applets:
            if applet != "busybox":
                add(f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        add("etc/os-release", OS_RELEASE.encode())
        add("wr-test-image", MARKER.encode())
        add("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", b"root:x:0:\n")
    return buf.getvalue()


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusyboxImage]:
    """The session's image; skips (saying why) only where it cannot exist."""
    missing = _missing()
    if missing:
        if os.geteuid() != 0:
            pytest.skip(f"podman is not usable here ({', '.join(missing)} not found) and "
                        f"only root can install it: run scripts/test as root, or apt-get "
                        f"install podman runc busybox-static")
        pytest.fail(f"{', '.join(missing)} not found; scripts/test installs podman, runc "
                    f"and busybox-static when run as root")
    busybox = str(shutil.which("busybox"))
    linked = subprocess.run(["ldd", busybox], capture_output=True, text=True)
    if "not a dynamic executable" not in linked.stdout + linked.stderr:
        pytest.fail(f"{busybox} is linked dynamically, so it cannot run alone in an image: "
                    f"install busybox-static")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    image = BusyboxImage(name=f"localhost/wr-test-busybox:{uuid.uuid4().hex[:12]}",
                      podman=str(shutil.which("podman")), env={"CONTAINERS_CONF": str(conf)})
    imported = subprocess.run([image.podman, "import", "-", image.name],
                              input=_rootfs_tar(busybox), capture_output=True, timeout=300,
                              env={**os.environ, **image.env})
    assert imported.returncode == 0, f"podman import failed: {imported.stderr.decode()}"
    try:
        probe = image.podman_cmd("run", "--rm", image.name, "cat", "/wr-test-image")
        if probe.stdout.strip() != MARKER:
            message = f"podman cannot run the test image: {probe.stderr or probe.stdout}"
            if os.geteuid() != 0:
                pytest.skip(message + " (rootless podman may need /etc/subuid; CI runs "
                                      "as root)")
            pytest.fail(message)
        yield image
    finally:
        image.podman_cmd("rmi", "--force", image.name)
