"""The store's one-statement saves and archives write what row-by-row statements would.

`write_save` and `write_archive` (wr.store_sql) each write many rows with one statement, so
SQLite runs it without taking Python's GIL back after every row (issue 16). The reference
here is the plain one-row-at-a-time SQL they replaced, run on a twin database.
"""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from wr import store_sql as sql


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for ddl in sql._SCHEMA + sql._INDEXES:
        conn.execute(ddl)
    return conn


def _reference_save(conn: sqlite3.Connection, rows: list[tuple[str, bytes]]) -> None:
    conn.executemany("UPDATE live SET data = ? WHERE key = ?", [(d, k) for k, d in rows])


def _reference_archive(conn: sqlite3.Connection, rows: list[tuple], samples: list) -> None:
    keys = [(row[0],) for row in rows]
    conn.executemany("INSERT OR IGNORE INTO rep_grp_keys SELECT rep_grp, key FROM complete "
                     "WHERE key = ? AND rep_grp IS NOT ?", [(row[0], row[1]) for row in rows])
    conn.executemany("INSERT OR REPLACE INTO complete(key, rep_grp, req_grp, started, ended, "
                     "exitcode, peak_ram, cpu_time, data, peak_disk) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("DELETE FROM live WHERE key = ?", keys)
    conn.executemany("DELETE FROM std WHERE key = ?", keys)
    conn.executemany("INSERT OR IGNORE INTO rep_grps VALUES (?)",
                     [(g,) for g in {row[1] for row in rows}])
    conn.executemany("INSERT INTO samples VALUES (?, ?, ?)", samples)


def _dump(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    tables = ("live", "complete", "rep_grp_keys", "rep_grps", "std", "samples")
    return {t: sorted(conn.execute(f"SELECT *, typeof(data) FROM {t}").fetchall()
                      if t in ("live", "complete") else conn.execute(f"SELECT * FROM {t}"),
                      key=repr)
            for t in tables}


keys = st.sampled_from([f"k{i}" for i in range(12)])
records = st.binary(min_size=1, max_size=40)  # a record is never empty: it has a tag
numbers = st.one_of(st.none(), st.floats(-1e9, 1e9), st.integers(-2**62, 2**62))
archive_row = st.tuples(keys, st.sampled_from(["a", "b", "ü c"]), st.sampled_from(["r", ""]),
                        numbers, numbers, st.integers(-255, 255), st.integers(0, 2**40),
                        st.floats(0, 1e6), records, st.integers(0, 2**40))


@settings(max_examples=60, deadline=None)
@given(live=st.lists(st.tuples(keys, records)), std=st.lists(keys),
       steps=st.lists(st.one_of(
           st.tuples(st.just("save"), st.lists(st.tuples(keys, records))),
           st.tuples(st.just("archive"), st.lists(archive_row, unique_by=lambda r: r[0]),
                     st.lists(st.tuples(st.just("r"), st.sampled_from(["ram", "time"]),
                                        st.integers(0, 99))))), max_size=6))
def test_one_statement_writes_match_row_by_row_ones(live, std, steps) -> None:
    ours, reference = _db(), _db()
    for conn in (ours, reference):
        conn.executemany("INSERT OR REPLACE INTO live VALUES (?, ?)", live)
        conn.executemany("INSERT OR REPLACE INTO std VALUES (?, 'o', 'e')", [(k,) for k in std])
    for step in steps:
        if step[0] == "save":
            sql.write_save(ours, step[1])
            _reference_save(reference, step[1])
        else:
            sql.write_archive(ours, step[1], step[2])
            _reference_archive(reference, step[1], step[2])
        assert _dump(ours) == _dump(reference)
