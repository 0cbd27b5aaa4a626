"""wr.runner.Runner against a scripted manager: batches of short jobs, deferred start
reports, kills and stops of jobs it holds but has not started. Commands are real (bash)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from wr import runner as runner_mod
from wr.runner import MAX_BATCH, Runner


class ScriptedLink:
    """Hands out ``jobs`` as a manager would (``many`` at a time) and records requests."""

    def __init__(self, jobs: list[dict[str, Any]]) -> None:
        self.jobs = list(jobs)
        self.sent: list[dict[str, Any]] = []
        self.generation = 1
        self.on_push: Any = None
        self.on_request: Any = lambda msg: None

    async def request(self, msg: dict[str, Any], *, patience: float = 0.0) -> dict[str, Any]:
        self.sent.append(msg)
        self.on_request(msg)
        await asyncio.sleep(0)
        if msg["op"] not in ("reserve", "end"):
            return {}
        if msg.get("timeout" if msg["op"] == "reserve" else "reserve") is None:
            return {"job": None}
        n = msg.get("many", 1)
        given, self.jobs = self.jobs[:n], self.jobs[n:]
        reply: dict[str, Any] = {"job": given[0] if given else None}
        if len(given) > 1:
            reply["more"] = given[1:]
        return reply


def job(n: int, cmd: str, cwd: Path) -> dict[str, Any]:
    return {"key": f"{n:032x}", "cmd": cmd, "cwd": str(cwd), "cwd_matters": True,
            "change_home": False, "env_override": [], "expected_ram_mb": 100,
            "expected_time_s": 60.0, "retries_left": 0, "no_retry_over_walltime_s": 0.0,
            "modules": [], "behaviours": [], "shell": "bash"}


def run(link: ScriptedLink) -> tuple[Runner, str]:
    async def go() -> tuple[Runner, str]:
        r = Runner(link, idle=0.1, touch=60)  # type: ignore[arg-type]
        return r, await r.run()

    return asyncio.run(go())


def ends(link: ScriptedLink) -> list[dict[str, Any]]:
    """Every end report sent, in order."""
    out = []
    for msg in link.sent:
        if msg["op"] == "end":
            out.extend(msg.get("ends", [msg]))
    return out


def test_short_jobs_are_reserved_in_growing_batches_and_reported_together(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 jobs that end at once: each is run once and reported once, with its start; the
    runner asks for more jobs at a time as they keep ending quickly, up to MAX_BATCH, and
    sends far fewer messages than jobs."""
    monkeypatch.setattr(runner_mod, "START_REPORT_DELAY", 5.0)  # however slow the machine
    record = tmp_path / "record"
    link = ScriptedLink([job(i, f"echo {i} >> {record}", tmp_path) for i in range(40)])
    r, why = run(link)
    assert why == "there are no more commands in its scheduler group"
    assert r.ran == 40
    reports = ends(link)
    assert [e["key"] for e in reports] == [f"{i:032x}" for i in range(40)]
    assert all(e["report"]["outcome"] == "archive" and e["start"]["pid"] > 0
               for e in reports)
    assert all(e["start"]["at"] <= e["report"]["ended"] for e in reports)
    assert not any(msg["op"] == "started" for msg in link.sent)
    asked = [msg.get("many", 1) for msg in link.sent
             if msg["op"] == "reserve" or msg.get("reserve") is not None]
    assert asked[:3] == [1, 2, 8] and asked[3:] == [MAX_BATCH] * (len(asked) - 3)
    assert len(link.sent) < 15
    assert sorted(int(x) for x in record.read_text().split()) == list(range(40))


def test_a_longer_job_reports_its_start_and_the_ends_before_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short jobs 0-4, then 5 that runs past START_REPORT_DELAY, then 6; 3, 4, 5 and 6
    come in one batch. While 5 runs, the ends of 3 and 4 are sent, then 5's start; 5's end
    carries no start, and the runner's batches start again from one."""
    monkeypatch.setattr(runner_mod, "START_REPORT_DELAY", 0.5)  # however slow the machine
    link = ScriptedLink([job(i, "true", tmp_path) for i in range(5)])
    link.jobs.append(job(5, "sleep 1.5", tmp_path))
    link.jobs.append(job(6, "true", tmp_path))
    run(link)
    kinds = [(m["op"], m.get("key")) for m in link.sent]
    started = kinds.index(("started", f"{5:032x}"))
    flushed = link.sent[started - 1]
    assert [e["key"] for e in flushed["ends"]] == [f"{3:032x}", f"{4:032x}"]
    assert flushed["reserve"] is None
    last = [m for m in link.sent if m["op"] == "end"][-1]
    assert [e["key"] for e in last["ends"]] == [f"{5:032x}", f"{6:032x}"]
    assert "start" not in last["ends"][0] and "start" in last["ends"][1]
    assert last["many"] == 2


def test_a_held_job_killed_before_it_starts_never_runs(tmp_path: Path) -> None:
    """A batch of two: while the first runs, the manager asks to kill the second. It is
    reported buried as killed, without a start, and its command never runs."""
    ran = tmp_path / "ran"
    second = job(1, f"touch {ran}", tmp_path)
    link = ScriptedLink([job(9, "true", tmp_path), job(0, "sleep 0.2", tmp_path), second])

    def kill_second(msg: dict[str, Any]) -> None:
        if msg["op"] == "end" and msg.get("key") == f"{9:032x}":
            asyncio.get_running_loop().call_later(
                0.02, lambda: link.on_push({"op": "kill", "key": second["key"]}))

    link.on_request = kill_second
    run(link)
    end = next(e for e in ends(link) if e["key"] == second["key"])
    assert end["report"] == {"outcome": "bury", "exitcode": 0,
                             "fail_reason": "killed by user request"}
    assert "start" not in end
    assert not ran.exists()


@pytest.mark.parametrize("how", ["stop", "reconnect"])
def test_held_jobs_are_given_back_after_a_stop_or_a_reconnection(tmp_path: Path,
                                                                 how: str) -> None:
    """A batch of two; while the first runs, the manager says stop (or the connection is
    made again). The second never runs and is released; after a stop no more jobs are
    asked for."""
    ran = tmp_path / "ran"
    link = ScriptedLink([job(9, "true", tmp_path), job(0, "sleep 0.2", tmp_path),
                         job(1, f"touch {ran}", tmp_path)])

    def interrupt() -> None:
        if how == "stop":
            link.on_push({"op": "stop"})
        else:
            link.generation += 1

    def on_request(msg: dict[str, Any]) -> None:
        if msg["op"] == "end" and msg.get("key") == f"{9:032x}":
            asyncio.get_running_loop().call_later(0.02, interrupt)

    link.on_request = on_request
    r, why = run(link)
    assert not ran.exists()
    assert [m["key"] for m in link.sent if m["op"] == "release"] == [f"{1:032x}"]
    assert r.ran == 2
    first = next(e for e in ends(link) if e["key"] == f"{0:032x}")
    if how == "stop":
        assert why == "it was told to stop"
        assert first["report"]["outcome"] == "interrupted"
        assert link.sent[-1]["op"] == "end" and link.sent[-1]["reserve"] is None
    else:
        assert first["report"]["outcome"] == "archive"


def test_the_start_report_delay_is_short() -> None:
    """Jobs longer than this pay for one more message; it must stay far below a
    keep-alive interval."""
    assert runner_mod.START_REPORT_DELAY <= 0.1


def test_a_stored_environment_is_asked_for_once_and_one_not_held_buries(
        tmp_path: Path) -> None:
    """Jobs naming a stored environment (issue 15): the runner asks for it the first time,
    runs every job of it with it (the job's overrides on top, its own WR_* variables kept),
    and buries a job whose environment the manager does not hold, without running it."""
    out = tmp_path / "out"
    stored = ["PATH=/usr/bin:/bin", "FROM_STORE=yes", "B=base"]
    jobs = [job(i, f'echo "$FROM_STORE $B" >> {out}', tmp_path) for i in range(3)]
    for j in jobs:
        j["env_key"] = "a" * 32
    jobs[2]["env_override"] = ["B=override"]
    gone = job(3, f"touch {tmp_path}/never", tmp_path)
    gone["env_key"] = "b" * 32
    link = ScriptedLink([*jobs, gone])
    asked: list[str] = []
    original = link.request

    async def request(msg: dict[str, Any], *, patience: float = 0.0) -> dict[str, Any]:
        if msg["op"] == "env":
            asked.append(msg["key"])
            return {"env": stored if msg["key"] == "a" * 32 else None}
        return await original(msg, patience=patience)

    link.request = request  # type: ignore[method-assign]
    run(link)
    assert asked == ["a" * 32, "b" * 32]
    assert out.read_text() == "yes base\nyes base\nyes override\n"
    [buried] = [e for e in ends(link) if e["key"] == f"{3:032x}"]
    assert buried["report"]["outcome"] == "bury"
    assert buried["report"]["fail_reason"] == "failed to get environment variables"
    assert not (tmp_path / "never").exists()
