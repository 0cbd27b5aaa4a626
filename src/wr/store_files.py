"""Files of `wr.store`: checking a db, moving a broken one aside, restoring a backup.

Kept apart from the store's threads because these run before any thread starts (`Store.open`)
and only touch whole files.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

from wr.errors import StorageUnavailable

BUSY_TIMEOUT_S = 60.0
"""How long a connection waits for a lock held by another connection before giving up."""


def check_db(path: Path, *, readonly: bool) -> str | None:
    """None if ``path`` is a healthy db, else what is wrong with it. For the db itself (not
    ``readonly``) a failure to open (locked, no permission) is raised, not reported: replacing
    the file would not help. A backup (``readonly``) that cannot be read is just unusable."""
    target = f"file:{quote(str(path))}?mode=ro" if readonly else str(path)
    try:
        conn = sqlite3.connect(target, uri=readonly, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        if readonly:
            return str(exc)
        raise StorageUnavailable(f"could not open db file {path}: {exc}") from exc
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError as exc:
        if readonly:
            return str(exc)
        raise StorageUnavailable(f"could not open db file {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()
    if rows == [("ok",)]:
        return None
    lines = [line for row in rows for line in str(row[0]).splitlines() if line.strip()]
    return "; ".join(lines[:3]) + ("; ..." if len(lines) > 3 else "")


def move_aside(db: Path, dest: Path | None) -> None:
    """Move ``db`` and its WAL files to ``dest`` (or delete stray WAL files when None), so
    a restored db is never mixed with another db's WAL."""
    for suffix in ("", "-wal", "-shm"):
        src = db.with_name(db.name + suffix)
        if not src.exists():
            continue
        if dest is None:
            src.unlink()
        else:
            os.replace(src, dest.with_name(dest.name + suffix))


def restore(backup: Path, db: Path) -> None:
    """Copy ``backup`` to ``db`` (mode 0600) through a temporary file, durably."""
    tmp = db.with_name(db.name + ".tmp")
    shutil.copyfile(backup, tmp)
    os.chmod(tmp, 0o600)
    fsync(tmp)
    os.replace(tmp, db)
    fsync(db.parent)


def fsync(path: Path) -> None:
    """Flush a file's (or a directory's) contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
