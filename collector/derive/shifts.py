"""The plant calendar: which time is planned, and the shifts every production figure is split by.

Shift and break times are local wall-clock times in the plant's time zone; everything returned is
integer microseconds since the epoch, UTC, like every other time inside the collector. A local time
that does not exist (spring forward) means the first instant after the gap; an ambiguous one (fall
back) means its first occurrence.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from collector.model import us_from_datetime

__all__ = ["CalendarError", "PlantCalendar", "ShiftSpan", "calendar_problems"]

DAY_MINUTES = 24 * 60
_TIME = re.compile(r"(\d\d):(\d\d)")
_DATE = re.compile(r"\d{4}-\d\d?-\d\d?")
_WEEKDAYS = {
    name: number
    for number, full in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
    for name in (full, full[:3])
}
# Dates kept per calendar; a long-running collector walks forward, so old dates are simply dropped.
_CACHE_DATES = 4096


class CalendarError(ValueError):
    """The `plant` calendar is unusable; `problems` holds (path, message) per thing to fix."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


@dataclass(frozen=True)
class ShiftSpan:
    """One shift on one local date, with the part of it that is planned production time."""

    name: str
    date: date
    start: int
    end: int
    planned: tuple[tuple[int, int], ...]


def calendar_problems(
    shifts: Sequence[tuple[str, str, str]],
    breaks: Sequence[tuple[str, str]],
    days_off: Sequence[str | date],
    timezone: str,
) -> list[tuple[str, str]]:
    """Config problems as (path below `plant`, message), e.g. ("shifts[2].start", "..."),
    all at once, for `collector check`."""
    return _parse(shifts, breaks, days_off, timezone).problems


class PlantCalendar:
    """Planned time and shift spans of one plant, worked out once per local date."""

    def __init__(
        self,
        timezone: str = "UTC",
        shifts: Sequence[tuple[str, str, str]] = (),
        breaks: Sequence[tuple[str, str]] = (),
        days_off: Sequence[str | date] = (),
    ) -> None:
        parsed = _parse(shifts, breaks, days_off, timezone)
        if parsed.problems or parsed.tz is None:
            raise CalendarError(parsed.problems)
        self.tz: ZoneInfo = parsed.tz
        # Sorted by local start; the stable sort keeps config order for equal starts.
        self._shifts = sorted(parsed.shifts, key=lambda s: s[1]) or [("day", 0, DAY_MINUTES)]
        self._breaks = parsed.breaks
        self._weekdays_off = parsed.weekdays_off
        self._dates_off = parsed.dates_off
        self._spans: dict[date, tuple[ShiftSpan, ...]] = {}
        self._break_spans: dict[date, list[tuple[int, int]]] = {}

    def shifts_on(self, day: date) -> list[ShiftSpan]:
        """The shifts belonging to a local date (a night shift belongs to the date it starts on)."""
        return list(self._spans_of(day))

    def shifts_between(self, start: int, end: int) -> list[ShiftSpan]:
        """Every span overlapping [start, end), whole, not clipped, in time order."""
        return sorted(self._overlapping(start, end), key=lambda s: (s.start, s.end))

    def planned(self, start: int, end: int) -> list[tuple[int, int]]:
        """Planned time clipped to [start, end): sorted, non-overlapping, neighbours merged."""
        pieces: list[tuple[int, int]] = []
        for span in self._overlapping(start, end):
            for a, b in span.planned:
                a, b = max(a, start), min(b, end)
                if a < b:
                    pieces.append((a, b))
        pieces.sort()
        merged: list[tuple[int, int]] = []
        for a, b in pieces:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        return merged

    def planned_seconds(self, start: int, end: int) -> float:
        """Planned time inside [start, end), in seconds."""
        return sum(b - a for a, b in self.planned(start, end)) / 1e6

    def day_bounds(self, day: date) -> tuple[int, int]:
        """Local midnight to the next local midnight (23 h or 25 h on DST days)."""
        return self._utc(day, 0), self._utc(day, DAY_MINUTES)

    def local_date(self, ts: int) -> date:
        """The plant's local date at an instant."""
        return datetime.fromtimestamp(ts // 1_000_000, self.tz).date()

    def shift_at(self, ts: int) -> ShiftSpan | None:
        """The span containing ts, or None in a gap between shifts."""
        day = self.local_date(ts)
        for d in (day - timedelta(days=1), day):
            for span in self._spans_of(d):
                if span.start <= ts < span.end:
                    return span
        return None

    def _overlapping(self, start: int, end: int) -> list[ShiftSpan]:
        if end <= start:
            return []
        # A span ends before the second local midnight after its date, so the date before the
        # window's first one is the earliest that can reach into it.
        day = self.local_date(start) - timedelta(days=1)
        last = self.local_date(end - 1)
        out: list[ShiftSpan] = []
        while day <= last:
            out += [s for s in self._spans_of(day) if s.start < end and s.end > start]
            day += timedelta(days=1)
        return out

    def _spans_of(self, day: date) -> tuple[ShiftSpan, ...]:
        spans = self._spans.get(day)
        if spans is None:
            off = day in self._dates_off or day.weekday() in self._weekdays_off
            cuts = [] if off else self._breaks_near(day)
            out: list[ShiftSpan] = []
            for name, first, last in self._shifts:
                start, end = self._utc(day, first), self._utc(day, last)
                planned = () if off else _subtract(start, end, cuts)
                out.append(ShiftSpan(name, day, start, end, planned))
            if len(self._spans) >= _CACHE_DATES:
                self._spans.clear()
            spans = self._spans[day] = tuple(out)
        return spans

    def _breaks_near(self, day: date) -> list[tuple[int, int]]:
        """Break times that can touch a span of `day`: those of the day before to the day after."""
        out: list[tuple[int, int]] = []
        for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
            cached = self._break_spans.get(d)
            if cached is None:
                if len(self._break_spans) >= _CACHE_DATES:
                    self._break_spans.clear()
                cached = self._break_spans[d] = [
                    (self._utc(d, a), self._utc(d, b)) for a, b in self._breaks
                ]
            out += cached
        out.sort()
        return out

    def _utc(self, day: date, minute: int) -> int:
        """A local wall time (minutes after midnight of `day`, may pass 24:00) as µs UTC."""
        day += timedelta(days=minute // DAY_MINUTES)
        minute %= DAY_MINUTES
        wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
        utc = wall.replace(tzinfo=self.tz).astimezone(UTC)  # fold=0: the first occurrence
        if utc.astimezone(self.tz).replace(tzinfo=None) != wall:
            utc = self._end_of_gap(wall)
        return us_from_datetime(utc)

    def _end_of_gap(self, wall: datetime) -> datetime:
        """The first instant after the clock jump that skipped the wall time `wall`."""
        # In a gap, fold=1 reads the wall time with the offset after the jump (an instant before
        # it) and fold=0 with the offset before (an instant after it); the jump lies in between.
        lo = int(wall.replace(tzinfo=self.tz, fold=1).timestamp())
        hi = int(wall.replace(tzinfo=self.tz, fold=0).timestamp())
        before = datetime.fromtimestamp(lo, self.tz).utcoffset()
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.tz).utcoffset() == before:
                lo = mid
            else:
                hi = mid
        return datetime.fromtimestamp(hi, UTC)


def _subtract(start: int, end: int, cuts: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """[start, end) minus the sorted intervals `cuts`."""
    out: list[tuple[int, int]] = []
    pos = start
    for a, b in cuts:
        if a >= end:
            break
        if b <= pos:
            continue
        if a > pos:
            out.append((pos, a))
        pos = b
    if pos < end:
        out.append((pos, end))
    return tuple(out)


@dataclass
class _Parsed:
    """The calendar config in minutes after local midnight, and every problem found reading it."""

    tz: ZoneInfo | None = None
    # (name, start, end) in minutes after local midnight; end > start, past 1440 when crossing it
    shifts: list[tuple[str, int, int]] = field(default_factory=list)
    breaks: list[tuple[int, int]] = field(default_factory=list)
    weekdays_off: frozenset[int] = frozenset()
    dates_off: frozenset[date] = frozenset()
    problems: list[tuple[str, str]] = field(default_factory=list)


def _parse(
    shifts: Sequence[tuple[str, str, str]],
    breaks: Sequence[tuple[str, str]],
    days_off: Sequence[str | date],
    timezone: str,
) -> _Parsed:
    out = _Parsed()
    problems = out.problems
    try:
        out.tz = _zone(timezone)
    except ValueError as exc:
        problems.append(("timezone", str(exc)))

    shifts_ok = True
    names: dict[str, int] = {}
    placed: list[tuple[int, str, int, int]] = []  # with the config position, for messages
    for i, (name, start_text, end_text) in enumerate(shifts):
        if not isinstance(name, str) or not name.strip():
            problems.append((f"shifts[{i}].name", "a shift needs a name, e.g. early"))
            shifts_ok = False
        elif name in names:
            problems.append((f"shifts[{i}].name", f'shift name "{name}" is already used by '
                             f"shifts[{names[name]}]; give each shift its own name"))
        else:
            names[name] = i
        span = _interval(f"shifts[{i}]", start_text, end_text, problems)
        if span is None:
            shifts_ok = False
            continue
        if span[0] == span[1]:
            problems.append((f"shifts[{i}]", f"shift {name} {start_text}-{end_text} has zero "
                             "length; a shift across midnight ends before it starts (22:00-06:00)"))
            shifts_ok = False
            continue
        first, last = span
        if last <= first:
            last += DAY_MINUTES
        for j, other, other_first, other_last in placed:
            where = _overlap((first, last), (other_first, other_last))
            if where:
                took = sum(b - a for a, b in where)
                at = ", ".join(f"{_clock(a)}-{_clock(b)}" for a, b in where)
                problems.append((f"shifts[{i}]", f"shifts[{i}] {name} {start_text}-{end_text} "
                                 f"overlaps shifts[{j}] {other} {shifts[j][1]}-{shifts[j][2]} "
                                 f"by {_duration(took)} ({at})"))
        placed.append((i, name, first, last))
    out.shifts = [(name, first, last) for _, name, first, last in placed]

    for i, (start_text, end_text) in enumerate(breaks):
        span = _interval(f"breaks[{i}]", start_text, end_text, problems)
        if span is None:
            continue
        first, last = span
        if first == last:
            problems.append((f"breaks[{i}]", f"break {start_text}-{end_text} has zero length"))
            continue
        if last <= first:
            last += DAY_MINUTES
        if shifts and shifts_ok and not any(
            _overlap((first, last), (a, b)) for _, a, b in out.shifts
        ):
            message = f"break {start_text}-{end_text} is outside every shift"
            problems.append((f"breaks[{i}]", message))
        out.breaks.append((first, last))

    weekdays: set[int] = set()
    dates: set[date] = set()
    for i, item in enumerate(days_off):
        try:
            day = _day_off(item)
        except ValueError as exc:
            problems.append((f"days_off[{i}]", str(exc)))
            continue
        if isinstance(day, int):
            weekdays.add(day)
        else:
            dates.add(day)
    out.weekdays_off, out.dates_off = frozenset(weekdays), frozenset(dates)
    return out


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValueError("write the plant's IANA time zone, e.g. Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    known = {zone.lower(): zone for zone in available_timezones()}
    close = difflib.get_close_matches(name.lower(), list(known), n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(known[c] for c in close)}?" if close
            else "write an IANA name such as Europe/Berlin")
    raise ValueError(f'unknown time zone "{name}"; {hint}')


def _interval(
    path: str, start: object, end: object, problems: list[tuple[str, str]]
) -> tuple[int, int] | None:
    """Both ends in minutes after midnight, or None after adding what is wrong with them."""
    ends: list[int] = []
    for key, text in (("start", start), ("end", end)):
        try:
            ends.append(_minutes(text, end=key == "end"))
        except ValueError as exc:
            problems.append((f"{path}.{key}", str(exc)))
    return (ends[0], ends[1]) if len(ends) == 2 else None


def _minutes(text: object, *, end: bool) -> int:
    if isinstance(text, int) and not isinstance(text, bool) and 60 <= text <= DAY_MINUTES:
        # YAML 1.1 reads an unquoted 14:00 as the base-60 number 840.
        clock = f"{text // 60:02d}:{text % 60:02d}"
        raise ValueError(f'got the number {text}, which is how YAML reads an unquoted {clock}; '
                         f'write "{clock}" in quotes')
    match = _TIME.fullmatch(text.strip()) if isinstance(text, str) else None
    hour, minute = (int(match[1]), int(match[2])) if match else (99, 99)
    if minute > 59 or hour > 24 or (hour == 24 and (minute or not end)):
        allowed = "00:00 to 24:00" if end else "00:00 to 23:59"
        raise ValueError(f'not a time: "{text}"; write "HH:MM" from {allowed}')
    return hour * 60 + minute


def _day_off(item: object) -> int | date:
    """A weekday number (Monday 0) or a date."""
    if isinstance(item, datetime):
        return item.date()
    if isinstance(item, date):
        return item
    text = str(item).strip()
    if _DATE.fullmatch(text):
        year, month, day = (int(part) for part in text.split("-"))
        try:
            return date(year, month, day)
        except ValueError as exc:
            raise ValueError(f'not a date: "{text}" ({exc}); write YYYY-MM-DD') from None
    weekday = _WEEKDAYS.get(text.lower())
    if weekday is not None:
        return weekday
    close = difflib.get_close_matches(text.lower(), list(_WEEKDAYS), n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f'unknown day "{text}"{hint}; write a weekday (monday or mon to sunday or '
                     "sun) or a date YYYY-MM-DD")


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Where two daily intervals (minutes, end past 1440 when crossing midnight) meet, any day."""
    out: list[tuple[int, int]] = []
    for shift in (-DAY_MINUTES, 0, DAY_MINUTES):
        lo, hi = max(a[0], b[0] + shift), min(a[1], b[1] + shift)
        if lo < hi:
            out.append((lo % DAY_MINUTES, hi - (lo - lo % DAY_MINUTES)))
    return sorted(out)


def _clock(minute: int) -> str:
    """Minutes after midnight as HH:MM; past midnight as the next day's time, midnight as 24:00."""
    minute = minute if minute <= DAY_MINUTES else minute - DAY_MINUTES
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"
