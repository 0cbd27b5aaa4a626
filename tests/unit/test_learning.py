"""Learned requirements (spec rest-and-queue.md §4.7): about the 95th percentile, rounded up."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wr.learning import DISK, RAM, TIME, Learner, Recommendation, percentile_recommendation


def test_no_samples_means_no_recommendation():
    assert Learner().recommend("blast") == Recommendation(0, 0, 0.0)


@pytest.mark.parametrize(
    ("values", "unit", "expected"),
    [
        ([250], 100, 300),
        ([100, 250], 100, 300),
        ([1, 2, 3, 4, 5], 100, 100),  # at least one unit
        ([10, 20, 30, 40, 5000], 100, 5000),  # <= 5 samples: the max, an outlier included
        ([3, 7], 1, 7),
        ([0, 0, 0], 100, 0),
        ([100], 100, 100),
    ],
)
def test_few_samples_use_the_maximum(values, unit, expected):
    assert percentile_recommendation(sorted(values), unit) == expected


def test_hundred_samples_use_about_the_95th_percentile():
    values = [i * 100 for i in range(1, 101)]  # 100 .. 10000 MB
    assert percentile_recommendation(values, 100) == 9500


def test_a_candidate_within_one_unit_of_the_max_becomes_the_max():
    assert percentile_recommendation(list(range(1, 101)), 100) == 100
    assert percentile_recommendation(list(range(1, 101)), 1) == 95


def test_repeated_values_keep_their_weight():
    """95 jobs used 1000 MB and 5 used 9000: one runner in twenty would be short, not all."""
    values = [1000] * 95 + [9000] * 5
    assert percentile_recommendation(values, 100) == 1000
    assert percentile_recommendation([1000] * 94 + [9000] * 6, 100) == 9000


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=300),
       st.sampled_from([1, 100]))
def test_recommendation_is_a_rounded_value_no_bigger_than_the_rounded_max(values, unit):
    values.sort()
    rec = percentile_recommendation(values, unit)
    top = values[-1]
    if top <= 0:
        assert rec == 0
        return
    assert rec % unit == 0
    assert unit <= rec <= max(unit, math.ceil(top / unit) * unit)
    assert rec >= values[min(len(values) - 1, math.ceil(len(values) * 0.95) - 1)]


def test_learner_rounds_each_kind():
    learner = Learner()
    for ram, disk, secs in [(120, 1500, 3), (180, 1000, 61)]:
        learner.add("blast", RAM, ram)
        learner.add("blast", DISK, disk)
        learner.add("blast", TIME, secs)
    # RAM to 100 MB; disk to 100 MB then whole GB (1500 -> 1500 MB -> 2 GB); time to 1 s.
    assert learner.recommend("blast") == Recommendation(ram_mb=200, disk_gb=2, time_s=61.0)


def test_learner_hundred_time_samples():
    learner = Learner({("sort", TIME): list(range(100, 0, -1))})  # unsorted input is fine
    assert learner.recommend("sort").time_s == 95.0
    assert learner.recommend("sort").ram_mb == 0


def test_learner_is_keyed_by_exact_req_grp():
    learner = Learner()
    learner.add("blastn", RAM, 5000)
    assert learner.recommend("blast") == Recommendation()
    assert learner.recommend("blastn").ram_mb == 5000


def test_adding_a_sample_updates_the_cached_recommendation():
    learner = Learner()
    learner.add("g", RAM, 100)
    assert learner.recommend("g").ram_mb == 100
    learner.add("g", RAM, 750)
    assert learner.recommend("g").ram_mb == 800
