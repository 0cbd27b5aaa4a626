"""The files a manager owns, wherever they are configured, and where uploads may not write.

``PUT /rest/v1/upload/?path=`` writes where the manager's user may, as in wr: a token
holder can already run any command as that user. What it must not do is replace the
manager's own state by accident or through a crafted path, locking everyone out
(the token, the TLS key) or corrupting the queue (the db and its backup). Issue 6 guarded
the manager's directory; issue 13 (item 9) found that a db backup configured elsewhere
(``managerdbbkfile: /data/wr_backup``) could still be overwritten. So the guard covers
every file the manager owns, by real path (``..`` and symlinks resolved) and, for files
that exist, by identity (a hard link is the same file under another name):

* the manager's directory and everything in it, except its uploads folder;
* wherever they are configured: the db with its WAL, shared-memory, journal and
  temporary/aside copies, the db backup and its temporary copy, the token, the CA,
  certificate and key, the log, the pid file and ``manager.info``.

Uploads to ``/proc``, ``/sys`` and ``/dev`` (``/proc/self/mem`` answered 500), or onto
anything that exists and is not a regular file (a FIFO would block the upload, a socket or
device is not a file to replace), are refused too: each is a client error, not a server one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wr.config import Config, info_path

SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
"""Kernel and device file systems: nothing there is a file an upload may create."""

_DB_COMPANIONS = ("", "-wal", "-shm", "-journal", ".tmp", ".corrupt", ".corrupt-wal",
                  ".corrupt-shm")
"""Names SQLite and the store give files beside the db (``db`` + each)."""


def owned_files(config: Config) -> dict[Path, str]:
    """Every file the manager owns, by real path, with what it is (for messages)."""
    named: list[tuple[Path, str]] = [
        (config.token_file, "token file"), (config.ca_file, "CA certificate"),
        (config.cert_file, "certificate"), (config.key_file, "TLS key"),
        (config.log_file, "log"), (config.pid_file, "pid file"),
        (info_path(config), "manager.info"),
    ]
    named += [(_beside(config.db_file, suffix), "database") for suffix in _DB_COMPANIONS]
    named += [(_beside(config.db_bk_file, suffix), "database backup")
              for suffix in ("", ".tmp", "-journal")]
    return {Path(os.path.realpath(path)): what for path, what in named}


def upload_refusal(path: Path, config: Config) -> str | None:
    """Why an upload may not write ``path`` (to follow the path in a message), or None."""
    real = Path(os.path.realpath(path))
    for root in SYSTEM_ROOTS:
        if _within(real, Path(os.path.realpath(root))):
            return (f"is under {root}: uploads may only create regular files, not write "
                    f"to kernel or device files")
    home = Path(os.path.realpath(config.manager_dir))
    uploads = Path(os.path.realpath(config.upload_dir))
    if _within(real, home) and not (_within(real, uploads) and real != uploads):
        return "is in the manager's directory"
    owned = owned_files(config)
    what = owned.get(real)
    if what is None:
        what = _same_file_as(real, owned)
    if what is not None:
        return f"is the manager's {what} ({real})"
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return None
    except OSError:
        return None  # writing will say what is wrong
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        return f"is {kind}: uploads may only create or replace regular files"
    return None


def _same_file_as(real: Path, owned: dict[Path, str]) -> str | None:
    """What owned file ``real`` is another name (hard link) of, if any."""
    try:
        target = os.stat(real)
    except OSError:
        return None
    for path, what in owned.items():
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return what
    return None


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
