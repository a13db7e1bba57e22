"""The one reading shape every protocol produces, and the health every source reports.

A `Reading` is a plain named tuple so that an adapter can make tens of thousands per second
without allocating more than one small object each. Timestamps are integer microseconds since
the Unix epoch, UTC: exact, cheap to compare, and the ledger's storage format.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, NamedTuple

from collector.sources.failures import FailureLog

Value = float | int | bool | str | None


class Quality(IntEnum):
    """How far a value can be trusted; stored as this small integer."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Quality:
        return cls[text.upper()]


GOOD = Quality.GOOD
UNCERTAIN = Quality.UNCERTAIN
BAD = Quality.BAD


class Reading(NamedTuple):
    """One value of one tag of one machine at one instant."""

    machine: str
    tag: str
    ts: int  # microseconds since the epoch, UTC
    value: Value
    quality: Quality = GOOD
    status: int | None = None  # the source's own status code (OPC UA StatusCode) unless plain good


def good_readings(machine: str, tags: Sequence[str], ts: int, values: Iterable[Value]
                  ) -> list[Reading]:
    """GOOD readings of one machine at one instant, one per tag and value, built by the tuple
    constructor itself: `Reading(...)` runs the named tuple's Python-level `__new__`, which
    was a third of what a polled reading cost before it reached the pipeline."""
    new = tuple.__new__
    return [new(Reading, (machine, tag, ts, value, GOOD, None))
            for tag, value in zip(tags, values, strict=True)]


def now_us() -> int:
    """The current time as epoch microseconds (UTC)."""
    return time.time_ns() // 1000


def us_from_datetime(dt: datetime) -> int:
    """Epoch microseconds of an aware datetime; a naive one is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# 0001-01-01 .. 9999-12-31 as epoch ms: what a datetime (and so every answer) can show
MS_MIN = -62_135_596_800_000
MS_MAX = 253_402_300_799_999
_EPOCH_MS = re.compile(r"^-?\d{1,16}$")


# what to say about a text that is not an instant, after the caller has named what was given
_INSTANT_PROBLEMS = {
    "not a time": "is not a time: give RFC 3339 such as 2026-11-22T08:00:00Z or "
                  "2026-11-22T09:00:00+01:00, or integer epoch milliseconds",
    "no time zone": "has no time zone: add Z for UTC or an offset such as +01:00",
    "out of range": "is outside the years 1 to 9999",
}


class NotAnInstant(ValueError):
    """Why a text given for a time is not one: `problem` is "not a time", "no time zone" or
    "out of range"; the message says it and what to give instead, for the API and the
    command line to put after the name of what was given."""

    def __init__(self, problem: str):
        super().__init__(_INSTANT_PROBLEMS[problem])
        self.problem = problem


def parse_instant(text: str) -> int:
    """RFC 3339 (with `Z` or an offset) or integer epoch milliseconds, as epoch µs, within
    the years 1 to 9999; raises `NotAnInstant` otherwise."""
    raw = text.strip()
    if _EPOCH_MS.match(raw):
        ms = int(raw)
        if not MS_MIN <= ms <= MS_MAX:
            raise NotAnInstant("out of range")
        return ms * 1000
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise NotAnInstant("not a time") from None
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise NotAnInstant("no time zone")
    try:
        us = us_from_datetime(dt)
    except OverflowError:
        raise NotAnInstant("out of range") from None
    if not MS_MIN * 1000 <= us < (MS_MAX + 1) * 1000:  # an offset past either end, in UTC
        raise NotAnInstant("out of range")
    return us


def datetime_from_us(ts: int) -> datetime:
    return datetime.fromtimestamp(ts // 1_000_000, UTC).replace(microsecond=ts % 1_000_000)


def format_ts(ts: int) -> str:
    """RFC 3339 UTC with millisecond precision and a `Z`, as the API promises."""
    dt = datetime_from_us(ts)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BucketCounts:
    """A cumulative histogram in the Prometheus sense, without a registry: cheap to observe
    from the hot path, read at scrape time."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break

    def cumulative(self) -> list[tuple[str, int]]:
        """[(le, cumulative count)], ending with +Inf, as Prometheus expects."""
        out, total = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            total += n
            out.append((repr(float(bound)), total))
        out.append(("+Inf", self.count))
        return out


RECENT_ERRORS = 8
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class SourceHealth:
    """What one source reports about itself; the runtime and the API read it live."""

    machine: str
    source: str
    protocol: str
    connected: bool = False
    last_ok: int | None = None  # epoch µs of the last good read or message
    last_error: str | None = None
    last_error_at: int | None = None
    reads: int = 0  # successful reads, messages or notifications
    errors: int = 0
    readings: int = 0  # readings handed to the pipeline
    restarts: int = 0
    scan_time: float | None = None  # seconds the last scan took (polling sources)
    extra: dict[str, object] = field(default_factory=dict)
    scan_seconds: BucketCounts = field(default_factory=lambda: BucketCounts(SECONDS_BUCKETS))
    # the log lines of this source's failures (a warning when they start, one a minute after)
    failures: FailureLog = field(init=False, repr=False, compare=False)
    # the last few distinct error messages with when each last happened (epoch µs), newest last
    recent_errors: deque[tuple[int, str]] = field(
        default_factory=lambda: deque(maxlen=RECENT_ERRORS), repr=False, compare=False)
    # which tags are bad or stale (collector.taghealth.TagWatch), set by the runtime
    tags: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.failures = FailureLog(self.machine, self.source)

    def __setattr__(self, name: str, value: object) -> None:
        # every scan time an adapter reports also feeds the scan-time histogram
        if name == "scan_time" and isinstance(value, float | int):
            self.scan_seconds.observe(float(value))
        object.__setattr__(self, name, value)

    def ok(self, readings: int = 0, *, clean: bool = True) -> None:
        """A good read; `clean=False` when part of it failed (a refused block), so the
        source is not logged as recovered."""
        self.connected = True
        self.last_ok = now_us()
        self.reads += 1
        self.readings += readings
        if clean:
            self.failures.recovered()

    def error(self, message: str, *, connected: bool | None = None) -> None:
        """A failure: counted, kept as the last error, and logged (rate-limited)."""
        self.errors += 1
        self.last_error = message
        self.last_error_at = at = now_us()
        recent = self.recent_errors
        if not recent or recent[-1][1] != message:
            for i, (_, seen) in enumerate(recent):
                if seen == message:
                    del recent[i]
                    break
        else:
            recent.pop()
        recent.append((at, message))
        if connected is not None:
            self.connected = connected
        self.failures.failed(message)

    def as_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "source": self.source,
            "protocol": self.protocol,
            "connected": self.connected,
            "last_ok": format_ts(self.last_ok) if self.last_ok else None,
            "last_error": self.last_error,
            "last_error_at": format_ts(self.last_error_at) if self.last_error_at else None,
            "reads": self.reads,
            "errors": self.errors,
            "readings": self.readings,
            "restarts": self.restarts,
            "scan_time": self.scan_time,
            **({"details": self.extra} if self.extra else {}),
        }
