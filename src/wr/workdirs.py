"""A job's unique working directory: made before its command runs, removed after.

wr runs a job that does not say its working directory matters in a fresh directory of its own,
``<cwd>/<app>_cwd/<k0>/<k1>/<k2>/<rest of key><digits>/`` with ``cwd/`` (the command's working
directory) and ``tmp/`` (its TMPDIR) inside (spec/rest-and-queue.md §4.11). Directories are
created and removed by several runners at once, so both sides tolerate the other.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil


def make_unique_dir(base: str, app_name: str, key: str) -> str:
    """Make `<base>/<app>_cwd/<k0>/<k1>/<k2>/<key[3:]><digits>/` with `cwd/` and `tmp/` in it.

    A `.hold` file keeps the hashed directory non-empty while we work, so a concurrent cleanup
    of another job (which removes empty parents) cannot delete it under us; if one did anyway,
    we start again.
    """
    if len(key) < 4:
        raise ValueError(f"job key {key!r} is too short for a unique working directory")
    hashed = os.path.join(os.path.abspath(base), f"{app_name}_cwd", key[0], key[1], key[2])
    hold = os.path.join(hashed, ".hold")
    for attempt in range(10):
        try:
            os.makedirs(hashed, exist_ok=True)
            with open(hold, "a"):
                pass
            try:
                while True:
                    unique = os.path.join(hashed, f"{key[3:]}{secrets.randbelow(2**32)}")
                    try:
                        os.mkdir(unique, 0o700)
                        break
                    except FileExistsError:
                        continue
                os.mkdir(os.path.join(unique, "cwd"))
                os.mkdir(os.path.join(unique, "tmp"))
                return unique
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(hold)
        except FileNotFoundError:
            if attempt == 9:
                raise
    raise AssertionError("unreachable")


def remove_unique_dir(unique: str, base: str) -> None:
    """Delete a unique job directory, then its parents while empty, stopping short of `base`."""
    shutil.rmtree(unique)
    base = os.path.abspath(base)
    parent = os.path.dirname(os.path.abspath(unique))
    while parent != base and os.path.commonpath([parent, base]) == base:
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)


def tree_bytes(top: str) -> int:
    """Bytes in the files under `top` (symlinks not followed; vanishing files ignored)."""
    total, stack = 0, [top]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def all_empty(*dirs: str) -> bool:
    """True if every dir is empty or gone: the common case, checked without a thread."""
    for path in dirs:
        try:
            with os.scandir(path) as entries:
                if next(entries, None) is not None:
                    return False
        except OSError:
            continue
    return True


def rmdir_if_empty(path: str) -> bool:
    """Remove an empty directory; False if it has contents (left for shutil.rmtree)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
