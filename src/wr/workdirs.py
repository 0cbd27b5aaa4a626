"""A job's unique working directory: made before its command runs, removed after.

wr runs a job that does not say its working directory matters in a fresh directory of its own,
``<cwd>/<app>_cwd/<k0>/<k1>/<k2>/<rest of key><digits>/`` with ``cwd/`` (the command's working
directory) and ``tmp/`` (its TMPDIR) inside (spec/rest-and-queue.md §4.11). Directories are
created and removed by several runners at once, so both sides tolerate the other.

Making and removing directories is the one piece of work a default job (``wr add``) needs
that ``xargs`` does not, and on a busy ext4 it is not cheap: an ``rmdir`` waits for the
filesystem's journal, 0.1–2 ms each, and a job's removal is up to seven of them (issue 17,
docs/benchmarks.md). So a runner hands removals to a `Sweeper`, a thread of its own that
does them while the next command runs; the runner reports a job's end only once its
directory is gone, so nobody is told of a completed job whose directory still exists.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import shutil
from collections.abc import Callable


def make_unique_dir(base: str, app_name: str, key: str) -> str:
    """Make `<base>/<app>_cwd/<k0>/<k1>/<k2>/<key[3:]><digits>/` with `cwd/` and `tmp/` in it.

    The unique directory is made first, its parents only if that fails for want of them: a
    concurrent cleanup of another job (which removes empty parents) may remove a parent
    between our making it and making the unique directory in it, so we start again. Once
    the unique directory exists its parents are not empty, and nobody else removes it (a
    cleanup removes only its own directory and that one's empty parents). wr keeps the
    parents from being removed with a `.hold` file made in them meanwhile; retrying gives
    the same guarantee with two fewer changes to the filesystem per job (issue 17).
    """
    if len(key) < 4:
        raise ValueError(f"job key {key!r} is too short for a unique working directory")
    hashed = os.path.join(os.path.abspath(base), f"{app_name}_cwd", key[0], key[1], key[2])
    for _ in range(20):
        unique = os.path.join(hashed, f"{key[3:]}{secrets.randbelow(2**32)}")
        try:
            os.mkdir(unique, 0o700)
        except FileExistsError:
            continue
        except FileNotFoundError:
            # A parent is missing, or was removed while makedirs made the next one down.
            with contextlib.suppress(FileNotFoundError):
                os.makedirs(hashed, exist_ok=True)
            continue
        os.mkdir(os.path.join(unique, "cwd"))
        os.mkdir(os.path.join(unique, "tmp"))
        return unique
    raise FileNotFoundError(f"could not make a unique directory in {hashed}: its parents "
                            f"kept being removed, or every name tried was taken")


def remove_unique_dir(unique: str, base: str) -> None:
    """Delete a unique job directory, then its parents while empty, stopping short of `base`.

    A directory already gone counts as removed (its parents are still pruned)."""
    if not _remove_empty_layout(unique):
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(unique)
    remove_empty_parents(os.path.dirname(os.path.abspath(unique)), base)


def remove_empty_parents(parent: str, base: str) -> None:
    """Remove `parent` and its parents while they are empty, stopping short of `base`."""
    base = os.path.abspath(base)
    while parent != base and os.path.commonpath([parent, base]) == base:
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)


def _remove_empty_layout(unique: str) -> bool:
    """Remove ``unique`` if it holds nothing but an empty ``cwd/`` and ``tmp/`` (or less):
    three ``rmdir`` calls, where ``shutil.rmtree`` makes some thirty system calls to walk
    it safely. False if anything else is there: the caller removes the rest."""
    for name in ("cwd", "tmp"):
        try:
            os.rmdir(os.path.join(unique, name))
        except FileNotFoundError:
            continue
        except OSError:
            return False
    try:
        os.rmdir(unique)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


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


def remove_tmp(path: str) -> None:
    """Remove a job's ``tmp/`` and whatever is in it (errors ignored: nothing reports them)."""
    if not rmdir_if_empty(path):
        shutil.rmtree(path, ignore_errors=True)


SWEEPER_THREADS = 2
"""Threads a runner's Sweeper removes directories with. Each removal waits for the disk
(an ext4 mounted with ``discard`` and no journal, as on these machines, discards a removed
directory's block before ``rmdir`` returns: 0.3–2 ms); two at once take about half as
long each (docs/benchmarks.md)."""


class Sweeper:
    """Removes finished jobs' directories in threads of its own.

    A runner gives each of its jobs' removals here instead of waiting for them before it
    starts the next command, and waits for `settled` before it reports any end: the
    filesystem's work overlaps the next command's, and a job is never reported over while
    its directory is still there. Failures are not reported (they are only ever reported
    for jobs that failed, whose cleanup wr.execute does itself).

    The empty parents of removed directories (``<app>_cwd/<k0>/<k1>/<k2>``) are removed by
    `settled`, once for all the jobs reported together: removed after every job, they were
    made again for the next one, four directories made and removed per job for nothing
    (issue 17).
    """

    def __init__(self, threads: int = SWEEPER_THREADS) -> None:
        self._threads = threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future[tuple[str, str] | None]] = set()
        """Removals given and not yet waited for; each gives the parent to try to remove
        once it is done (and the base to stop at)."""
        self._pruning: asyncio.Lock | None = None
        """One removal of parents at a time: a caller of `settled` must not return while
        another's is half done (its own would stop at a parent already gone)."""

    # Only the event loop's thread calls these methods (so `_pending` needs no lock). A
    # parent is tried only once the removal in it is done: tried any sooner, it would not
    # be empty yet, and would never be tried again.

    def remove(self, unique: str, base: str) -> None:
        """Remove a unique directory now and its empty parents at `settled`."""
        self._submit(_remove_unique, unique, base)

    def remove_tmp(self, path: str) -> None:
        """Remove a job's ``tmp/`` (`remove_tmp`)."""
        self._submit(remove_tmp, path)

    def _submit(self, fn: Callable[..., tuple[str, str] | None], *args: str) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._threads, thread_name_prefix="wr-sweeper")
        self._pending.add(self._pool.submit(fn, *args))

    async def settled(self) -> None:
        """Wait until every removal given so far is done, empty parents included."""
        pending = list(self._pending)
        if not pending:
            return
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in pending))
        self._pending.difference_update(pending)
        parents = dict(r for r in results if r is not None)
        if parents:
            if self._pruning is None:
                self._pruning = asyncio.Lock()
            async with self._pruning:
                assert self._pool is not None
                await asyncio.get_running_loop().run_in_executor(self._pool, _prune, parents)

    def close(self) -> None:
        """Finish the removals given so far, empty parents included, and stop the threads."""
        if self._pool is None:
            return
        parents = dict(r for f in self._pending if (r := f.result()) is not None)
        self._pending.clear()
        _prune(parents)
        self._pool.shutdown(wait=True)
        self._pool = None


def _remove_unique(unique: str, base: str) -> tuple[str, str] | None:
    """Remove a unique directory; its parent to try once it is gone."""
    with contextlib.suppress(OSError):
        if not _remove_empty_layout(unique):
            shutil.rmtree(unique, ignore_errors=True)
    return os.path.dirname(os.path.abspath(unique)), os.path.abspath(base)


def _prune(parents: dict[str, str]) -> None:
    for parent, base in parents.items():
        remove_empty_parents(parent, base)
