"""The real ``wr limit`` against a real manager: limits are listed, read, set, removed,
and they cap how many jobs of a group run at once."""

from __future__ import annotations

import pytest

from tests.conftest import ManagerHandle, wait_for

pytestmark = pytest.mark.e2e


def test_limit_caps_concurrency(manager: ManagerHandle) -> None:
    """Steps: `wr limit` with none set; `wr limit -g lim:1`; read it back; add three
    `sleep 1` jobs in limit group "lim" (no cpus, so the machine could run all three at
    once); wait for them.
    Expected: an empty list; "1"; "lim: 1" and "1"; an unknown group reads -1; the jobs'
    Started/Ended (REST) never overlap."""
    m = manager
    assert m.wr("limit", check=True).stdout == ""
    assert m.wr("limit", "-g", "lim:1", check=True).stdout == "1\n"
    assert m.wr("limit", check=True).stdout == "lim: 1\n"
    assert m.wr("limit", "-g", "lim", check=True).stdout == "1\n"
    assert m.wr("limit", "-g", "unknown", check=True).stdout == "-1\n"
    with m.client() as client:
        client.add([{"cmd": f"sleep 1 # {i}", "cpus": 0, "limit_grps": ["lim"]}
                    for i in range(3)], rep_grp="limited")
        jobs = wait_for(lambda: (js := client.status("limited")) and all(
            j["State"] == "complete" for j in js) and js, 30, 0.1, "the limited jobs")
    spans = sorted((j["Started"], j["Ended"]) for j in jobs)
    assert len(spans) == 3
    for (_, ended), (started, _) in zip(spans, spans[1:], strict=False):
        assert started >= ended, spans


def test_limit_zero_blocks_and_minus_one_removes(manager: ManagerHandle) -> None:
    """Steps: `wr limit -g blk:0`; add a job in "blk"; then `wr limit -g blk:-1`.
    Expected: the job waits while the limit is 0; removing the limit lets it complete and
    drops "blk" from the list."""
    m = manager
    m.wr("limit", "-g", "other:2", check=True)
    m.wr("limit", "-g", "blk:0", check=True)
    assert m.wr("limit", check=True).stdout == "blk: 0\nother: 2\n"
    with m.client() as client:
        client.add([{"cmd": "true # blk", "cpus": 0, "limit_grps": ["blk"]}], rep_grp="blk")
        wait_for(lambda: client.status("blk")[0]["State"] == "ready", 10, 0.05, "ready")
        assert client.status("blk")[0]["State"] == "ready"
        assert m.wr("limit", "-g", "blk:-1", check=True).stdout == "-1\n"
        wait_for(lambda: client.status("blk")[0]["State"] == "complete", 30, 0.1,
                 "the unblocked job")
    assert m.wr("limit", check=True).stdout == "other: 2\n"


@pytest.mark.parametrize(("args", "message"), [
    (["limit", "lim"], "Error: Did you mean to specify --group?"),
    (["limit", "-g", "lim:many"], "the limit after ':' must be a whole number"),
    (["limit", "-g", "lim:-2"], "the limit must be -1 (no limit) or more"),
    (["limit", "-g", "a,b"], "contain neither ',' nor ':'"),
    (["limit", "-g", ":3"], "contain neither ',' nor ':'"),
])
def test_bad_input_is_one_line_error(make_manager, args: list[str], message: str) -> None:
    """Checked before any manager is asked, so none needs to run."""
    out = make_manager().wr(*args)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr
