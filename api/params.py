"""Query-parameter parsing shared by the read endpoints: times, ranges, buckets, time zones,
tag lists and the opaque paging cursor.

Every parser raises `BadParameter` with a message that names the parameter, repeats what was
given and says what is accepted; the app turns it into a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from collector.model import NotAnInstant, now_us, parse_instant

US_PER_MS = 1_000
US_PER_S = 1_000_000
HOUR_US = 3600 * US_PER_S
DAY_US = 86_400 * US_PER_S

DEFAULT_SPAN_US = HOUR_US
LIMIT_DEFAULT = 1000
LIMIT_MAX = 100_000
BUCKET_MIN_US = US_PER_S
BUCKET_MAX_US = DAY_US
MAX_BUCKETS_PER_SERIES = 100_000
MAX_TAGS = 2000

_BUCKET = re.compile(r"^\s*(\d{1,9})\s*(ms|s|m|h|d)\s*$")
_UNIT_US = {"ms": US_PER_MS, "s": US_PER_S, "m": 60 * US_PER_S, "h": HOUR_US, "d": DAY_US}


class BadParameter(ValueError):
    """A query parameter the API cannot use; the message is shown to the caller."""


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def parse_time(name: str, text: str) -> int:
    """RFC 3339 (with `Z` or an offset) or integer epoch milliseconds → epoch µs."""
    try:
        return parse_instant(text)
    except NotAnInstant as exc:
        raise BadParameter(f"{name}={_shown(text)} {exc}") from None


def resolve_range(start: str | None, end: str | None, now: int | None = None) -> tuple[int, int]:
    """The [start, end) range in µs; end defaults to now and start to end minus one hour."""
    end_us = parse_time("end", end) if end is not None else (now if now is not None else now_us())
    start_us = parse_time("start", start) if start is not None else end_us - DEFAULT_SPAN_US
    if start_us >= end_us:
        raise BadParameter(f"start ({start if start is not None else 'end - 1h'}) must be "
                           f"earlier than end ({end if end is not None else 'now'})")
    return start_us, end_us


def parse_bucket(text: str) -> int:
    """`1s`..`1d` (also `500ms`-style and Grafana interval strings such as `30s`, `5m`) → µs."""
    m = _BUCKET.match(text)
    if not m:
        raise BadParameter(
            f"bucket={_shown(text)} is not a duration: give a number and a unit, ms, s, m, h "
            "or d, such as 30s, 1m, 15m, 1h or 1d")
    us = int(m.group(1)) * _UNIT_US[m.group(2)]
    if not BUCKET_MIN_US <= us <= BUCKET_MAX_US:
        raise BadParameter(f"bucket={_shown(text)} is out of range: buckets go from 1s to 1d")
    return us


def parse_tz(text: str | None) -> ZoneInfo | None:
    """An IANA time-zone name (`Europe/Berlin`), or None for UTC."""
    if text is None or text.strip() in ("", "UTC", "Z", "Etc/UTC"):
        return None
    try:
        return ZoneInfo(text.strip())
    except Exception:  # ZoneInfoNotFoundError, ValueError for paths, ...: all mean "unknown"
        raise BadParameter(
            f"tz={_shown(text)} is not a known time zone: use an IANA name such as "
            "Europe/Berlin, America/Chicago or UTC") from None


def parse_tags(values: Sequence[str] | None) -> list[str]:
    """`tag` may repeat and may hold a comma-separated list; order kept, duplicates dropped."""
    out: list[str] = []
    for value in values or ():
        for name in value.split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    if len(out) > MAX_TAGS:
        raise BadParameter(f"tag is given {len(out)} times: at most {MAX_TAGS} tags per request")
    return out


def check_buckets(start: int, end: int, bucket: int) -> int:
    """The number of buckets per series; too many is a 400 rather than a huge answer."""
    n = -(-(end - start) // bucket)
    if n > MAX_BUCKETS_PER_SERIES:
        raise BadParameter(
            f"the range holds {n} buckets per tag; at most {MAX_BUCKETS_PER_SERIES}: "
            "choose a larger bucket or a shorter range")
    return n


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last (ts, series id) returned and the range it belongs to."""

    ts: int
    series_id: int
    start: int
    end: int
    digest: str


def query_digest(machine: str, tags: Sequence[str], start: int, end: int) -> str:
    key = "\x00".join([machine, ",".join(sorted(tags)) or "*", str(start), str(end)])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def encode_cursor(machine: str, tags: Sequence[str], start: int, end: int,
                  after: tuple[int, int]) -> str:
    digest = query_digest(machine, tags, start, end)
    raw = f"1:{after[0]}:{after[1]}:{start}:{end}:{digest}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> Cursor:
    bad = BadParameter(f"cursor={_shown(text)} is not a cursor this API gave out: pass the "
                       "`next` value of the previous page unchanged, or leave cursor out")
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4)).decode()
        version, ts, sid, start, end, digest = raw.split(":")
        cursor = Cursor(int(ts), int(sid), int(start), int(end), digest)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if version != "1" or not 0 <= cursor.start < cursor.end or not all(
            abs(v) < 2**62 for v in (cursor.ts, cursor.series_id, cursor.end)):
        raise bad
    return cursor


def page_range(machine: str, tags: Sequence[str], start: str | None, end: str | None,
               cursor: str | None) -> tuple[int, int, tuple[int, int] | None]:
    """(start µs, end µs, resume key). With a cursor, the range is the first page's unless
    start/end are given again; a cursor from another query is refused."""
    if cursor is None:
        s, e = resolve_range(start, end)
        return s, e, None
    c = decode_cursor(cursor)
    s = parse_time("start", start) if start is not None else c.start
    e = parse_time("end", end) if end is not None else c.end
    if query_digest(machine, tags, s, e) != c.digest:
        raise BadParameter(
            "cursor belongs to a different query: machine, tag, start and end must stay as they "
            "were for the first page (or leave start and end out); start again without cursor")
    return s, e, (c.ts, c.series_id)


_DAYS: dict[int, str] = {}
_HM = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SS = [f"{s:02d}." for s in range(60)]
_MS = [f"{ms:03d}Z" for ms in range(1000)]


def ts_text(ts: int) -> str:
    """A timestamp (µs) as answers show it: the text of `collector.model.format_ts`, with each
    day's part kept, as large pages repeat it."""
    sec, us = divmod(ts, US_PER_S)
    day, sod = divmod(sec, 86_400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%dT")
        if len(_DAYS) > 4096:
            _DAYS.clear()
        _DAYS[day] = prefix
    return prefix + _HM[sod // 60] + _SS[sod % 60] + _MS[us // 1000]
