"""A hypothesis fuzz of what a ``POST /rest/v1/jobs/`` can carry: body bytes and URL query.

The property (issue 6, DESIGN.md principle 6): `jobs_from_request` either raises `BadRequest`
(which the REST layer answers with a 400) or returns one job for every element of the body's
array, each one storable and queueable; never another exception, never a part of the batch.
Bodies come in three kinds: job arrays built from wr's field names with good and bad values
mixed, those same bodies with bytes flipped, dropped or inserted, and raw bytes. The REST
variant, against a real manager, is tests/integration/test_fuzz_rest.py.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wr.cycles import DependencyCycle
from wr.errors import BadRequest
from wr.jobs import Job, compute_key
from wr.queue import Queue
from wr.submission import jobs_from_request

FIELDS = [
    "cmd", "cwd", "cwd_matters", "change_home", "rep_grp", "req_grp", "memory", "time",
    "cpus", "disk", "override", "priority", "retries", "no_retry_over_walltime",
    "limit_grps", "dep_grps", "deps", "cmd_deps", "env", "on_failure", "on_success",
    "on_exit", "mounts", "cloud_os", "cloud_ram", "cloud_script", "reserve_timeout", "CMD",
    "Priority",
]
QUERY_KEYS = [
    "rep_grp", "cwd", "req_grp", "limit_grps", "dep_grps", "deps", "env", "cpus", "disk",
    "override", "priority", "retries", "memory", "time", "no_retry_over_walltime",
    "cwd_matters", "change_home", "on_failure", "on_success", "on_exit", "mounts", "rerun",
    "cloud_ram", "cloud_shared",
]

weird_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=16)
numbers = (st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([0, 1, -1, 255, 256, 2**63 - 1, 2**63, 1e308, 0.5]))
good_values = st.sampled_from([
    "echo hi", "5M", "3G", "1h30m", "30s", "/tmp", "A=1", "grp", "grp:3", 2, 0.5, True,
    ["a", "b"], [{"run": "echo x"}], [{"Mount": "/m", "Targets": [{"Path": "b/d"}]}],
    [{"DepGroup": "g"}], [{"Essence": {"Cmd": "echo x"}}],
])
scalars = st.none() | st.booleans() | numbers | weird_text | good_values
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3)
                      | st.dictionaries(weird_text | st.sampled_from(FIELDS), kids,
                                        max_size=3),
                      max_leaves=10)
safe_text = st.text(st.sampled_from("abcxyz019_-. /"), min_size=1, max_size=12)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "cwd": st.sampled_from(["/tmp", "/", "/var/tmp"]),
    "cwd_matters": st.booleans(), "change_home": st.booleans(),
    "rep_grp": safe_text, "req_grp": safe_text,
    "memory": st.sampled_from(["5M", "3G", "100MB", "1GiB", "500K"]),
    "time": st.sampled_from(["1h", "30m", "1h30m", "45s"]),
    "cpus": st.integers(0, 64) | st.floats(0, 64), "disk": st.integers(0, 1000),
    "override": st.integers(0, 2), "priority": st.integers(0, 255),
    "retries": st.integers(0, 255), "limit_grps": st.lists(st.sampled_from(["a", "b:3"])),
    "dep_grps": st.lists(safe_text, max_size=2), "deps": st.lists(safe_text, max_size=2),
    "env": st.lists(st.sampled_from(["A=1", "B=x y", "C="]), max_size=2),
    "on_failure": st.just([{"run": "echo failed"}]), "on_success": st.just([{"cleanup": True}]),
    "mounts": st.just([{"Mount": "/m", "Targets": [{"Path": "bucket/dir"}]}]),
    "cmd_deps": st.just([{"DepGroup": "g"}]),
}
valid_jobs = st.fixed_dictionaries(
    {"cmd": safe_text.map(lambda t: f"echo {t}")},
    optional=VALID)  # type: ignore[arg-type]


@st.composite
def job_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly good jobs; some with one or two fields (or their names) gone wrong."""
    job = draw(valid_jobs)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        job[draw(st.sampled_from(FIELDS))] = draw(values)
    return job


arrays = st.lists(st.one_of(job_objects(), job_objects(), job_objects(), st.none(), scalars),
                  max_size=6)


def _dump(value: Any) -> bytes:
    """JSON as a client might write it, including what orjson itself would not produce
    (integers past 64 bits, NaN, Infinity)."""
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(_dump(draw(arrays)))
    for _ in range(draw(st.integers(1, 4))):
        if not body:
            break
        at = draw(st.integers(0, len(body) - 1))
        how = draw(st.sampled_from(["flip", "drop", "insert", "cut"]))
        if how == "flip":
            body[at] = draw(st.integers(0, 255))
        elif how == "drop":
            del body[at]
        elif how == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del body[at:]
    return bytes(body)


bodies = st.one_of(
    st.lists(valid_jobs, max_size=6).map(_dump), arrays.map(_dump), arrays.map(_dump),
    mutated(), st.binary(max_size=64),
    st.sampled_from([b"", b"null", b"[]", b"[null]", b"[" * 5000, b"\xef\xbb\xbf[]"]))
GOOD_QUERY = {
    "rep_grp": "q", "cwd": "/tmp", "limit_grps": "a,b:2", "deps": "g", "env": "A=1,B=2",
    "cpus": "2", "disk": "3", "priority": "5", "retries": "1", "memory": "2G", "time": "2h",
    "cwd_matters": "true", "on_failure": '[{"run":"echo x"}]', "rerun": "true",
}
queries = st.dictionaries(
    st.sampled_from(QUERY_KEYS),
    weird_text | st.sampled_from(["5M", "1h", "3", "-1", "true", "[]", "%5B%5D",
                                  '[{"run":"x"}]', "1e400", "nan", "a,,b", "A=1,B"]),
    max_size=3) | st.dictionaries(st.sampled_from(sorted(GOOD_QUERY)), st.just(""),
                                  max_size=5).map(lambda d: {k: GOOD_QUERY[k] for k in d})


def check_request(body: bytes, query: dict[str, str]) -> list[Job] | None:
    """The property; returns the jobs of an accepted request, None for a refused one."""
    try:
        jobs, _rerun = jobs_from_request(body, query, now=1000.0)
    except BadRequest as exc:
        assert exc.status == 400 and exc.message.strip()
        return None
    elements = orjson.loads(body)
    assert len(jobs) == (0 if elements is None else len(elements))  # all, not some
    for job in jobs:
        assert len(job.key) == 32
        stored = job.record_bytes()
        assert Job.from_record(orjson.loads(stored)).record_bytes() == stored  # storable as is
    return jobs


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, query=queries)
def test_a_post_is_refused_with_a_400_or_taken_whole(body: bytes, query: dict[str, str]) -> None:
    jobs = check_request(body, query)
    if not jobs:
        return
    q = Queue(ttr=60)
    queued = q.add(jobs, 1000.0)
    assert len(queued) == len(jobs)
    assert {j.key for j in jobs} == set(q.jobs)  # every job of the batch is queued


BAD_JOBS = [
    {"cmd": "echo bad", "priority": 256}, {"cmd": ""}, {"memory": "1G"},
    {"cmd": "echo bad", "time": "5"}, {"cmd": "echo bad", "cpus": -1},
    {"cmd": "echo bad", "env": ["novalue"]}, {"cmd": "echo a\x00b"},
    {"cmd": "echo bad", "retries": 2**64}, {"cmd": ["echo", "bad"]},
]


@settings(max_examples=300, deadline=None)
@given(good=st.lists(valid_jobs, min_size=1, max_size=6), bad=st.sampled_from(BAD_JOBS),
       at=st.integers(0, 6))
def test_one_bad_job_refuses_the_whole_batch(good: list[dict[str, Any]], bad: dict[str, Any],
                                             at: int) -> None:
    """However good the other jobs are, a batch with one bad job gives no job at all."""
    assert check_request(_dump(good), {})  # the good ones alone are taken...
    objects = [*good]
    objects.insert(min(at, len(objects)), bad)
    assert check_request(_dump(objects), {}) is None  # ... but not beside a bad one


# -- a request's jobs read alike, whatever came before them ---------------------------------

LOOKALIKES = [True, False, 1, 0, 1.0, 2, "1G", "2G", "", None, ["a"], ["a", "b"], ["a", 1],
              [True], [1], [], "a"]
"""Values that are equal in Python but not in JSON (1, 1.0 and true), or differ slightly."""


@settings(max_examples=800, deadline=None)
@given(st.lists(st.dictionaries(
    st.sampled_from(["cwd_matters", "priority", "limit_grps", "deps", "cpus", "memory",
                     "rep_grp", "disk"]),
    st.sampled_from(LOOKALIKES), max_size=3), min_size=1, max_size=6))
def test_each_job_of_a_request_reads_as_it_would_alone(options: list[dict[str, Any]]
                                                       ) -> None:
    """A job that gives what the one before it gave takes that job's reading (its shape);
    the jobs of a request must still come out, or be refused, as each would on its own."""
    objects = [{"cmd": f"echo {i}", **o} for i, o in enumerate(options)]
    alone: list[Job | str] = []
    for obj in objects:
        try:
            alone.append(jobs_from_request(orjson.dumps([obj]), {}, now=1.0)[0][0])
        except BadRequest as exc:
            alone.append(exc.message)
    try:
        together: list[Job | str] = jobs_from_request(orjson.dumps(objects), {}, now=1.0)[0]
    except BadRequest as exc:
        assert exc.message == next(a for a in alone if isinstance(a, str))
        return
    assert not [a for a in alone if isinstance(a, str)]
    assert [j.record_bytes() for j in together] == [j.record_bytes() for j in alone]


# -- issue 13: limits, cycles and cwd -----------------------------------------------------------

LIMIT_NAMES = st.sampled_from(["lim", "a b", "ünï", "", "a,b", "a:b", "x\x00y", "time < 1"]) \
    | weird_text
LIMIT_VALUES = (st.integers(-(2**70), 2**70)
                | st.sampled_from([-2, -1, 0, 1, 2**63 - 1, 2**63, 2**64]))


@st.composite
def limit_entries(draw: st.DrawFn) -> str:
    """``name``, ``name:N``, or anything at all."""
    name = draw(LIMIT_NAMES)
    how = draw(st.sampled_from(["plain", "count", "count", "raw"]))
    if how == "plain":
        return name
    if how == "raw":
        return draw(weird_text)
    return f"{name}:{draw(LIMIT_VALUES)}"


def limit_entry_ok(entry: str) -> bool:
    """The rule, written out again: a name (not empty; no ``,``, ``:`` or NUL), or a name
    and ``:N`` with N an integer from -1 to 2**63-1; or a time window (what is one, and what
    is a malformed one, tests/unit/test_windows.py checks)."""
    from wr.windows import WindowError, parse

    try:
        if parse(entry) is not None:
            return True
    except WindowError:
        return False
    if re.fullmatch(r"[^,:\x00]+", entry):
        return True
    m = re.fullmatch(r"([^,:\x00]+):(-?[0-9]+)", entry)
    return m is not None and -1 <= int(m.group(2)) <= 2**63 - 1


@settings(max_examples=600, deadline=None)
@given(entries=st.lists(limit_entries(), min_size=1, max_size=3), in_query=st.booleans())
def test_a_limit_is_refused_iff_no_store_could_hold_it(entries: list[str],
                                                      in_query: bool) -> None:
    """Every ``limit_grps`` entry a POST accepts sets a limit the queue takes and SQLite
    stores (as the manager's store does, an INTEGER); every other entry is a 400."""
    if in_query:
        body, query = b'[{"cmd":"true"}]', {"limit_grps": ",".join(entries)}
        given_entries = [p for p in ",".join(entries).split(",") if p]
    else:
        body, query = _dump([{"cmd": "true", "limit_grps": entries}]), {}
        given_entries = entries
    ok = all(limit_entry_ok(e) for e in given_entries)
    jobs = check_request(body, query)
    assert (jobs is not None) is ok, (given_entries, jobs)
    if not jobs:
        return
    q = Queue(ttr=60)
    limits: dict[str, int | None] = {}
    q.prepare(jobs[0], limits)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE limits(name TEXT PRIMARY KEY, lim INTEGER NOT NULL)")
    for name, limit in limits.items():
        q.set_limit(name, limit)
        if limit is not None:
            db.execute("INSERT OR REPLACE INTO limits VALUES (?, ?)", (name, limit))
    assert ":" not in "".join(jobs[0].limit_grps)


CWDS = st.sampled_from(["/", "/tmp", "/a b", "rel", "../../etc", "./x", "~/x", " /x", ""]) \
    | weird_text


@settings(max_examples=300, deadline=None)
@given(cwd=CWDS, in_query=st.booleans())
def test_a_cwd_is_taken_iff_it_is_absolute(cwd: str, in_query: bool) -> None:
    body = _dump([{"cmd": "pwd"} if in_query else {"cmd": "pwd", "cwd": cwd}])
    jobs = check_request(body, {"cwd": cwd} if in_query else {})
    assert (jobs is not None) is (cwd == "" or (cwd.startswith("/") and "\x00" not in cwd))
    if jobs:
        assert jobs[0].cwd.startswith("/")


GROUPS = [f"g{i}" for i in range(4)]


@st.composite
def dependency_batches(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Adds of jobs that join and wait for a few dep groups, and name each other (earlier,
    later or in the same add) in cmd_deps: random dependency graphs."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    cmds = [f"echo job{i}" for i in range(sum(sizes))]
    keys = [compute_key(c) for c in cmds]
    batches, at = [], 0
    for size in sizes:
        batch = []
        for cmd in cmds[at:at + size]:
            job: dict[str, Any] = {
                "cmd": cmd,
                "dep_grps": draw(st.lists(st.sampled_from(GROUPS), max_size=2, unique=True)),
                "deps": draw(st.lists(st.sampled_from(GROUPS), max_size=2, unique=True))}
            named = draw(st.lists(st.sampled_from(keys), max_size=2, unique=True))
            if named:
                job["cmd_deps"] = [{"Essence": {"JobKey": k}} for k in named]
            batch.append(job)
        batches.append(batch)
        at += size
    return batches


class DependencyModel:
    """Who waits for whom, worked out independently of wr.dependencies: a job waits for
    every accepted job of the groups it waits for (live: nothing here ever completes) and
    for the jobs its cmd_deps name that were queued when it was added (or added with it)."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.named: dict[str, set[str]] = {}

    def edges(self, key: str, jobs: dict[str, dict[str, Any]]) -> set[str]:
        job = jobs[key]
        out = {k for k, other in jobs.items() if set(other["dep_grps"]) & set(job["deps"])}
        out |= self.named.get(key, set())
        out.discard(key)
        return out

    def with_batch(self, batch: list[dict[str, Any]]
                   ) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
        jobs = dict(self.jobs)
        named = dict(self.named)
        for job in batch:
            jobs.setdefault(compute_key(job["cmd"]), job)
        for job in batch:
            key = compute_key(job["cmd"])
            wanted = {e["Essence"]["JobKey"] for e in job.get("cmd_deps", [])}
            named.setdefault(key, wanted & set(jobs))
        return jobs, named

    def closes_cycle(self, batch: list[dict[str, Any]]) -> bool:
        jobs, named = self.with_batch(batch)
        saved, self.named = self.named, named
        try:
            for start in {compute_key(j["cmd"]) for j in batch} - set(self.jobs):
                seen, todo = set(), list(self.edges(start, jobs))
                while todo:
                    key = todo.pop()
                    if key == start:
                        return True
                    if key not in seen:
                        seen.add(key)
                        todo.extend(self.edges(key, jobs))
            return False
        finally:
            self.named = saved

    def accept(self, batch: list[dict[str, Any]]) -> None:
        self.jobs, self.named = self.with_batch(batch)


@settings(max_examples=500, deadline=None)
@given(batches=dependency_batches())
def test_an_add_is_refused_iff_it_closes_a_dependency_cycle(
        batches: list[list[dict[str, Any]]]) -> None:
    """Adds in turn: each is refused (`DependencyCycle`, a 400) exactly when the model says
    it closes a cycle; each accepted one leaves the queue waiting as the model says, and
    never in a circle."""
    q = Queue(ttr=60)
    model = DependencyModel()
    for batch in batches:
        jobs = check_request(_dump(batch), {})
        assert jobs is not None
        closes = model.closes_cycle(batch)
        try:
            pending = q.check_add(jobs)
        except DependencyCycle as exc:
            assert closes, exc.message
            assert exc.status == 400 and set(exc.keys) <= set(model.with_batch(batch)[0])
            continue
        assert not closes, batch
        q.forget_pending(pending)
        q.add(jobs, 1000.0)
        model.accept(batch)
        for key in model.jobs:
            assert q.unresolved(key) == model.edges(key, model.jobs), key
    removed = q.delete(list(q.jobs), 2000.0)  # everything can go, together
    assert len(removed) == len(model.jobs) and not q.jobs
