"""Local-disk work around mounts: measuring a job's disk use and deleting its directory
without ever reaching through a mount into the bucket behind it.

Both walk the tree themselves and stop at a mount point (a directory on another device, or
one named in `skip`), because ``shutil.rmtree`` and a plain walk would happily descend into
a FUSE mount: a cleanup behaviour would then delete remote data, and disk accounting would
download a bucket's listing and count remote bytes as the job's (issue 18).
"""

from __future__ import annotations

import os
from collections.abc import Collection

from wr.workdirs import local_bytes
from wr.workdirs import remove_empty_parents as remove_parents_of_dir

__all__ = ["local_bytes", "remove_local", "remove_empty_parents"]


def remove_local(top: str, keep: Collection[str] = ()) -> list[str]:
    """Delete what is under `top` and `top` itself, except the paths in `keep` and anything
    on another device (a mount point is left, with its parents); returns what it could not
    delete, with the reason."""
    problems: list[str] = []
    try:
        device = os.stat(top, follow_symlinks=False).st_dev
    except FileNotFoundError:
        return problems
    except OSError as exc:
        return [f"{top}: {exc}"]
    _remove(top, device, set(keep), problems)
    return problems


def _remove(path: str, device: int, keep: set[str], problems: list[str]) -> bool:
    """Remove `path` if allowed; True when it is gone."""
    if path in keep:
        return False
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError as exc:
        problems.append(f"{path}: {exc}")
        return False
    if st.st_dev != device:
        return False  # a mount point: never reached through
    if not os.path.isdir(path) or os.path.islink(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"{path}: {exc}")
            return False
        return True
    gone = True
    try:
        with os.scandir(path) as entries:
            children = [e.path for e in entries]
    except OSError as exc:
        problems.append(f"{path}: {exc}")
        return False
    for child in children:
        gone = _remove(child, device, keep, problems) and gone
    if gone:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"{path}: {exc}")
            return False
    return gone


def remove_empty_parents(path: str, base: str) -> None:
    """Remove `path`'s parents while they are empty, stopping short of `base`."""
    remove_parents_of_dir(os.path.dirname(os.path.abspath(path)), base)
