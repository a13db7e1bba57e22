"""The plant calendar: shift spans per local date, planned time, days off, DST and config problems.

Expected instants are written out by hand as UTC wall times (Berlin is UTC+1 in winter and UTC+2
in summer, Kathmandu UTC+5:45), never computed by the calendar itself.
"""

from __future__ import annotations

import calendar
from datetime import date

import pytest

from collector.derive.shifts import CalendarError, PlantCalendar, ShiftSpan, calendar_problems

H = 3600 * 1_000_000
THREE_SHIFTS = [
    ("early", "06:00", "14:00"),
    ("late", "14:00", "22:00"),
    ("night", "22:00", "06:00"),
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """A UTC wall time as epoch microseconds."""
    return calendar.timegm((year, month, day, hour, minute, 0)) * 1_000_000


def test_a_night_shift_belongs_to_the_date_it_starts_on() -> None:
    cal = PlantCalendar(shifts=THREE_SHIFTS)
    spans = cal.shifts_on(date(2026, 1, 5))
    assert [(s.name, s.date, s.start, s.end) for s in spans] == [
        ("early", date(2026, 1, 5), utc(2026, 1, 5, 6), utc(2026, 1, 5, 14)),
        ("late", date(2026, 1, 5), utc(2026, 1, 5, 14), utc(2026, 1, 5, 22)),
        ("night", date(2026, 1, 5), utc(2026, 1, 5, 22), utc(2026, 1, 6, 6)),
    ]
    at_three = cal.shift_at(utc(2026, 1, 6, 3))
    assert at_three is not None and (at_three.name, at_three.date) == ("night", date(2026, 1, 5))


def test_shifts_on_sorts_config_order_by_start() -> None:
    cal = PlantCalendar(shifts=[("night", "22:00", "06:00"), ("early", "06:00", "14:00")])
    assert [s.name for s in cal.shifts_on(date(2026, 1, 5))] == ["early", "night"]


def test_planned_removes_breaks_and_merges_back_to_back_shifts() -> None:
    cal = PlantCalendar(
        "Europe/Berlin",
        shifts=[("early", "06:00", "14:00"), ("late", "14:00", "22:00")],
        breaks=[("09:00", "09:15"), ("12:00", "12:30")],
    )
    # 2026-01-05 in Berlin is UTC+1: local 06:00 is 05:00 UTC.
    day = (utc(2026, 1, 4, 23), utc(2026, 1, 5, 23))
    assert cal.planned(*day) == [
        (utc(2026, 1, 5, 5), utc(2026, 1, 5, 8)),
        (utc(2026, 1, 5, 8, 15), utc(2026, 1, 5, 11)),
        (utc(2026, 1, 5, 11, 30), utc(2026, 1, 5, 21)),
    ]
    assert cal.planned_seconds(*day) == 16 * 3600 - 45 * 60
    early = cal.shifts_on(date(2026, 1, 5))[0]
    assert early.planned == (
        (utc(2026, 1, 5, 5), utc(2026, 1, 5, 8)),
        (utc(2026, 1, 5, 8, 15), utc(2026, 1, 5, 11)),
        (utc(2026, 1, 5, 11, 30), utc(2026, 1, 5, 13)),
    )
    # clipped to local 07:00-12:15
    assert cal.planned(utc(2026, 1, 5, 6), utc(2026, 1, 5, 11, 15)) == [
        (utc(2026, 1, 5, 6), utc(2026, 1, 5, 8)),
        (utc(2026, 1, 5, 8, 15), utc(2026, 1, 5, 11)),
    ]
    assert cal.planned(utc(2026, 1, 5, 22), utc(2026, 1, 6, 4)) == []
    assert cal.planned(utc(2026, 1, 5, 10), utc(2026, 1, 5, 10)) == []


def test_a_break_across_midnight_cuts_the_night_shift_it_falls_in() -> None:
    cal = PlantCalendar(shifts=THREE_SHIFTS, breaks=[("23:45", "00:15")])
    night = cal.shifts_on(date(2026, 1, 5))[2]
    assert night.planned == (
        (utc(2026, 1, 5, 22), utc(2026, 1, 5, 23, 45)),
        (utc(2026, 1, 6, 0, 15), utc(2026, 1, 6, 6)),
    )
    # the quarter hour after midnight (the 4th's break) and the one before the next midnight
    assert cal.planned_seconds(utc(2026, 1, 5), utc(2026, 1, 6)) == 24 * 3600 - 15 * 60 - 15 * 60


def test_a_weekday_off_plans_nothing_but_still_lists_its_shifts() -> None:
    cal = PlantCalendar(shifts=THREE_SHIFTS, days_off=["SUN"])
    sunday = cal.shifts_on(date(2026, 1, 11))
    assert [(s.name, s.start, s.end, s.planned) for s in sunday] == [
        ("early", utc(2026, 1, 11, 6), utc(2026, 1, 11, 14), ()),
        ("late", utc(2026, 1, 11, 14), utc(2026, 1, 11, 22), ()),
        ("night", utc(2026, 1, 11, 22), utc(2026, 1, 12, 6), ()),
    ]
    # Saturday's night shift starts on a working day and runs into Sunday, planned.
    saturday_night = cal.shifts_on(date(2026, 1, 10))[2]
    assert saturday_night.planned == ((utc(2026, 1, 10, 22), utc(2026, 1, 11, 6)),)
    # Friday's night shift runs into the window until 06:00 on Saturday.
    assert cal.planned(utc(2026, 1, 10), utc(2026, 1, 13)) == [
        (utc(2026, 1, 10), utc(2026, 1, 11, 6)),
        (utc(2026, 1, 12, 6), utc(2026, 1, 13)),
    ]
    assert PlantCalendar(shifts=THREE_SHIFTS, days_off=["Sunday"]).planned_seconds(
        utc(2026, 1, 11, 6), utc(2026, 1, 12, 6)
    ) == 0


def test_a_date_off_plans_nothing_on_that_date() -> None:
    cal = PlantCalendar(shifts=THREE_SHIFTS, days_off=["2026-12-25", date(2026, 12, 31)])
    for day in (date(2026, 12, 25), date(2026, 12, 31)):
        assert [s.planned for s in cal.shifts_on(day)] == [(), (), ()]
    boxing_day = cal.shifts_on(date(2026, 12, 26))[0]
    assert boxing_day.planned == ((utc(2026, 12, 26, 6), utc(2026, 12, 26, 14)),)
    # 00:00-06:00 on the 24th (night of the 23rd), the 24th's three shifts up to 06:00 on the
    # 25th, nothing of the 25th, 06:00-24:00 on the 26th
    assert cal.planned_seconds(utc(2026, 12, 24), utc(2026, 12, 27)) == (6 + 24 + 18) * 3600


def test_without_shifts_each_date_is_one_planned_day() -> None:
    cal = PlantCalendar(breaks=[("12:00", "12:30")], days_off=["sunday"])
    assert cal.shifts_on(date(2026, 1, 5)) == [
        ShiftSpan(
            "day", date(2026, 1, 5), utc(2026, 1, 5), utc(2026, 1, 6),
            ((utc(2026, 1, 5), utc(2026, 1, 5, 12)), (utc(2026, 1, 5, 12, 30), utc(2026, 1, 6))),
        )
    ]
    assert cal.shifts_on(date(2026, 1, 11)) == [
        ShiftSpan("day", date(2026, 1, 11), utc(2026, 1, 11), utc(2026, 1, 12), ())
    ]
    assert cal.planned(utc(2026, 1, 5, 23), utc(2026, 1, 6, 1)) == [
        (utc(2026, 1, 5, 23), utc(2026, 1, 6, 1))
    ]
    assert cal.shift_at(utc(2026, 1, 5, 12, 10)) == cal.shifts_on(date(2026, 1, 5))[0]


def test_berlin_spring_forward_night_lasts_7_hours_and_the_day_23() -> None:
    night = PlantCalendar("Europe/Berlin", shifts=THREE_SHIFTS).shifts_on(date(2026, 3, 28))[2]
    # 22:00 CET on the 28th, 06:00 CEST on the 29th
    assert (night.start, night.end) == (utc(2026, 3, 28, 21), utc(2026, 3, 29, 4))
    assert night.end - night.start == 7 * H

    plain = PlantCalendar("Europe/Berlin")
    bounds = (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    assert plain.day_bounds(date(2026, 3, 29)) == bounds
    (day,) = plain.shifts_on(date(2026, 3, 29))
    assert (day.start, day.end, day.planned) == (*bounds, (bounds,))
    assert plain.planned_seconds(*bounds) == 23 * 3600


def test_berlin_fall_back_night_lasts_9_hours_and_the_day_25() -> None:
    night = PlantCalendar("Europe/Berlin", shifts=THREE_SHIFTS).shifts_on(date(2026, 10, 24))[2]
    # 22:00 CEST on the 24th, 06:00 CET on the 25th
    assert (night.start, night.end) == (utc(2026, 10, 24, 20), utc(2026, 10, 25, 5))
    assert night.end - night.start == 9 * H

    plain = PlantCalendar("Europe/Berlin")
    bounds = (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))
    assert plain.day_bounds(date(2026, 10, 25)) == bounds
    assert plain.planned_seconds(*bounds) == 25 * 3600
    assert plain.local_date(utc(2026, 10, 25, 22, 59)) == date(2026, 10, 25)
    assert plain.local_date(utc(2026, 10, 25, 23)) == date(2026, 10, 26)


def test_a_skipped_local_time_means_the_end_of_the_gap_and_a_repeated_one_its_first_time() -> None:
    cal = PlantCalendar("Europe/Berlin", shifts=[("early", "02:30", "06:00")])
    spring = cal.shifts_on(date(2026, 3, 29))[0]
    # 02:30 does not exist: the clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC).
    assert (spring.start, spring.end) == (utc(2026, 3, 29, 1), utc(2026, 3, 29, 4))
    autumn = cal.shifts_on(date(2026, 10, 25))[0]
    # 02:30 happens twice; the first time is 02:30 CEST (00:30 UTC).
    assert (autumn.start, autumn.end) == (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 5))


def test_a_zone_with_a_45_minute_offset() -> None:
    cal = PlantCalendar("Asia/Kathmandu", shifts=[("early", "06:00", "14:00")],
                        breaks=[("10:00", "10:30")])
    (early,) = cal.shifts_on(date(2026, 1, 5))
    assert (early.start, early.end) == (utc(2026, 1, 5, 0, 15), utc(2026, 1, 5, 8, 15))
    assert early.planned == (
        (utc(2026, 1, 5, 0, 15), utc(2026, 1, 5, 4, 15)),
        (utc(2026, 1, 5, 4, 45), utc(2026, 1, 5, 8, 15)),
    )
    assert cal.day_bounds(date(2026, 1, 5)) == (utc(2026, 1, 4, 18, 15), utc(2026, 1, 5, 18, 15))
    assert cal.local_date(utc(2026, 1, 4, 18, 14)) == date(2026, 1, 4)
    assert cal.local_date(utc(2026, 1, 4, 18, 15)) == date(2026, 1, 5)


def test_shift_at_is_none_between_shifts() -> None:
    cal = PlantCalendar(shifts=[("early", "06:00", "14:00"), ("late", "14:00", "22:00")])
    assert cal.shift_at(utc(2026, 1, 5, 23)) is None
    assert cal.shift_at(utc(2026, 1, 5, 22)) is None  # the end is exclusive
    assert cal.shift_at(utc(2026, 1, 6, 5, 59)) is None
    late = cal.shift_at(utc(2026, 1, 5, 14))
    assert late is not None and (late.name, late.start) == ("late", utc(2026, 1, 5, 14))
    assert cal.planned(utc(2026, 1, 5, 20), utc(2026, 1, 6, 8)) == [
        (utc(2026, 1, 5, 20), utc(2026, 1, 5, 22)),
        (utc(2026, 1, 6, 6), utc(2026, 1, 6, 8)),
    ]


def test_shifts_between_returns_whole_spans_across_several_days() -> None:
    cal = PlantCalendar(shifts=THREE_SHIFTS)
    spans = cal.shifts_between(utc(2026, 1, 5, 12), utc(2026, 1, 7, 7))
    assert [(s.name, s.date, s.start, s.end) for s in spans] == [
        ("early", date(2026, 1, 5), utc(2026, 1, 5, 6), utc(2026, 1, 5, 14)),
        ("late", date(2026, 1, 5), utc(2026, 1, 5, 14), utc(2026, 1, 5, 22)),
        ("night", date(2026, 1, 5), utc(2026, 1, 5, 22), utc(2026, 1, 6, 6)),
        ("early", date(2026, 1, 6), utc(2026, 1, 6, 6), utc(2026, 1, 6, 14)),
        ("late", date(2026, 1, 6), utc(2026, 1, 6, 14), utc(2026, 1, 6, 22)),
        ("night", date(2026, 1, 6), utc(2026, 1, 6, 22), utc(2026, 1, 7, 6)),
        ("early", date(2026, 1, 7), utc(2026, 1, 7, 6), utc(2026, 1, 7, 14)),
    ]
    # The night of the 4th ends at 06:00 on the 5th: it reaches into a window starting at 05:00.
    first = cal.shifts_between(utc(2026, 1, 5, 5), utc(2026, 1, 5, 7))
    assert [(s.name, s.date) for s in first] == [
        ("night", date(2026, 1, 4)),
        ("early", date(2026, 1, 5)),
    ]
    assert cal.shifts_between(utc(2026, 1, 5, 7), utc(2026, 1, 5, 7)) == []


def test_a_shift_may_end_at_24_00() -> None:
    cal = PlantCalendar(shifts=[("late", "16:00", "24:00")])
    (late,) = cal.shifts_on(date(2026, 1, 5))
    assert (late.start, late.end) == (utc(2026, 1, 5, 16), utc(2026, 1, 6))


def test_bad_config_is_refused_with_every_problem() -> None:
    with pytest.raises(CalendarError) as caught:
        PlantCalendar("Mars/Olympus", shifts=[("early", "6:00", "14:00")], days_off=["someday"])
    paths = [path for path, _ in caught.value.problems]
    assert paths == ["timezone", "shifts[0].start", "days_off[0]"]


SHIFT_PROBLEMS = [
    pytest.param(
        [("early", "06:00", "14:00"), ("late", "13:00", "22:00")],
        [("shifts[1]", "shifts[1] late 13:00-22:00 overlaps shifts[0] early 06:00-14:00 by 1 h "
                       "(13:00-14:00)")],
        id="overlap",
    ),
    pytest.param(
        [("night", "22:00", "06:30"), ("early", "06:00", "14:00")],
        [("shifts[1]", "shifts[1] early 06:00-14:00 overlaps shifts[0] night 22:00-06:30 by 30 min "
                       "(06:00-06:30)")],
        id="overlap after midnight",
    ),
    pytest.param(
        [("long", "20:00", "08:00"), ("day", "07:00", "21:00")],
        [("shifts[1]", "shifts[1] day 07:00-21:00 overlaps shifts[0] long 20:00-08:00 by 2 h "
                       "(07:00-08:00, 20:00-21:00)")],
        id="overlap at both ends",
    ),
    pytest.param(
        [("early", "06:00", "14:00"), ("late", "14:00", "22:00"), ("early", "22:00", "06:00")],
        [("shifts[2].name",
          'shift name "early" is already used by shifts[0]; give each shift its own name')],
        id="duplicate name",
    ),
    pytest.param(
        [("early", "06:00", "06:00")],
        [("shifts[0]", "shift early 06:00-06:00 has zero length; a shift across midnight ends "
                       "before it starts (22:00-06:00)")],
        id="zero length",
    ),
    pytest.param(
        [("early", "6:00", "14:60"), ("late", "24:00", "24:00"), ("night", "22:00", "24:01")],
        [("shifts[0].start", 'not a time: "6:00"; write "HH:MM" from 00:00 to 23:59'),
         ("shifts[0].end", 'not a time: "14:60"; write "HH:MM" from 00:00 to 24:00'),
         ("shifts[1].start", 'not a time: "24:00"; write "HH:MM" from 00:00 to 23:59'),
         ("shifts[2].end", 'not a time: "24:01"; write "HH:MM" from 00:00 to 24:00')],
        id="not HH:MM",
    ),
    pytest.param(
        [("late", "06:00", 840)],
        [("shifts[0].end", 'got the number 840, which is how YAML reads an unquoted 14:00; '
                           'write "14:00" in quotes')],
        id="unquoted in YAML",
    ),
    pytest.param(
        [("early", "06:00", "14:00"), ("late", "14:00", "22:00"), ("night", "22:00", "06:00")],
        [],
        id="three shifts fine",
    ),
    pytest.param(
        [("early", "06:00", "12:00"), ("late", "14:00", "20:00")],
        [],
        id="a gap is fine",
    ),
]


@pytest.mark.parametrize(("shifts", "expected"), SHIFT_PROBLEMS)
def test_shift_problems(
    shifts: list[tuple[str, str, str]], expected: list[tuple[str, str]]
) -> None:
    assert calendar_problems(shifts, [], [], "UTC") == expected


def test_unknown_time_zone_suggests_close_names() -> None:
    ((path, message),) = calendar_problems([], [], [], "Europe/Berln")
    assert path == "timezone"
    assert message.startswith('unknown time zone "Europe/Berln"; did you mean Europe/Berlin')
    assert calendar_problems([], [], [], "nowhere at all") == [
        ("timezone", 'unknown time zone "nowhere at all"; write an IANA name such as Europe/Berlin')
    ]


def test_break_problems() -> None:
    shifts = [("early", "06:00", "12:00"), ("night", "22:00", "06:00")]
    assert calendar_problems(
        shifts, [("12:00", "12:30"), ("23:45", "00:15"), ("11:45", "12:15"), ("09:00", "09:00")],
        [], "UTC",
    ) == [
        ("breaks[0]", "break 12:00-12:30 is outside every shift"),
        ("breaks[3]", "break 09:00-09:00 has zero length"),
    ]
    # Without shifts every hour is planned, so no break can be outside one.
    assert calendar_problems([], [("12:00", "12:30")], [], "UTC") == []
    assert calendar_problems([], [("12:00", "25:00")], [], "UTC") == [
        ("breaks[0].end", 'not a time: "25:00"; write "HH:MM" from 00:00 to 24:00')
    ]


def test_days_off_problems() -> None:
    assert calendar_problems(
        [], [],
        ["Sunday", "sat", "2026-12-24", date(2026, 12, 31), "sundy", "2026-02-30", "someday"],
        "UTC",
    ) == [
        ("days_off[4]", 'unknown day "sundy" (did you mean sunday?); write a weekday '
                        "(monday or mon to sunday or sun) or a date YYYY-MM-DD"),
        ("days_off[5]", 'not a date: "2026-02-30" (day is out of range for month); '
                        "write YYYY-MM-DD"),
        ("days_off[6]", 'unknown day "someday"; write a weekday '
                        "(monday or mon to sunday or sun) or a date YYYY-MM-DD"),
    ]
