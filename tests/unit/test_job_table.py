"""The job table (wr.job_table, issue 14): every field is one entry, and the job record, its
records, the POST reader, the status object, ``wr mod`` and the CLI flags do as it says."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import orjson
import pytest

from wr.cli.actions import mod
from wr.cli.add import add
from wr.cli.job_flags import add_defaults, mod_changes, offered
from wr.job_fields import J2_NAMES, Ran, Rare
from wr.job_query import QUERY_KEYS, JobDefaults, parse_query_defaults
from wr.job_shape import Merged, Request
from wr.job_table import (
    FIELD_NAMES,
    FIELDS,
    HOT_FIELDS,
    KEY_FIELD,
    KEYS,
    RECORD_LAYOUTS,
    RECORD_TAG,
    STATUS_EXTRAS,
    STATUS_ORDER,
    Field,
    Key,
    Kind,
    Part,
    job_keys,
)
from wr.jobs import Job, State
from wr.modification import MODIFIABLE, job_to_object, modified
from wr.status import job_status
from wr.submission import job_from_object

SRC = Path(__file__).resolve().parents[2] / "src" / "wr"
NOW = 1_700_000_000.0
BY_KEY = {k.name: k for k in KEYS}


def example(key: Key, tmp_path: Path) -> Any:
    """A value of ``key`` other than its default (a real file for a cloud script)."""
    if key.kind is Kind.SCRIPT:
        script = tmp_path / "script.sh"
        script.write_text("#!/bin/sh\necho set up\n")
        return str(script)
    assert key.example is not None, f"{key.name} needs an example in the table"
    return key.example


def post(obj: dict[str, Any], query: dict[str, str] | None = None) -> Job:
    defaults, _ = parse_query_defaults(query or {})
    return job_from_object({"cmd": "echo table", **obj}, defaults, now=NOW)


def values(job: Job) -> dict[str, Any]:
    """Every field of a job, lists and tuples alike."""
    out = {}
    for name in FIELD_NAMES:
        value = getattr(job, name)
        out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def status(job: Job) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(job_status(job, now=NOW)))


# -- the table and the job record --------------------------------------------------------

def test_job_takes_every_field_of_the_table_in_record_order() -> None:
    params = list(inspect.signature(Job).parameters.values())
    assert [p.name for p in params] == list(FIELD_NAMES)
    for param in params[2:]:
        assert param.default is KEY_FIELD.get(param.name, _field(param.name)).default or (
            param.default == _field(param.name).default), param.name
    assert Job.__slots__ == (*HOT_FIELDS, "_rare", "_ran")
    assert Rare.__slots__[:-2] == tuple(f.name for f in FIELDS if f.part is Part.RARE)
    assert Ran.__slots__ == tuple(f.name for f in FIELDS if f.part is Part.RAN)


def _field(name: str) -> Field:
    return next(f for f in FIELDS if f.name == name)


@pytest.mark.parametrize("field", FIELDS[2:], ids=lambda f: f.name)
def test_every_field_keeps_a_value_and_stores_it(field: Field) -> None:
    value = _sample(field)
    job = Job("k" * 32, "true", **{field.name: value})
    assert getattr(job, field.name) == value
    back = Job.from_record(orjson.loads(job.record_bytes()))
    assert values(back) == values(job)
    if field.part is not Part.HOT:  # a part is made only for a value other than the default
        assert (job._rare if field.part is Part.RARE else job._ran) is not None
        assert Job("k" * 32, "true", **{field.name: field.default})._rare is None


def _sample(field: Field) -> Any:
    return {"str": "/tmp/sample", "int": 7, "float": 7.5, "bool": True, "float | None": 9.0,
            "State": State.BURIED, "dict[str, str]": {"cloud_os": "x"}}.get(
        field.type, [{"when": "on_exit", "do": "cleanup", "arg": True}]
        if field.name == "behaviours" else [{"Targets": [{"Path": "b"}]}]
        if field.name == "mounts" else ["a", "b"])


def test_record_layouts_are_the_tables() -> None:
    assert RECORD_LAYOUTS[RECORD_TAG] == FIELD_NAMES
    assert tuple(n for n in FIELD_NAMES if n != "bsub_id") == J2_NAMES  # (issue 15)
    assert set(RECORD_LAYOUTS["j1"]) == set(J2_NAMES)


def test_every_status_property_comes_from_one_field_or_is_an_extra() -> None:
    shown = [f.shown.name for f in FIELDS if f.shown is not None]
    assert len(shown) == len(set(shown))
    assert list(status(Job("k" * 32, "true"))) == list(STATUS_ORDER)
    assert set(STATUS_ORDER) == set(shown) | set(STATUS_EXTRAS)


@pytest.mark.parametrize("field", [f for f in FIELDS if f.shown is not None],
                         ids=lambda f: f.name)
def test_a_field_shows_as_the_table_says(field: Field) -> None:
    base = {"key": "k" * 32, "cmd": "true", "cwd": "/tmp"}
    plain = Job(**base)
    changed = Job(**{**base, field.name: _shown_sample(field)})
    before, after = status(plain), status(changed)
    differ = {name for name in STATUS_ORDER if before[name] != after[name]}
    assert field.shown is not None and differ == {field.shown.name}, differ


def _shown_sample(field: Field) -> Any:
    if field.name == "actual_cwd":
        return "/tmp/wr_cwd/a/b"
    if field.name in ("key", "cmd", "cwd"):
        return "/other"
    return _sample(field)


# -- POST -> Job -> status -> wr mod, for every key --------------------------------------

def _depends_on(key: Key) -> set[str]:
    """The fields whose values a key may change: its own, and those taken from it."""
    out = {KEY_FIELD[key.name].name}
    for f in FIELDS:
        if isinstance(f.take, str) and f.take == key.name or (
                callable(f.take) and (f.uses is None or key.name in f.uses)):
            out.add(f.name)
    return out | {"key"} if key.name in ("cmd", "cwd", "cwd_matters", "mounts",
                                         "with_docker", "with_singularity",
                                         "container_mounts") else out


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_a_key_sets_the_fields_the_table_says(key: Key, tmp_path: Path) -> None:
    plain = post({})
    given = post({key.name: example(key, tmp_path)})
    changed = {n for n in FIELD_NAMES if values(given)[n] != values(plain)[n]}
    field = KEY_FIELD[key.name].name
    assert field in changed and changed <= _depends_on(key) | {"req_grp"}, changed
    if key.other:
        assert key.other in given.other
    shown = KEY_FIELD[key.name].shown
    if shown is not None:  # and it shows in the status object
        assert status(given)[shown.name] != status(plain)[shown.name]


@pytest.mark.parametrize("key", [k for k in KEYS if k.query], ids=lambda k: k.name)
def test_a_query_default_sets_what_the_job_objects_key_sets(key: Key, tmp_path: Path
                                                          ) -> None:
    value = example(key, tmp_path)
    from_query = post({}, {key.name: _cli_text(key, value)})
    assert values(from_query) == values(post({key.name: value}))


def test_the_query_defaults_are_the_keys_the_table_says() -> None:
    assert [k.name for k in QUERY_KEYS] == [k.name for k in KEYS if k.query]
    assert set(JobDefaults.__slots__) == {k.name for k in QUERY_KEYS}


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_a_job_gives_its_keys_back(key: Key, tmp_path: Path) -> None:
    """job_to_object (what wr mod builds a job from) makes the same job again; a modified
    job with no changes is the job."""
    job = post({key.name: example(key, tmp_path)})
    again = job_from_object(job_to_object(job), JobDefaults(), now=NOW)
    expect = values(job)
    if key.other and key.back is None:  # other requests are carried over by modified
        expect["other"] = values(again)["other"]
    assert values(again) == expect
    assert values(modified(job, {}, NOW)) == values(job)


@pytest.mark.parametrize("key", [k for k in KEYS if k.mod], ids=lambda k: k.name)
def test_wr_mod_of_a_key_makes_the_job_a_post_of_it_makes(key: Key, tmp_path: Path
                                                         ) -> None:
    value = example(key, tmp_path)
    posted = post({key.name: value}) if key.name != "cmd" else post({"cmd": value})
    made = modified(post({}), {key.name: value}, NOW)
    assert values(made) == values(posted)
    assert status(made) == status(posted)
    assert key.name in MODIFIABLE


def test_wr_mod_keeps_what_the_user_asked_for_not_what_was_learned() -> None:
    job = post({"memory": "2G", "time": "30m"})
    job.ram, job.time = 5000, 7200.0  # as learning from past runs raised them
    assert (job_to_object(job)["memory"], job_to_object(job)["time"]) == ("2048M", "30m0s")
    assert (modified(job, {"priority": 3}, NOW).user_ram,
            modified(job, {"priority": 3}, NOW).ram) == (2048, 2048)


def test_only_keys_the_table_allows_can_be_modified() -> None:
    assert {k.name for k in KEYS if not k.mod} == {"dep_grps", "bsub_mode"}
    assert {k.name for k in KEYS} - {"dep_grps", "bsub_mode"} == MODIFIABLE


def test_modifying_one_other_request_keeps_the_others(tmp_path: Path) -> None:
    job = post({"cloud_os": "ubuntu", "cloud_flavor": "big", "queue": "long",
                "reserve_timeout": 5})
    new = modified(job, {"cloud_os": "centos"}, NOW)
    assert new.other == {"cloud_os": "centos", "cloud_flavor": "big",
                         "scheduler_queue": "long", "rtimeout": "5"}
    assert new.reserve_timeout == 5
    cleared = modified(job, {"queue": "", "reserve_timeout": ""}, NOW)
    assert cleared.other == {"cloud_os": "ubuntu", "cloud_flavor": "big"}
    assert cleared.reserve_timeout == 0


# -- the CLI flags -------------------------------------------------------------------------

def _cli_text(key: Key, value: Any) -> str:
    if key.kind is Kind.STRINGS:
        return ",".join(value)
    if key.kind in (Kind.BEHAVIOURS, Kind.MOUNTS, Kind.CMD_DEPS):
        return orjson.dumps(value).decode()
    if key.kind is Kind.FLAG:
        return "true"
    return str(value)


def _flag_args(key: Key, value: Any) -> list[str]:
    assert key.flag is not None
    flag = key.flag.short or f"--{key.flag.name or key.name}"
    if key.kind is Kind.FLAG:
        return [flag]
    if key.kind is Kind.CMD_DEPS:  # wr's flag form names commands: cmd1,cwd1,...
        return [flag, "echo dep,/tmp"]
    return [flag, _cli_text(key, value)]


def _flag_value(key: Key, value: Any) -> Any:
    """What a job object gives for what `_flag_args` says."""
    if key.kind is Kind.CMD_DEPS:
        return [{"Essence": {"Cmd": "echo dep", "Cwd": "/tmp"}}]
    return value


def test_the_commands_offer_the_flags_the_table_says() -> None:
    for command, verb in ((add, "add"), (mod, "mod")):
        names = {p.name for p in command.params}
        for key in offered(verb):
            assert key.name in names, (verb, key.name)
        for key in KEYS:
            if key.flag is None or key not in offered(verb):
                assert key.name not in names or key.name == "cmd", (verb, key.name)
    assert all(getattr(p, "help", None) for p in (*add.params, *mod.params))


@pytest.mark.parametrize("key", offered("add"), ids=lambda k: k.name)
def test_a_wr_add_flag_sets_what_the_key_sets(key: Key, tmp_path: Path) -> None:
    value = example(key, tmp_path)
    plain_query, plain_extra = _add(add.make_context("add", []).params)
    ctx = add.make_context("add", _flag_args(key, value))
    query, extra = _add(ctx.params)
    from_flag = post(extra, query)
    posted = post({**plain_extra, key.name: _flag_value(key, value)}, plain_query)
    assert values(from_flag) == values(posted)


def _add(params: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    names = {k.name for k in offered("add")} | {"simple_mounts"}
    return add_defaults({k: v for k, v in params.items() if k in names})


@pytest.mark.parametrize("key", offered("mod"), ids=lambda k: k.name)
def test_a_wr_mod_flag_changes_what_the_key_changes(key: Key, tmp_path: Path) -> None:
    value = example(key, tmp_path)
    ctx = mod.make_context("mod", ["-a", *_flag_args(key, value)])
    changes = mod_changes(ctx, ctx.params)
    assert list(changes) == [key.name]
    made = modified(post({}), changes, NOW)
    expect = {key.name: _flag_value(key, value)} if key.name != "cmd" else {"cmd": value}
    assert values(made) == values(post(expect))


# -- what the table promises the rest of the code ------------------------------------------

def test_takes_read_only_the_keys_they_declare(tmp_path: Path) -> None:
    """A field's `uses` lets jobs share its value (wr.job_shape): it must name every key
    its take reads, with and without each key given."""
    request = Request(JobDefaults(), NOW)

    class Seen:
        memory: dict[str, int] = {}
        seconds: dict[str, float] = {}
        scripts: dict[str, str] = {}

    request.start(Seen())
    objects = [{}, {k.name: example(k, tmp_path) for k in KEYS if k.name != "cmd"},
               {"cmd_deps": [{"DepGroup": "g"}], "deps": ["d"]}]
    for obj in objects:
        v = _Recorder({**request.base, **{n: request.readers[n][0](obj, None, Seen())
                                           for n in obj if n in request.readers}},
                      obj, NOW, {})
        for f in FIELDS:
            if callable(f.take) and f.uses is not None:
                v.read.clear()
                f.take(v)
                assert v.read <= set(f.uses), (f.name, v.read)


class _Recorder(Merged):
    __slots__ = ("read",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)


def test_job_keys_list_every_key_with_its_schema_and_help() -> None:
    listed = job_keys()
    assert [name for name, _, _ in listed] == [k.name for k in KEYS]
    for name, schema, in_query in listed:
        assert schema["description"] and in_query == BY_KEY[name].query
        assert ("type" in schema) != ("$ref" in schema or "oneOf" in schema), name


_BEHAVIOUR_LIVES = {
    "no_retry_over_walltime": {"job_table.py", "exec_spec.py", "execute.py", "runner.py",
                               "manager/runner_ws.py"},
    "change_home": {"job_table.py", "exec_spec.py", "execute.py", "runner.py",
                    "manager/runner_ws.py"},
    "disk_set": {"job_table.py"},
    "reserve_timeout": {"job_table.py", "lsf.py"},
    "user_disk": {"job_table.py", "requirements.py"},
}
"""Where the code names a field (docstrings aside; ``no_retry_over_walltime_s`` counts):
the table, and where its behaviour lives (the runner's decision to retry, its message
carrying it, the learning of disk use, ...)."""


@pytest.mark.parametrize("name", sorted(_BEHAVIOUR_LIVES))
def test_a_field_is_named_only_in_the_table_and_where_its_behaviour_lives(name: str
                                                                          ) -> None:
    found = {str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
             if any(n == name or n.startswith(f"{name}_") for n in _code_names(path))}
    assert found == _BEHAVIOUR_LIVES[name]


def _code_names(path: Path) -> set[str]:
    """The attribute names and string constants of a module's code, docstrings aside."""
    tree = ast.parse(path.read_text())
    docs = {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg) or isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docs):
            names.add(node.value)
    return names


def test_the_openapi_document_describes_the_keys_of_the_table() -> None:
    """The document's job object and a POST's query defaults are the table's keys (the
    document may be written from `job_keys`; until then, they must not drift apart)."""
    from wr.manager.openapi import document

    doc = document()
    assert set(doc["components"]["schemas"]["JobInput"]["properties"]) == set(BY_KEY)
    parameters = doc["components"]["parameters"]
    posted = {parameters[p["$ref"].rsplit("/", 1)[1]]["name"] if "$ref" in p else p["name"]
              for p in doc["paths"]["/rest/v1/jobs/"]["post"]["parameters"]}
    assert posted - {"rerun"} == {k.name for k in QUERY_KEYS}
