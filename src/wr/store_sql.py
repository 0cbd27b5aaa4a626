"""The tables of `wr.store` and every query it runs, as plain functions of a connection.

`wr.store` decides which thread and transaction run these; here is only what each operation
does to the tables (listed in `wr.store`'s docstring). Writers run in the writer thread inside
its transaction; readers in a reader thread inside a read transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from wr.errors import StorageUnavailable
from wr.job_fields import J2_TAG, RECORD_TAG, V1_TAG, record_index
from wr.jobs import Job

SCHEMA_VERSION = 2
"""The layout `_SCHEMA` creates; stored in ``meta`` so a newer wr can migrate an older db."""

_CHUNK = 500  # bound parameters per IN (...) query

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS live(key TEXT PRIMARY KEY, data BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS complete(
        key TEXT PRIMARY KEY, rep_grp TEXT, req_grp TEXT, started REAL, ended REAL,
        exitcode INTEGER, peak_ram INTEGER, cpu_time REAL, data BLOB NOT NULL,
        peak_disk INTEGER)""",
    """CREATE TABLE IF NOT EXISTS rep_grp_keys(
        rep_grp TEXT, key TEXT, PRIMARY KEY(rep_grp, key)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS rep_grps(rep_grp TEXT PRIMARY KEY) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS dep_waiters(
        dep_grp TEXT, key TEXT, PRIMARY KEY(dep_grp, key)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS std(key TEXT PRIMARY KEY, stdout TEXT, stderr TEXT)",
    "CREATE TABLE IF NOT EXISTS limits(name TEXT PRIMARY KEY, lim INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS samples(req_grp TEXT, kind TEXT, value INTEGER)",
    "CREATE INDEX IF NOT EXISTS samples_grp ON samples(req_grp, kind, value)",
]
_INDEXES = [
    # A rep group's figures (counts, means, deviations, first start, last end) come from
    # this index alone, not the table: 100,000 jobs of a million summarised in tens of ms.
    """CREATE INDEX IF NOT EXISTS complete_figures
        ON complete(rep_grp, started, ended, peak_ram, peak_disk, cpu_time, key)""",
]
"""Made after any migration, which may add the columns they cover."""


def _peak_disk_of_record(data: str) -> str:
    """SQL for the peak disk in a record ``data`` (TEXT) of either positional layout, or of a
    keyed one."""
    return (f"coalesce(CASE json_extract({data}, '$[0]') "
            f"WHEN '{RECORD_TAG}' THEN json_extract({data}, '$[{record_index('peak_disk')}]') "
            f"WHEN '{J2_TAG}' THEN json_extract({data}, "
            f"'$[{record_index('peak_disk', J2_TAG)}]') "
            f"WHEN '{V1_TAG}' THEN json_extract({data}, "
            f"'$[{record_index('peak_disk', V1_TAG)}]') "
            f"ELSE json_extract({data}, '$.peak_disk') END, 0)")


#: Statements that bring a db at version N-1 up to N.
_MIGRATIONS: dict[int, list[str]] = {
    2: [
        # Peak disk gets a column, so summaries need not parse records.
        "ALTER TABLE complete ADD COLUMN peak_disk INTEGER",
        f"UPDATE complete SET peak_disk = {_peak_disk_of_record('CAST(data AS TEXT)')}",
        "DROP INDEX IF EXISTS complete_rep_grp",  # complete_figures starts with its columns
        # rep_grp_keys keeps only the names a completed job has besides its own.
        """DELETE FROM rep_grp_keys WHERE EXISTS (SELECT 1 FROM complete c
            WHERE c.key = rep_grp_keys.key AND c.rep_grp = rep_grp_keys.rep_grp)""",
    ],
}


@dataclass(slots=True)
class AddResult:
    """What `Store.add_jobs` did, so the caller queues exactly what was stored."""

    stored: list[Job] = field(default_factory=list)
    """Input jobs written to ``live``, in input order (a repeated key only once)."""
    skipped_complete: list[str] = field(default_factory=list)
    """Keys skipped because they are already complete (only when ``rerun`` is false)."""
    resurrected: list[Job] = field(default_factory=list)
    """Completed jobs moved back to ``live`` by live dependencies, as stored (state
    ``complete``): the caller resets their run state, queues them and saves them."""


def init_schema(conn: sqlite3.Connection) -> int:
    """Create what is missing and migrate an older layout, in one transaction; returns the
    schema version the db had."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        version = row[0] if row else SCHEMA_VERSION
        if version > SCHEMA_VERSION:
            raise StorageUnavailable(f"db schema version {version} is newer than this wr's "
                                     f"({SCHEMA_VERSION}); upgrade wr")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS.get(step, []):
                conn.execute(statement)
        for statement in _INDEXES:
            conn.execute(statement)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                     (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


# -- writes (writer thread, inside its transaction) -------------------------------------------

def write_add(conn: sqlite3.Connection,
              parts: Iterable[tuple[Sequence[Job], Collection[str], Sequence[bytes]]],
              rerun: bool) -> AddResult:
    """Store new jobs, skip duplicates, resurrect completed dependants (see Store.add_jobs).
    They come in parts (`wr.store_feed`), each with the keys among it already queued and
    each job's record, so the first parts are written while later ones are still read."""
    result = AddResult()
    rep_rows: list[tuple[str, str]] = []
    dep_rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    names: set[str] = set()
    queued: set[str] = set()
    for jobs, live_keys, records in parts:
        queued.update(live_keys)
        complete: Collection[str] = ()
        if not rerun:
            complete = _complete_among(conn, {j.key for j in jobs if j.key not in live_keys})
        live_rows = []
        for job, record in zip(jobs, records, strict=True):
            key = job.key
            if key in live_keys:
                if rerun:
                    rep_rows.append((job.rep_grp, key))
                continue
            if key in complete:
                result.skipped_complete.append(key)
                continue
            if key in seen:  # a repeat in the body, perhaps under another rep group
                rep_rows.append((job.rep_grp, key))
                continue
            # A new job's own rep group needs no lookup row until it completes:
            # `write_archive` adds it then (this saved a sixth of a big add's time). A rerun
            # may bring back a completed job, whose old record its new rep group must find
            # meanwhile.
            seen.add(key)
            names.add(job.rep_grp)
            if rerun:
                rep_rows.append((job.rep_grp, key))
            result.stored.append(job)
            live_rows.append((key, record))
            if job.deps:
                dep_rows.extend((dep, key) for dep in job.deps)
        # In key order, so each insert lands beside the last in the key index: with 300,000
        # jobs already stored, random order took 0.72 s per 100,000 and sorted 0.40 s.
        live_rows.sort()
        _insert_records(conn, live_rows)
    _insert_rows(conn, "INSERT OR IGNORE INTO rep_grp_keys", rep_rows)
    names.update(rg for rg, _ in rep_rows)
    _insert_rows(conn, "INSERT OR IGNORE INTO rep_grps", [(g,) for g in names])
    _insert_rows(conn, "INSERT OR IGNORE INTO dep_waiters", dep_rows)
    groups = {grp for job in result.stored for grp in job.dep_grps}
    if groups:
        result.resurrected = _resurrect(conn, groups, seen, queued)
    return result


# Each of these writes many rows with ONE statement, which SQLite runs from start to end
# without Python's GIL, so the event loop goes on reading the next part of a big add
# meanwhile. `executemany` takes the GIL back after every row, and while another thread is
# busy each take waits up to the 5 ms switch interval: 100,000 rows took 290 s, not 0.5 s.

def _complete_among(conn: sqlite3.Connection, keys: Collection[str]) -> set[str]:
    if not keys:
        return set()
    sql = "SELECT key FROM complete WHERE key IN (SELECT value FROM json_each(?))"
    return {row[0] for row in conn.execute(sql, (orjson.dumps(list(keys)),))}


def _insert_records(conn: sqlite3.Connection, rows: list[tuple[str, bytes]]) -> None:
    """INSERT OR REPLACE ``(key, record)`` rows into ``live``: the records travel as one
    blob, sliced by a JSON list of ``[key, start, length]``, so each is stored byte for
    byte."""
    if not rows:
        return
    spans = []
    start = 1
    for key, data in rows:
        spans.append((key, start, len(data)))
        start += len(data)
    conn.execute("INSERT OR REPLACE INTO live(key, data) SELECT json_extract(value, '$[0]'), "
                 "substr(?1, json_extract(value, '$[1]'), json_extract(value, '$[2]')) "
                 "FROM json_each(?2)", (b"".join(data for _, data in rows), orjson.dumps(spans)))


def _insert_rows(conn: sqlite3.Connection, insert: str, rows: list[tuple[str, ...]]) -> None:
    """``insert`` (an ``INSERT ... INTO table``) the rows of strings, all the same width."""
    if not rows:
        return
    columns = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(rows[0])))
    conn.execute(f"{insert} SELECT {columns} FROM json_each(?)", (orjson.dumps(rows),))


def _resurrect(conn: sqlite3.Connection, groups: set[str], stored: set[str],
               live_keys: Collection[str]) -> list[Job]:
    """Move completed jobs that depend on ``groups`` back to live, transitively through their
    own dep groups, each once (spec rest-and-queue §4.8); never one just stored or queued."""
    resurrected: list[Job] = []
    done_keys = set(stored)
    done_groups: set[str] = set()
    while groups:
        done_groups |= groups
        found: dict[str, tuple[bytes, set[str]]] = {}
        for chunk in _chunks(sorted(groups)):
            sql = ("SELECT w.key, w.dep_grp, c.data FROM dep_waiters w JOIN complete c "
                   f"ON c.key = w.key WHERE w.dep_grp IN ({_marks(len(chunk))}) "
                   "AND NOT EXISTS (SELECT 1 FROM live l WHERE l.key = w.key) "
                   "ORDER BY c.started, c.ended, c.key")
            for key, grp, data in conn.execute(sql, chunk):
                if key not in done_keys and key not in live_keys:
                    found.setdefault(key, (data, set()))[1].add(grp)
        groups = set()
        moved = []
        for key, (data, via) in found.items():
            job = Job.from_record(orjson.loads(data))
            if via.isdisjoint(job.deps):
                continue  # a stale lookup: the job no longer depends on these groups
            done_keys.add(key)
            resurrected.append(job)
            moved.append((key, data))
            groups.update(g for g in job.dep_grps if g not in done_groups)
        conn.executemany("INSERT OR REPLACE INTO live(key, data) VALUES (?, ?)", moved)
        conn.executemany("DELETE FROM complete WHERE key = ?", [(k,) for k, _ in moved])
    return resurrected


def write_save(conn: sqlite3.Connection, rows: list[tuple[str, bytes]]) -> None:
    """Rewrite live records; a job no longer live (archived, deleted) is not brought back.

    One statement, like the inserts above (issue 16: under runner load the event loop is
    busy, and ``executemany`` made each commit of a few hundred state changes take ~100 ms
    of waiting for the GIL); a key given twice keeps its last record, as one by one."""
    if not rows:
        return
    last = dict(rows)
    data, spans = _spans(last.items())
    conn.execute("UPDATE live SET data = substr(?1, json_extract(j.value, '$[1]'), "
                 "json_extract(j.value, '$[2]')) FROM json_each(?2) AS j "
                 "WHERE live.key = json_extract(j.value, '$[0]')", (data, spans))


def write_archive(conn: sqlite3.Connection, rows: list[tuple[Any, ...]],
                  samples: list[tuple[str, str, int]]) -> None:
    """Move jobs to ``complete``: one statement per table, for the GIL (see write_save).
    ``rows`` are (key, rep_grp, req_grp, started, ended, exitcode, peak_ram, cpu_time,
    record, peak_disk), each key once."""
    _insert_rows(conn, "INSERT INTO samples", samples)
    if not rows:
        return
    keys = orjson.dumps([row[0] for row in rows])
    # A job completing again (a rerun) under another rep group stays findable by the one
    # its earlier completion had: that name becomes a lookup row. Its own needs none.
    conn.execute("INSERT OR IGNORE INTO rep_grp_keys SELECT c.rep_grp, c.key FROM "
                 "json_each(?) AS j JOIN complete AS c ON c.key = json_extract(j.value, '$[0]') "
                 "WHERE c.rep_grp IS NOT json_extract(j.value, '$[1]')",
                 (orjson.dumps([row[:2] for row in rows]),))
    fields, start = [], 1  # each row's own columns, then where its record is in the blob
    for row in rows:
        fields.append((*row[:8], row[9], start, len(row[8])))
        start += len(row[8])
    conn.execute("INSERT OR REPLACE INTO complete(key, rep_grp, req_grp, started, ended, "
                 "exitcode, peak_ram, cpu_time, peak_disk, data) SELECT "
                 + "".join(f"json_extract(value, '$[{i}]'), " for i in range(9))
                 + "substr(?1, json_extract(value, '$[9]'), json_extract(value, '$[10]')) "
                 "FROM json_each(?2)", (b"".join(row[8] for row in rows), orjson.dumps(fields)))
    conn.execute("DELETE FROM live WHERE key IN (SELECT value FROM json_each(?))", (keys,))
    conn.execute("DELETE FROM std WHERE key IN (SELECT value FROM json_each(?))", (keys,))
    _insert_rows(conn, "INSERT OR IGNORE INTO rep_grps", [(g,) for g in {r[1] for r in rows}])


def _spans(rows: Iterable[tuple[str, bytes]]) -> tuple[bytes, bytes]:
    """Records as one blob and a JSON list of ``[key, start, length]`` slicing it (SQLite's
    substr counts from 1), so that each is stored byte for byte."""
    spans, blobs = [], []
    start = 1
    for key, data in rows:
        spans.append((key, start, len(data)))
        blobs.append(data)
        start += len(data)
    return b"".join(blobs), orjson.dumps(spans)


def write_nothing(conn: sqlite3.Connection) -> None:
    """A write that changes nothing: it commits only with every write queued before it."""


def write_std(conn: sqlite3.Connection, key: str, stdout: str, stderr: str) -> None:
    conn.execute("INSERT OR REPLACE INTO std VALUES (?, ?, ?)", (key, stdout, stderr))


def write_delete(conn: sqlite3.Connection, rows: list[tuple[str]]) -> None:
    conn.executemany("DELETE FROM live WHERE key = ?", rows)
    conn.executemany("DELETE FROM std WHERE key = ?", rows)


def write_limit(conn: sqlite3.Connection, name: str, limit: int | None) -> None:
    if limit is None:
        conn.execute("DELETE FROM limits WHERE name = ?", (name,))
    else:
        conn.execute("INSERT OR REPLACE INTO limits VALUES (?, ?)", (name, int(limit)))


def write_counter(conn: sqlite3.Connection, name: str, value: int) -> None:
    """Raise a counter kept in ``meta`` to ``value`` (never lower it)."""
    conn.execute("INSERT INTO meta VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE "
                 "SET value = max(value, ?2)", (name, int(value)))


def read_counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def write_rekey(conn: sqlite3.Connection, old_key: str, key: str, rep_grps: list[str],
                deps: list[str], data: bytes) -> None:
    if old_key != key:
        conn.execute("DELETE FROM live WHERE key = ?", (old_key,))
        conn.execute("DELETE FROM std WHERE key = ?", (key,))
        conn.execute("UPDATE std SET key = ? WHERE key = ?", (key, old_key))
    conn.execute("INSERT OR REPLACE INTO live(key, data) VALUES (?, ?)", (key, data))
    conn.executemany("INSERT OR IGNORE INTO rep_grp_keys VALUES (?, ?)",
                     [(rep_grp, key) for rep_grp in rep_grps])
    conn.executemany("INSERT OR IGNORE INTO rep_grps VALUES (?)", [(g,) for g in rep_grps])
    conn.executemany("INSERT OR IGNORE INTO dep_waiters VALUES (?, ?)",
                     [(dep, key) for dep in deps])


# -- reads (reader threads, inside a read transaction) ----------------------------------------

def _load(data: bytes) -> Job:
    return Job.from_record(orjson.loads(data))


def read_live(conn: sqlite3.Connection) -> list[Job]:
    return [_load(data) for (data,) in conn.execute("SELECT data FROM live")]


def read_complete(conn: sqlite3.Connection, keys: list[str]) -> list[Job]:
    found: dict[str, bytes] = {}
    for chunk in _chunks(list(dict.fromkeys(keys))):
        sql = f"SELECT key, data FROM complete WHERE key IN ({_marks(len(chunk))})"
        found.update(conn.execute(sql, chunk))
    return [_load(found[key]) for key in keys if key in found]


def complete_in_rep_grp(columns: str) -> str:
    """SQL for ``columns`` (of ``c``, the complete table) of the completed jobs ever added
    under a rep group (a parameter, given three times): those that completed in it, from
    the covering index ``complete_figures`` unless ``columns`` asks for more, and those it
    is another name of (reruns, repeats in a POST, wr mod), through ``rep_grp_keys``."""
    return (f"SELECT {columns} FROM complete c WHERE c.rep_grp = ? UNION ALL "
            f"SELECT {columns} FROM rep_grp_keys r JOIN complete c ON c.key = r.key "
            "WHERE r.rep_grp = ? AND c.rep_grp IS NOT ?")


def read_rep_grp(conn: sqlite3.Connection, rep_grp: str,
                 exclude: Collection[str]) -> list[Job]:
    skip = exclude if isinstance(exclude, (set, frozenset, dict)) else set(exclude)
    sql = (f"SELECT key, data FROM ({complete_in_rep_grp('c.key, c.started, c.ended, c.data')})"
           " ORDER BY started, ended, key")
    jobs = []
    for key, data in conn.execute(sql, (rep_grp, rep_grp, rep_grp)):
        if key in skip:
            continue
        job = _load(data)
        job.rep_grp = rep_grp
        jobs.append(job)
    return jobs


def read_rep_grps(conn: sqlite3.Connection, substring: str) -> list[str]:
    sql = "SELECT rep_grp FROM rep_grps WHERE instr(rep_grp, ?) > 0 ORDER BY rep_grp"
    return [row[0] for row in conn.execute(sql, (substring,))]


def read_std(conn: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(list(dict.fromkeys(keys))):
        sql = f"SELECT key, stdout, stderr FROM std WHERE key IN ({_marks(len(chunk))})"
        out.update((key, (o or "", e or "")) for key, o, e in conn.execute(sql, chunk))
    return out


def read_limits(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT name, lim FROM limits ORDER BY name"))


def read_samples(conn: sqlite3.Connection) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    sql = "SELECT req_grp, kind, value FROM samples ORDER BY req_grp, kind, value"
    for req_grp, kind, value in conn.execute(sql):
        out.setdefault((req_grp, kind), []).append(value)
    return out
