"""Tests for wr.keeper's settling of a dead runner's journal: removals the runner had handed
to its sweeper (wr.workdirs.Sweeper) are finished by whoever settles for it (issue 17).

No process here is real: the journal names commands that exited (their exits journalled),
so `settle` needs to reap or kill nothing."""

from __future__ import annotations

import os
from pathlib import Path

from wr.journal import Journal, read_journal
from wr.keeper import settle
from wr.workdirs import make_unique_dir

KEY_A = "ea4266bc0fc7dd493caeb2fff1963e4a"
KEY_B = "0b1e1b3d2f5a4c6e8a9b0c1d2e3f4a5b"


def _journal(tmp_path: Path, base: Path, whole: bool, ended: bool) -> tuple[Path, str]:
    path = tmp_path / "runner.journal"
    journal = Journal(path)
    journal.worker(os.getpid(), "r1")
    unique = make_unique_dir(str(base), "wr", KEY_A)
    (Path(unique) / "cwd" / "out").write_text("result")
    journal.starting(KEY_A, "token")
    journal.spawned(KEY_A, 99999999, 1.0, unique, str(base))
    journal.exited(KEY_A, 0, 0)
    journal.sweeping(KEY_A, whole)
    if ended:
        journal.ended({"key": KEY_A, "report": {"outcome": "archive", "exitcode": 0}})
    journal.close(remove=False)
    return path, unique


def test_a_cleanup_under_way_when_the_runner_died_is_finished(tmp_path: Path) -> None:
    """Steps: a journal whose command ended, was being cleaned up and was reported in the
    journal; settle it. Expected: its end is sent as made, and its unique directory and
    empty parents are gone."""
    base = tmp_path / "base"
    path, unique = _journal(tmp_path, base, whole=True, ended=True)
    ends, _ = settle(read_journal(path), {}, "its runner died", reap_rest=False)
    assert [e["key"] for e in ends] == [KEY_A] and ends[0]["report"]["outcome"] == "archive"
    assert not os.path.exists(unique) and os.listdir(base) == []


def test_a_tmp_removal_under_way_keeps_the_cwd(tmp_path: Path) -> None:
    """Steps: the same, for a job without cleanup (only its tmp/ is removed), whose end
    the runner had not yet journalled. Expected: its end is made from its journalled exit
    code; its tmp/ is gone and its cwd/ with what the command left is kept."""
    base = tmp_path / "base"
    path, unique = _journal(tmp_path, base, whole=False, ended=False)
    (Path(unique) / "tmp" / "scratch").write_text("x")
    ends, _ = settle(read_journal(path), {}, "its runner died", reap_rest=False)
    assert ends[0]["key"] == KEY_A and ends[0]["report"]["exitcode"] == 0
    assert os.listdir(unique) == ["cwd"]
    assert (Path(unique) / "cwd" / "out").read_text() == "result"


def test_nothing_is_removed_for_a_job_not_being_cleaned_up(tmp_path: Path) -> None:
    """A journalled exit without a removal under way (the runner died before its
    behaviours ran) leaves the directory as wr would: only cleanups remove it."""
    base = tmp_path / "base"
    path = tmp_path / "runner.journal"
    journal = Journal(path)
    unique = make_unique_dir(str(base), "wr", KEY_B)
    journal.starting(KEY_B, "token")
    journal.spawned(KEY_B, 99999999, 1.0, unique, str(base))
    journal.exited(KEY_B, 3, 0)
    journal.close(remove=False)
    ends, _ = settle(read_journal(path), {}, "its runner died", reap_rest=False)
    assert ends[0]["report"]["exitcode"] == 3
    assert sorted(os.listdir(unique)) == ["cwd", "tmp"]
