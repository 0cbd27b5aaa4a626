"""Tests for wr.workdirs: unique working directories made and removed by several runners at
once, and the Sweeper that removes them off a runner's critical path (issue 17)."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from pathlib import Path

import pytest

from wr.workdirs import Sweeper, make_unique_dir, remove_unique_dir

KEY = "ea4266bc0fc7dd493caeb2fff1963e4a"


def test_a_unique_dir_has_cwd_and_tmp_and_nothing_else(tmp_path: Path) -> None:
    unique = make_unique_dir(str(tmp_path), "wr", KEY)
    assert Path(unique).parent == tmp_path / "wr_cwd" / "e" / "a" / "4"
    assert Path(unique).name.startswith(KEY[3:])
    assert sorted(os.listdir(unique)) == ["cwd", "tmp"]
    assert os.listdir(Path(unique).parent) == [Path(unique).name]  # no .hold left
    assert os.stat(unique).st_mode & 0o777 == 0o700


def test_removal_takes_what_the_command_left_and_empty_parents_only(tmp_path: Path) -> None:
    kept = make_unique_dir(str(tmp_path), "wr", "ea4" + "0" * 29)
    unique = make_unique_dir(str(tmp_path), "wr", KEY)
    (Path(unique) / "cwd" / "sub").mkdir()
    (Path(unique) / "cwd" / "sub" / "out.txt").write_text("x")
    remove_unique_dir(unique, str(tmp_path))
    assert not os.path.exists(unique)
    assert os.path.isdir(kept)  # a sibling's parent stays
    remove_unique_dir(kept, str(tmp_path))
    assert os.listdir(tmp_path) == []
    remove_unique_dir(kept, str(tmp_path))  # already gone: nothing to do, no error


def test_runners_making_and_removing_in_one_base_never_fail_and_leave_nothing(
        tmp_path: Path) -> None:
    """Steps: four threads (as runners) make and remove unique directories in one base
    with keys from a tiny alphabet, so that they keep removing the parents the others are
    making directories in. Expected: every make succeeds (a parent removed under it is
    made again), and once all are removed the base is empty."""
    errors: list[BaseException] = []

    def runner(seed: int) -> None:
        rnd = random.Random(seed)
        made = []
        try:
            for _ in range(300):
                key = "".join(rnd.choice("01") for _ in range(3)) + KEY[3:]
                made.append(make_unique_dir(str(tmp_path), "wr", key))
                if len(made) > 2:
                    remove_unique_dir(made.pop(0), str(tmp_path))
            for unique in made:
                remove_unique_dir(unique, str(tmp_path))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert os.listdir(tmp_path) == []


def _crowded(tmp_path: Path, key: str, files: int = 300) -> str:
    """A unique dir whose command left many files: its removal takes a while."""
    unique = make_unique_dir(str(tmp_path), "wr", key)
    for i in range(files):
        (Path(unique) / "cwd" / f"f{i}").write_text("x")
    return unique


def test_the_sweeper_removes_in_the_background_and_settles_with_parents(
        tmp_path: Path) -> None:
    """Steps: give the sweeper two unique dirs (one crowded); await settled. Expected:
    both gone, and their empty parents too, by the time settled returns."""
    async def go(base: Path) -> None:
        sweeper = Sweeper()
        one = _crowded(base, KEY)
        two = make_unique_dir(str(base), "wr", "0" * 32)
        sweeper.remove(one, str(base))
        sweeper.remove(two, str(base))
        await sweeper.settled()
        assert os.listdir(base) == []
        await sweeper.settled()  # nothing given since: returns at once
        sweeper.close()

    asyncio.run(go(tmp_path))


def test_every_caller_of_settled_waits_for_removals_under_way(tmp_path: Path) -> None:
    """Steps: give the sweeper a crowded dir; await settled from two callers at once (a
    runner's report sent early and its next exchange). Expected: when either returns,
    the dir and its parents are gone: a parent is never tried before the removal in it
    is done (it would then be left behind for good)."""
    async def go(base: Path) -> None:
        sweeper = Sweeper()
        unique = _crowded(base, KEY, files=2000)
        sweeper.remove(unique, str(base))
        first = asyncio.ensure_future(sweeper.settled())
        await asyncio.sleep(0)
        await sweeper.settled()
        assert os.listdir(base) == []
        await first
        sweeper.close()

    asyncio.run(go(tmp_path))


def test_a_tmp_removal_keeps_the_cwd(tmp_path: Path) -> None:
    async def go(base: Path) -> None:
        sweeper = Sweeper()
        unique = make_unique_dir(str(base), "wr", KEY)
        (Path(unique) / "tmp" / "scratch").write_text("x")
        (Path(unique) / "cwd" / "result").write_text("x")
        sweeper.remove_tmp(os.path.join(unique, "tmp"))
        await sweeper.settled()
        assert os.listdir(unique) == ["cwd"]
        assert os.listdir(Path(unique) / "cwd") == ["result"]
        sweeper.close()

    asyncio.run(go(tmp_path))


def test_close_finishes_what_was_given(tmp_path: Path) -> None:
    async def go(base: Path) -> None:
        sweeper = Sweeper()
        sweeper.remove(_crowded(base, KEY), str(base))
        sweeper.close()
        assert os.listdir(base) == []

    asyncio.run(go(tmp_path))


@pytest.mark.parametrize("threads", [1, 2])
def test_removals_in_order_or_not_leave_nothing(threads: int, tmp_path: Path) -> None:
    """Steps: 40 jobs' dirs in 10 shared parents, given to a sweeper of 1 or 2 threads,
    settled every 7. Expected: nothing left."""
    async def go() -> None:
        sweeper = Sweeper(threads)
        for i in range(40):
            key = f"{i % 10:03d}" + KEY[3:]
            sweeper.remove(make_unique_dir(str(tmp_path), "wr", key), str(tmp_path))
            if i % 7 == 6:
                await sweeper.settled()
        await sweeper.settled()
        sweeper.close()

    asyncio.run(go())
    assert os.listdir(tmp_path) == []
