"""Files of `wr.store`: connecting to the db, checking it, moving a broken one aside, and
recovering it from a backup.

Kept apart from the store's threads because these run before any thread starts (`Store.open`)
and only touch whole files (`connect` excepted, which every thread uses).
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


def connect(path: Path, *, write: bool) -> sqlite3.Connection:
    """A connection to the db at ``path`` in autocommit mode, usable from any thread. Only
    the write connection may create the file (and sets WAL); readers never create a db that
    has gone missing, and cannot write."""
    if write:
        if not path.exists():
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        target = str(path)
    else:
        target = f"file:{quote(str(path))}?mode=rw"
    conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False, uri=not write)
    try:
        if write:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=OFF")
        if not write:
            conn.execute("PRAGMA query_only=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def recover(db: Path, bk: Path | None) -> list[str]:
    """Make sure a healthy db file is at ``db`` (spec §6.5), from the backup ``bk`` if it
    is missing or corrupt; say what was done. Raises `StorageUnavailable` when the db is
    corrupt and there is no usable backup."""

    def backup_problem() -> str | None:
        if bk is None:
            return "no backup file is configured"
        if not bk.exists():
            return f"backup file {bk} does not exist"
        return check_db(bk, readonly=True)

    if not db.exists():
        move_aside(db, None)
        bk_problem = backup_problem()
        if bk is not None and bk_problem is None:
            restore(bk, db)
            return [f"recreated missing db file {db} from backup file {bk}"]
        messages = [f"created new empty db file {db}"]
        if bk is not None and bk.exists():
            messages.append(f"did not use backup file {bk}: {bk_problem}")
        return messages
    problem = check_db(db, readonly=False)
    if problem is None:
        return []
    bk_problem = backup_problem()
    if bk is not None and bk_problem is None:
        move_aside(db, db.with_name(db.name + ".corrupt"))
        restore(bk, db)
        return [f"recreated corrupt db file {db} from backup file {bk} "
                f"(error with original db file was: {problem})"]
    raise StorageUnavailable(f"db file {db} is corrupt ({problem}) and cannot be "
                             f"recreated from a backup ({bk_problem})")


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
