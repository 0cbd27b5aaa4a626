"""What a job asks of containers: `with_docker`, `with_singularity`, `container_mounts`,
`monitor_docker`, as the runner receives them, and the container_mounts syntax.

Kept apart from wr.containers (which runs them) so that adding jobs, which checks
container_mounts, loads none of the process machinery (subprocess, shutil): `wr add` starts
faster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUTO = "auto"
"""The `containerruntime` value that picks podman if installed, else docker."""
MOUNTS_FORM = "/outside[:/inside][:ro|rw]"
"""What one item of container_mounts may look like (both paths absolute)."""


# -- container_mounts -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ContainerMount:
    """One bind mount: a host path and where it appears inside the container."""

    outside: str
    inside: str
    read_only: bool = False


def parse_container_mounts(text: str) -> list[ContainerMount]:
    """container_mounts as mounts; ValueError quoting the bad item and the accepted form.

    wr split each item on `:` and silently bound `/a:/b:ro` at `/a` (spec §2.2 [QUIRK]);
    we take an optional third part `ro` or `rw`, and `/a:ro` as `/a` read-only.
    """
    mounts: list[ContainerMount] = []
    if not text:
        return mounts
    for raw in text.split(","):
        item = raw.strip()
        parts = item.split(":")
        mode = ""
        if len(parts) > 1 and parts[-1] in ("ro", "rw"):
            mode = parts.pop()
        if len(parts) == 1:
            parts.append(parts[0])
        if len(parts) != 2 or not all(p.startswith("/") for p in parts):
            raise ValueError(f"container_mounts item '{item}' (in '{text}') is not of the "
                             f"form {MOUNTS_FORM}: give absolute paths, separated by commas")
        mounts.append(ContainerMount(parts[0], parts[1], mode == "ro"))
    return mounts


# -- what a job asks for ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ContainerRequest:
    """A job's container options, as the runner was given them."""

    docker_image: str = ""
    singularity_image: str = ""
    mounts: str = ""
    """container_mounts, unparsed."""
    monitor: str = ""
    """monitor_docker: a container name, a --cidfile path (may hold `?`/`*`), or `?`."""
    runtime: str = AUTO
    """The `containerruntime` setting of the runner."""

    @classmethod
    def from_job(cls, job: Mapping[str, Any], runtime: str = AUTO) -> ContainerRequest | None:
        """The request in a runner's job message, or None for a job with no container.

        With both images set (possible in JSON), docker wins, as in wr.
        """
        docker = job.get("with_docker") or ""
        singularity = "" if docker else job.get("with_singularity") or ""
        monitor = job.get("monitor_docker") or ""
        if not (docker or singularity or monitor):
            return None
        return cls(docker, singularity, job.get("container_mounts") or "", monitor, runtime)
