"""The one reading shape every protocol produces, and the health every source reports.

A `Reading` is a plain named tuple so that an adapter can make tens of thousands per second
without allocating more than one small object each. Timestamps are integer microseconds since
the Unix epoch, UTC: exact, cheap to compare, and the ledger's storage format.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import NamedTuple

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


def now_us() -> int:
    """The current time as epoch microseconds (UTC)."""
    return time.time_ns() // 1000


def us_from_datetime(dt: datetime) -> int:
    """Epoch microseconds of an aware datetime; a naive one is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def datetime_from_us(ts: int) -> datetime:
    return datetime.fromtimestamp(ts // 1_000_000, UTC).replace(microsecond=ts % 1_000_000)


def format_ts(ts: int) -> str:
    """RFC 3339 UTC with millisecond precision and a `Z`, as the API promises."""
    dt = datetime_from_us(ts)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def apply_scale(value: Value, scale: float, offset: float) -> Value:
    """`raw * scale + offset` for numbers; bools and text pass through untouched."""
    if scale == 1.0 and offset == 0.0:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    result = value * scale + offset
    if isinstance(value, int) and isinstance(scale, int) and isinstance(offset, int):
        return int(result)
    return result


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

    def ok(self, readings: int = 0) -> None:
        self.connected = True
        self.last_ok = now_us()
        self.reads += 1
        self.readings += readings

    def error(self, message: str, *, connected: bool | None = None) -> None:
        self.errors += 1
        self.last_error = message
        self.last_error_at = now_us()
        if connected is not None:
            self.connected = connected

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
