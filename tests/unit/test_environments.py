"""wr.environments: what an environment may be, its key, its stored form, and that jobs
sharing one cost nothing more each (issue 15, part 1)."""

from __future__ import annotations

import sys

import pytest

from wr.environments import (
    EnvError,
    base_environment,
    decode,
    encode,
    entries,
    env_key,
)
from wr.submission import jobs_from_request


def test_an_object_and_its_entries_are_the_same_environment() -> None:
    assert entries({"A": "1", "B": "x=y"}) == ["A=1", "B=x=y"]
    assert entries(["A=1", "B=x=y"]) == ["A=1", "B=x=y"]
    key, data = encode(["A=1", "B=x=y"])
    assert key == env_key(["A=1", "B=x=y"]) and len(key) == 32
    assert decode(data) == ["A=1", "B=x=y"]
    assert env_key(["B=x=y", "A=1"]) != key
    assert decode(encode([])[1]) == []


@pytest.mark.parametrize(("value", "why"), [
    ("PATH=/bin", "an environment must be a JSON object"),
    ({"A": None}, "the value of environment variable 'A' must be a string, not null"),
    ([1], "an environment entry must be a NAME=VALUE string, not 1"),
    (["=secret"], "an environment entry has an empty name"),
    (["A"], "environment entry 'A' is not NAME=VALUE"),
    ({"A=B": "secret"}, "environment variable name 'A'=... holds '='"),
    (["A=x\x00y"], "environment variable 'A' holds a NUL character"),
    (["A=1", "A=2"], "environment variable 'A' is given more than once"),
])
def test_a_bad_environment_says_what_is_wrong(value: object, why: str) -> None:
    with pytest.raises(EnvError) as e:
        entries(value)
    assert why in str(e.value) and "secret" not in str(e.value)


def test_a_stored_environment_gets_the_runners_wr_variables_and_its_wr() -> None:
    env = base_environment(["PATH=/mine/bin", "WR_MANAGERPORT=1", "A=1"],
                           {"WR_MANAGERPORT": "99", "HOME": "/runner"}, "/venv/bin")
    assert env == {"PATH": "/mine/bin:/venv/bin", "WR_MANAGERPORT": "99", "A": "1"}
    again = base_environment(["PATH=/venv/bin:/x"], {}, "/venv/bin")
    assert again["PATH"] == "/venv/bin:/x"


def test_jobs_naming_one_environment_share_its_key_and_their_part() -> None:
    """A million jobs from one shell hold one environment: each job's share is nothing
    more than a job without one (the key is one string of the request, in one part)."""
    key = env_key(["A=1"])
    body = b"[" + b",".join(b'{"cmd":"echo %d"}' % i for i in range(1000)) + b"]"
    plain, _ = jobs_from_request(body, {}, now=0.0)
    with_env, _ = jobs_from_request(body, {"env_key": key}, now=0.0)
    assert {id(j.rare) for j in with_env} == {id(with_env[0].rare)}
    assert {id(j.env_key) for j in with_env} == {id(with_env[0].env_key)}
    assert with_env[0].env_key == key and plain[0].env_key == ""

    def size(jobs: list) -> int:
        return sum(sys.getsizeof(j) for j in jobs)

    assert size(with_env) == size(plain)
