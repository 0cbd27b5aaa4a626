"""Time-window limit groups (wr.windows): the six forms, their bounds, and when they open.

Times are given in UTC (``tz=UTC``) so the tables read the same everywhere; one test runs
over a daylight-saving change in a real zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wr.windows import FOREVER, FORMS, WindowError, describe, parse, waiting_for, window_of


def at(text: str, tz=UTC) -> float:
    """Unix time of a ``YYYY-MM-DD hh:mm:ss`` wall-clock time."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).timestamp()


DAY = "2025-03-04"


@pytest.mark.parametrize(("text", "kind"), [
    ("time < 12:00:00", "time"),
    ("time<12:00:00", "time"),
    ("12:00:00 < time", "time"),
    ("12:00:00  <  time  <  13:00:00", "time"),
    ("datetime < 2025-01-01 00:00:00", "datetime"),
    ("2025-01-01 00:00:00 < datetime", "datetime"),
    ("2025-01-01 00:00:00<datetime<2025-02-01 00:00:00", "datetime"),
])
def test_the_six_forms_are_windows(text: str, kind: str) -> None:
    window = parse(text)
    assert window is not None and window.kind == kind and window.text == text


@pytest.mark.parametrize("text", ["lim", "lim:3", "a:b", "runtime", "downtime:2", "<<", ""])
def test_ordinary_limit_group_names_are_not_windows(text: str) -> None:
    assert parse(text) is None
    assert window_of(text) is None


@pytest.mark.parametrize(("text", "says"), [
    ("17:00 < time", "not one of the accepted forms"),
    ("7:00:00 < time", "not one of the accepted forms"),
    ("Time < 12:00:00", "not one of the accepted forms"),
    ("time < 12:00:00:3", "not one of the accepted forms"),
    ("12:00:00 < time:3", "not one of the accepted forms"),
    ("time > 12:00:00", "not one of the accepted forms"),
    ("time <= 12:00:00", "not one of the accepted forms"),
    ("DateTime < 2025-01-01 00:00:00", "not one of the accepted forms"),
    ("time < 24:00:00", "'24:00:00' is not a time of day"),
    ("time < 12:60:00", "'12:60:00' is not a time of day"),
    ("2025-02-30 00:00:00 < datetime", "'2025-02-30 00:00:00' is not a date and time"),
    ("10:00:00 < time < 10:00:00", "never open"),
    ("10:00:00 < time < 10:00:01", "never open"),
    ("time < 00:00:00", "never open"),
    ("23:59:59 < time", "never open"),
    ("2025-01-02 00:00:00 < datetime < 2025-01-01 00:00:00", "never open"),
])
def test_a_malformed_window_is_refused_quoting_it(text: str, says: str) -> None:
    with pytest.raises(WindowError) as caught:
        parse(text)
    message = str(caught.value)
    assert f"'{text}'" in message and says in message
    if "accepted forms" in message:
        assert all(f"'{form}'" in message for form in FORMS)


@pytest.mark.parametrize(("text", "closed", "opened"), [
    # bounds are exclusive and time counts in whole seconds, as in wr
    ("12:00:00 < time", "12:00:00", "12:00:01"),
    ("12:00:00 < time", "00:00:00", "23:59:59"),
    ("time < 12:00:00", "12:00:00", "11:59:59"),
    ("time < 12:00:00", "23:59:59", "00:00:00"),
    ("09:00:00 < time < 17:00:00", "17:00:00", "16:59:59"),
    ("09:00:00 < time < 17:00:00", "09:00:00", "09:00:01"),
    # overnight: after the start or before the end (wr opens it for the day instead)
    ("20:00:00 < time < 06:00:00", "12:00:00", "23:00:00"),
    ("20:00:00 < time < 06:00:00", "06:00:00", "05:59:59"),
    ("20:00:00 < time < 06:00:00", "20:00:00", "00:00:00"),
])
def test_time_windows_open_and_close_on_the_second(text: str, closed: str, opened: str
                                                   ) -> None:
    window = parse(text)
    assert window is not None
    assert not window.allows(at(f"{DAY} {closed}"), UTC)
    assert window.allows(at(f"{DAY} {opened}"), UTC)
    assert window.allows(at(f"{DAY} {opened}") + 0.999, UTC)


@pytest.mark.parametrize(("text", "now", "opens"), [
    ("12:00:00 < time", "11:00:00", f"{DAY} 12:00:01"),
    ("12:00:00 < time", "12:00:00", f"{DAY} 12:00:01"),
    ("time < 12:00:00", "13:00:00", "2025-03-05 00:00:00"),
    ("09:00:00 < time < 17:00:00", "18:00:00", "2025-03-05 09:00:01"),
    ("09:00:00 < time < 17:00:00", "08:00:00", f"{DAY} 09:00:01"),
    ("20:00:00 < time < 06:00:00", "06:00:00", f"{DAY} 20:00:01"),
    ("2025-03-04 18:30:00 < datetime", "18:00:00", f"{DAY} 18:30:01"),
])
def test_a_closed_window_says_when_it_opens(text: str, now: str, opens: str) -> None:
    window = parse(text)
    assert window is not None
    assert window.next_open(at(f"{DAY} {now}"), UTC) == at(opens)


@pytest.mark.parametrize("text", [
    "datetime < 2025-03-04 12:00:00",
    "2025-03-01 00:00:00 < datetime < 2025-03-04 12:00:00",
])
def test_a_datetime_window_that_has_passed_never_opens_again(text: str) -> None:
    window = parse(text)
    assert window is not None
    now = at(f"{DAY} 12:00:00")
    assert not window.allows(now, UTC)
    assert window.next_open(now, UTC) == FOREVER
    assert describe(window, now, UTC) == f"time window '{text}' (closed for good)"


def test_an_open_window_says_when_it_closes() -> None:
    window = parse("20:00:00 < time < 06:00:00")
    assert window is not None
    assert window.closes(at(f"{DAY} 23:00:00"), UTC) == at("2025-03-05 06:00:00")
    assert window.closes(at(f"{DAY} 01:00:00"), UTC) == at(f"{DAY} 06:00:00")
    assert describe(window, at(f"{DAY} 23:00:00"), UTC) == (
        "time window '20:00:00 < time < 06:00:00' (open until 2025-03-05 06:00:00)")
    forever = parse("2025-01-01 00:00:00 < datetime")
    assert forever is not None
    assert describe(forever, at(f"{DAY} 23:00:00"), UTC) == (
        "time window '2025-01-01 00:00:00 < datetime' (open)")


def test_datetimes_are_the_local_time_of_the_zone_given() -> None:
    window = parse("2025-03-04 12:00:00 < datetime")
    assert window is not None
    paris = ZoneInfo("Europe/Paris")  # UTC+1 in March
    assert window.next_open(at(f"{DAY} 00:00:00"), paris) == at(f"{DAY} 11:00:01")


def test_time_of_day_is_the_wall_clock_across_a_daylight_saving_change() -> None:
    # On 2025-03-30 London's clocks go from 01:00 to 02:00: the window still opens at
    # 03:00:01 by the clock (wr, counting real seconds since midnight, an hour late).
    london = ZoneInfo("Europe/London")
    window = parse("03:00:00 < time")
    assert window is not None
    opens = window.next_open(at("2025-03-30 00:30:00", london), london)
    assert opens == at("2025-03-30 03:00:01", london)
    assert window.allows(opens, london) and not window.allows(opens - 1, london)


def test_waiting_for_names_closed_windows_and_full_count_groups() -> None:
    now = at(f"{DAY} 12:00:00")
    names = ("lim", "other", "13:00:00 < time", "time < 14:00:00")
    said = waiting_for(names, {"lim": 2, "other": 5}, {"lim": 2, "other": 1}, now, UTC)
    assert said == ("limit group 'lim' (2 of 2 running); time window '13:00:00 < time' "
                    f"(closed; opens {DAY} 13:00:01)")
    assert waiting_for(("other", "time < 14:00:00"), {"other": 5}, {}, now, UTC) == ""
    assert waiting_for(("zero",), {"zero": 0}, {}, now, UTC) == (
        "limit group 'zero' (its limit is 0)")


# -- properties ----------------------------------------------------------------------------

_TIME = st.builds(lambda s: f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}",
                  st.integers(0, 86_399))
_WINDOW = st.one_of(
    _TIME.map(lambda t: f"time < {t}"),
    _TIME.map(lambda t: f"{t} < time"),
    st.tuples(_TIME, _TIME).map(lambda p: f"{p[0]} < time < {p[1]}"),
)
_NOW = st.integers(at("2025-01-01 00:00:00"), at("2025-12-31 00:00:00")).map(float)


def _valid(text: str):
    try:
        return parse(text)
    except WindowError:
        return None


@given(_WINDOW, _NOW, st.floats(0, 0.999))
def test_next_open_is_the_first_open_second(text: str, now: float, fraction: float) -> None:
    window = _valid(text)
    if window is None:  # never open: refused, and nothing to check
        return
    now += fraction
    opens = window.next_open(now, UTC)
    assert window.allows(opens, UTC)
    if opens > now:
        assert opens == int(opens) and not window.allows(opens - 1, UTC)
        assert opens - now <= 86_400
        middle = now + (opens - now) / 2
        assert not window.allows(middle, UTC)


@given(_WINDOW, _NOW)
def test_an_open_window_stays_open_until_it_closes(text: str, now: float) -> None:
    window = _valid(text)
    if window is None or not window.allows(now, UTC):
        return
    closes = window.closes(now, UTC)
    assert closes > now and not window.allows(closes, UTC)
    assert window.allows(closes - 1, UTC)
    assert window.allows(now + (closes - now) / 2, UTC)


@given(st.tuples(_TIME, _TIME), _NOW)
def test_an_overnight_window_is_the_complement_of_the_daytime_one(pair: tuple[str, str],
                                                                  now: float) -> None:
    start, end = pair
    night, day = _valid(f"{start} < time < {end}"), _valid(f"{end} < time < {start}")
    if night is None or day is None or start <= end:
        return
    second = datetime.fromtimestamp(now, UTC)
    bound = {start, end}
    if second.strftime("%H:%M:%S") in bound:
        return  # both exclude their bounds
    assert night.allows(now, UTC) != day.allows(now, UTC)


def test_a_window_a_day_long_or_less_opens_within_a_day() -> None:
    window = parse("00:00:00 < time < 00:00:02")  # open one second a day
    assert window is not None
    now = at(f"{DAY} 00:00:02")
    assert window.next_open(now, UTC) == at(f"{DAY} 00:00:01") + timedelta(days=1).total_seconds()
