"""Time-window limit groups: a limit group named like ``17:00:00 < time < 20:00:00`` lets its
jobs *start* only inside that window (spec containers-mounts-lsf-env.md §6, issue 15).

The six forms, exactly as wr has them (spaces around ``<`` optional, keywords lower case,
two-digit fields, four-digit years, 24-hour clock):

==========================================================  ==================================
form                                                        a job may start when
==========================================================  ==================================
``time < hh:mm:ss``                                         the local time of day is before T
``hh:mm:ss < time``                                         ... after A (until midnight)
``hh:mm:ss < time < hh:mm:ss``                              ... after A and before B (A > B:
                                                            after A or before B, overnight)
``datetime < YYYY-MM-DD hh:mm:ss``                          now is before D
``YYYY-MM-DD hh:mm:ss < datetime``                          now is after D
``YYYY-MM-DD hh:mm:ss < datetime < YYYY-MM-DD hh:mm:ss``    now is after D1 and before D2
==========================================================  ==================================

Times and dates are the manager's local time. As in wr, time is compared in whole seconds
and the bounds are exclusive: ``17:00:00 < time`` first lets a job start at 17:00:01.

Decisions (docs/compatibility.md):

* an overnight window (``20:00:00 < time < 06:00:00``) is open from 20:00:01 to 05:59:59;
  wr opens it for the daytime complement instead [QUIRK];
* a string that mentions ``time`` and ``<`` or ``>`` but is not one of the forms (``17:00 <
  time``, ``Time < 12:00:00``, a window with ``:3`` after it), a field out of range
  (``25:00:00``, ``2024-02-30``) and a window that can never open (``10:00:00 < time <
  10:00:00``, ``time < 00:00:00``) are refused (`WindowError`, a 400 at add); wr makes each of
  them an ordinary, unlimited limit group;
* the time of day is the wall clock's (``hh:mm:ss``), also on the days daylight saving time
  starts or ends; wr counts real seconds since midnight, an hour off on those days.

Only starting is gated: a job that started inside its window runs past its end. A closed
window is not a count, so windows never appear among the count limits (``wr limit``).
Everything here is pure: the time is an argument (``now``, Unix seconds), the time zone an
optional one (local time when None).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

FORMS = (
    "time < hh:mm:ss",
    "hh:mm:ss < time",
    "hh:mm:ss < time < hh:mm:ss",
    "datetime < YYYY-MM-DD hh:mm:ss",
    "YYYY-MM-DD hh:mm:ss < datetime",
    "YYYY-MM-DD hh:mm:ss < datetime < YYYY-MM-DD hh:mm:ss",
)
"""The accepted forms, as error messages quote them."""

FOREVER = math.inf
"""What `Window.next_open` answers for a window that will never open again."""

_DAY = 86_400
_T = r"(\d\d:\d\d:\d\d)"
_D = r"(\d\d\d\d-\d\d-\d\d \d\d:\d\d:\d\d)"
_PATTERNS = (
    ("time", re.compile(rf"time *< *{_T}")),
    ("time", re.compile(rf"{_T} *< *time")),
    ("time", re.compile(rf"{_T} *< *time *< *{_T}")),
    ("datetime", re.compile(rf"datetime *< *{_D}")),
    ("datetime", re.compile(rf"{_D} *< *datetime")),
    ("datetime", re.compile(rf"{_D} *< *datetime *< *{_D}")),
)
_MENTIONS_TIME = re.compile(r"time", re.IGNORECASE)


class WindowError(ValueError):
    """A limit group that is meant as a time window but cannot be one; the message quotes
    it and says what is accepted."""


@dataclass(frozen=True, slots=True)
class Window:
    """One time window. ``start``/``end`` are exclusive bounds, None when open-ended: seconds
    since local midnight for ``kind`` "time", a naive local datetime for "datetime"."""

    text: str
    kind: str
    start: int | datetime | None
    end: int | datetime | None

    def allows(self, now: float, tz: tzinfo | None = None) -> bool:
        """Whether a job may start at ``now``."""
        if self.kind == "time":
            second = _second_of_day(now, tz)
            return any(lo <= second <= hi for lo, hi in self.spans())
        second = math.floor(now)
        start, end = self._instants(tz)
        return (start is None or second > start) and (end is None or second < end)

    def next_open(self, now: float, tz: tzinfo | None = None) -> float:
        """When the window next lets a job start: ``now`` if it does now, `FOREVER` if it
        never will again."""
        if self.allows(now, tz):
            return now
        if self.kind == "datetime":
            start, end = self._instants(tz)
            second = math.floor(now)
            if start is not None and second <= start and (end is None or start + 1 < end):
                return float(start + 1)
            return FOREVER
        local = datetime.fromtimestamp(math.floor(now), tz)
        second = local.hour * 3600 + local.minute * 60 + local.second
        spans = self.spans()
        later = [lo for lo, _ in spans if lo > second]
        return _at(local.date(), later[0], tz) if later else _at(
            local.date() + timedelta(days=1), spans[0][0], tz)

    def closes(self, now: float, tz: tzinfo | None = None) -> float:
        """When a window open at ``now`` next stops letting jobs start (`FOREVER`: never)."""
        if self.kind == "datetime":
            _, end = self._instants(tz)
            return FOREVER if end is None else float(end)
        local = datetime.fromtimestamp(math.floor(now), tz)
        second = local.hour * 3600 + local.minute * 60 + local.second
        spans = self.spans()
        for lo, hi in spans:
            if lo <= second <= hi:
                if hi == _DAY - 1 and spans[0][0] == 0:  # overnight: open past midnight
                    return _at(local.date() + timedelta(days=1), spans[0][1] + 1, tz)
                day = local.date() + timedelta(days=(hi + 1) // _DAY)
                return _at(day, (hi + 1) % _DAY, tz)
        return now

    def spans(self) -> list[tuple[int, int]]:
        """A time window's open seconds of the day, as inclusive (first, last) pairs in
        order (none: never open)."""
        start, end = self.start, self.end
        assert not isinstance(start, datetime) and not isinstance(end, datetime)
        if start is None:
            spans = [(0, end - 1)]  # type: ignore[operator]
        elif end is None:
            spans = [(start + 1, _DAY - 1)]
        elif start < end:
            spans = [(start + 1, end - 1)]
        elif start == end:
            spans = []
        else:  # overnight
            spans = [(0, end - 1), (start + 1, _DAY - 1)]
        return [(lo, hi) for lo, hi in spans if lo <= hi]

    def _instants(self, tz: tzinfo | None) -> tuple[int | None, int | None]:
        return _instant(self.start, tz), _instant(self.end, tz)


def _instant(moment: int | datetime | None, tz: tzinfo | None) -> int | None:
    if moment is None:
        return None
    assert isinstance(moment, datetime)
    return int(moment.replace(tzinfo=tz).timestamp() if tz else moment.timestamp())


def _second_of_day(now: float, tz: tzinfo | None) -> int:
    local = datetime.fromtimestamp(math.floor(now), tz)
    return local.hour * 3600 + local.minute * 60 + local.second


def _at(day: date, second: int, tz: tzinfo | None) -> float:
    """The Unix time of wall-clock ``second`` of local ``day``."""
    moment = datetime(day.year, day.month, day.day, second // 3600, second // 60 % 60,
                      second % 60, tzinfo=tz)
    return moment.timestamp()


# -- parsing ------------------------------------------------------------------------------

def parse(text: str) -> Window | None:
    """The window ``text`` names, or None if it is an ordinary limit group name. A string
    that is evidently meant as a window but is not a valid one raises `WindowError`."""
    for n, (kind, pattern) in enumerate(_PATTERNS):
        found = pattern.fullmatch(text)
        if found is None:
            continue
        values = [_field(text, kind, value) for value in found.groups()]
        start, end = ((None, values[0]) if n % 3 == 0 else
                      (values[0], None) if n % 3 == 1 else (values[0], values[1]))
        window = Window(text, kind, start, end)
        _check_can_open(window)
        return window
    if _MENTIONS_TIME.search(text) and ("<" in text or ">" in text):
        raise WindowError(f"limit group {text!r} looks like a time window but is not one of "
                          f"the accepted forms: {_FORMS_TEXT}")
    return None


_FORMS_TEXT = (", ".join(f"'{form}'" for form in FORMS)
               + " (a 24-hour clock in the manager's local time, every field two digits, "
                 "the year four; spaces around '<' optional)")


def _field(text: str, kind: str, value: str) -> int | datetime:
    try:
        if kind == "time":
            moment = datetime.strptime(value, "%H:%M:%S")
            return moment.hour * 3600 + moment.minute * 60 + moment.second
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        what = ("a time of day (hh 00-23, mm and ss 00-59)" if kind == "time"
                else "a date and time that exists (YYYY-MM-DD hh:mm:ss)")
        raise WindowError(f"limit group {text!r} is not a valid time window: {value!r} is "
                          f"not {what}") from None


def _check_can_open(window: Window) -> None:
    start, end = window.start, window.end
    if window.kind == "time":
        never = not window.spans()
    else:
        assert start is None or isinstance(start, datetime)
        assert end is None or isinstance(end, datetime)
        never = start is not None and end is not None and end - start <= timedelta(seconds=1)
    if never:
        raise WindowError(f"limit group {window.text!r} is a time window that is never open "
                          f"(its bounds are exclusive, so it must leave at least one whole "
                          f"second open)")


_CACHE: dict[str, Window | None] = {}


def window_of(name: str) -> Window | None:
    """`parse` for names already accepted (stored limit groups): the window, or None for
    an ordinary limit group. Cached: the queue asks about the same few names all the time."""
    try:
        return _CACHE[name]
    except KeyError:
        pass
    try:
        found = parse(name)
    except WindowError:
        found = None  # stored before windows were checked: it stays an ordinary name
    if len(_CACHE) >= 10_000:
        _CACHE.clear()
    _CACHE[name] = found
    return found


_IN: dict[tuple[str, ...], tuple[Window, ...]] = {}


def windows_in(names: tuple[str, ...] | list[str]) -> tuple[Window, ...]:
    """The windows among a job's limit groups (usually none)."""
    key = tuple(names)
    found = _IN.get(key)
    if found is None:
        if len(_IN) >= 10_000:
            _IN.clear()
        found = _IN[key] = tuple(w for n in key if (w := window_of(n)) is not None)
    return found


# -- telling people -----------------------------------------------------------------------

def describe(window: Window, now: float, tz: tzinfo | None = None) -> str:
    """The window and whether it lets jobs start now, for people: ``time window '17:00:00 <
    time' (closed; opens 2025-06-01 17:00:01)``."""
    if window.allows(now, tz):
        until = window.closes(now, tz)
        state = "open" if until == FOREVER else f"open until {_shown(until, tz)}"
    else:
        opens = window.next_open(now, tz)
        state = "closed for good" if opens == FOREVER else f"closed; opens {_shown(opens, tz)}"
    return f"time window '{window.text}' ({state})"


def _shown(when: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(when, tz).strftime("%Y-%m-%d %H:%M:%S")


def waiting_for(limit_grps: tuple[str, ...] | list[str], limits: dict[str, int],
                counts: dict[str, int], now: float, tz: tzinfo | None = None) -> str:
    """What keeps a ready job with these limit groups from starting now ("" if nothing):
    its closed time windows and its count groups that are full."""
    held = []
    for name in limit_grps:
        window = window_of(name)
        if window is not None:
            if not window.allows(now, tz):
                held.append(describe(window, now, tz))
            continue
        limit = limits.get(name)
        if limit == 0:
            held.append(f"limit group '{name}' (its limit is 0)")
        elif limit is not None and counts.get(name, 0) >= limit:
            held.append(f"limit group '{name}' ({counts.get(name, 0)} of {limit} running)")
    return "; ".join(held)
