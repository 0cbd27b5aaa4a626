"""Queries over the history (the ``complete`` table) that sum it up, for `wr.store.Store`.

Each runs in a reader thread, inside the read transaction `Store` opens for it. They serve
the manager's summaries (`read_complete_figures`) and the web page (the rest), which must
stay fast with millions of completed jobs: each reads an index, or at most a bounded sample
of records, never every record of a rep group.

The web page's reads count a completed job under the rep group it completed in
(``complete.rep_grp``), as the live job counts do, and leave out jobs queued again (reruns),
which the live counts already include.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from wr import store_sql as sql
from wr.jobs import Job

FIGURES = ("ram", "disk", "wall", "cpu")
"""The figures `read_complete_figures` gives a mean and spread of."""


def read_complete_figures(conn: sqlite3.Connection, rep_grp: str, exclude: list[str],
                          usage: bool) -> dict[str, Any]:
    """The query behind `Store.complete_figures`.

    Wall time is end minus start, never below 0 (as status objects report it: a job's end
    comes from its runner, its start from the manager's clock). The rows are materialised
    once and scanned twice (means, then squared deviations), which keeps the standard
    deviation exact where sum-of-squares would cancel badly. Rows of jobs that completed in
    the rep group come from an index alone (``complete_figures``).
    """
    params: list[Any] = [rep_grp, rep_grp, rep_grp]
    columns = "c.key, c.started, c.ended, c.peak_ram, c.peak_disk, c.cpu_time"
    source = f"FROM ({sql.complete_in_rep_grp(columns)})"
    if exclude:
        source += " WHERE key NOT IN (SELECT value FROM json_each(?))"
        params.append(orjson.dumps(exclude).decode())
    if not usage:
        return {"n": conn.execute(f"SELECT count(*) {source}", params).fetchone()[0]}
    deviations = ", ".join(f"total((h.{f} - m.{f}) * (h.{f} - m.{f}))" for f in FIGURES)
    row = conn.execute(f"""
        WITH h AS MATERIALIZED (
            SELECT coalesce(peak_ram, 0) AS ram, coalesce(peak_disk, 0) AS disk,
                   max(coalesce(ended - started, 0), 0) AS wall,
                   coalesce(cpu_time, 0) AS cpu, started AS s, ended AS e
            {source}),
        m AS (SELECT count(*) AS n, avg(ram) AS ram, avg(disk) AS disk, avg(wall) AS wall,
                     avg(cpu) AS cpu, min(s) AS s, max(e) AS e FROM h)
        SELECT m.n, m.ram, m.disk, m.wall, m.cpu, m.s, m.e, {deviations}
        FROM m LEFT JOIN h""", params).fetchone()
    out: dict[str, Any] = {"n": row[0] or 0, "first": row[5], "last": row[6]}
    for i, name in enumerate(FIGURES):
        out[f"{name}_mean"] = float(row[1 + i] or 0.0)
        out[f"{name}_m2"] = float(row[7 + i] or 0.0)
    return out


# -- the web page's reads -------------------------------------------------------------------

_NOT_REQUEUED = "NOT EXISTS (SELECT 1 FROM live l WHERE l.key = c.key)"


def read_complete_counts(conn: sqlite3.Connection,
                         rep_grps: list[str] | None) -> dict[str, int]:
    if rep_grps is None:
        sql_all = ("SELECT c.rep_grp, count(*) FROM complete c WHERE "
                   f"{_NOT_REQUEUED} GROUP BY c.rep_grp")
        return dict(conn.execute(sql_all))
    out: dict[str, int] = {}
    names = list(dict.fromkeys(rep_grps))
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        marks = ",".join("?" * len(chunk))
        query = (f"SELECT c.rep_grp, count(*) FROM complete c WHERE c.rep_grp IN ({marks}) "
                 f"AND {_NOT_REQUEUED} GROUP BY c.rep_grp")
        out.update(conn.execute(query, chunk))
    return out


def read_complete_page(conn: sqlite3.Connection, rep_grp: str, limit: int,
                       offset: int) -> list[Job]:
    # started, ended, rowid is the order of the complete_rep_grp index: no sort needed.
    query = (f"SELECT c.data FROM complete c WHERE c.rep_grp = ? AND {_NOT_REQUEUED} "
             "ORDER BY c.started DESC, c.ended DESC, c.rowid DESC LIMIT ? OFFSET ?")
    return [Job.from_record(orjson.loads(data))
            for (data,) in conn.execute(query, (rep_grp, max(limit, 0), max(offset, 0)))]


def read_usage_sample(conn: sqlite3.Connection, rep_grp: str, size: int) -> dict[str, Any]:
    rowids = [r for (r,) in conn.execute(
        "SELECT rowid FROM complete WHERE rep_grp = ? ORDER BY started, ended", (rep_grp,))]
    count = len(rowids)
    if size > 0 and count > size:
        step = count / size
        rowids = [rowids[int(i * step)] for i in range(size)]
    points = []
    for i in range(0, len(rowids), 500):
        chunk = rowids[i:i + 500]
        query = ("SELECT peak_ram, started, ended, cpu_time, data FROM complete "
                 f"WHERE rowid IN ({','.join('?' * len(chunk))})")
        for peak, started, ended, cpu, data in conn.execute(query, chunk):
            job = Job.from_record(orjson.loads(data))
            wall = (ended - started) if started is not None and ended is not None else 0.0
            points.append([peak or 0, job.ram, max(wall, 0.0), job.time, cpu or 0.0])
    return {"count": count, "points": points}


def read_throughput(conn: sqlite3.Connection, since: float, bucket: float,
                    rep_grp: str | None) -> list[tuple[float, int]]:
    # Both forms read only the complete_rep_grp index, which holds ``ended``.
    where = "ended >= ?" + (" AND rep_grp = ?" if rep_grp is not None else "")
    params: list[Any] = [bucket, since] + ([rep_grp] if rep_grp is not None else [])
    query = (f"SELECT CAST(ended / ? AS INTEGER) AS b, count(*) FROM complete WHERE {where} "
             "GROUP BY b ORDER BY b")
    return [(b * bucket, n) for b, n in conn.execute(query, params)]


def read_recent_rep_grps(conn: sqlite3.Connection, since: float,
                         limit: int) -> list[tuple[str, float]]:
    query = ("SELECT rep_grp, max(ended) AS e FROM complete GROUP BY rep_grp HAVING e >= ? "
             "ORDER BY e DESC LIMIT ?")
    return [(name, ended) for name, ended in conn.execute(query, (since, limit))]
