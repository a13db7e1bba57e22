"""Time buckets over a range, in UTC or in a local time zone, computed by the ledger in SQL.

The range is cut where the zone's UTC offset changes (DST) and into windows of whole buckets,
each one SQL aggregate; a bucket cut by an offset change (a 23 h or 25 h local day) comes back
in two parts, which are merged here, so each local day is one bucket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from api.boundary import LedgerView
from collector.ledger import BucketStats, Series
from collector.ledger.aggregates import merge_stats
from collector.model import datetime_from_us, us_from_datetime

US_PER_S = 1_000_000
ROWS_PER_WINDOW = 50_000
_LAST_SAFE = 253_402_041_600 * US_PER_S  # 9999-12-29T00:00:00Z
_PROBE_STEP = 7 * 86_400 * US_PER_S  # offsets change at most once a week in every real zone


def utc_offset(tz: ZoneInfo | None, ts: int) -> int:
    """The zone's UTC offset at instant `ts`, in µs."""
    if tz is None:
        return 0
    ts = min(max(ts, 0), _LAST_SAFE)  # a local time past 9999-12-31 cannot be represented
    off = datetime.fromtimestamp(ts // US_PER_S, UTC).astimezone(tz).utcoffset()
    return int(off.total_seconds()) * US_PER_S if off is not None else 0


def offset_segments(tz: ZoneInfo | None, start: int, end: int) -> list[tuple[int, int, int]]:
    """[(seg_start, seg_end, offset µs)] covering [start, end) with one offset each."""
    if tz is None:
        return [(start, end, 0)]
    segments = []
    seg_start, offset = start, utc_offset(tz, start)
    probe = start
    while probe < end:
        nxt = min(probe + _PROBE_STEP, end)
        off = utc_offset(tz, nxt if nxt < end else end - 1)
        if off != offset:
            lo, hi = probe, nxt  # offset(lo) == offset, offset(hi) != offset: bisect to 1 s
            while hi - lo > US_PER_S:
                mid = (lo + hi) // 2
                if utc_offset(tz, mid) == offset:
                    lo = mid
                else:
                    hi = mid
            change = hi - hi % US_PER_S
            segments.append((seg_start, change, offset))
            seg_start, offset = change, utc_offset(tz, change)
            probe = change
            continue
        probe = nxt
    segments.append((seg_start, end, offset))
    return [s for s in segments if s[0] < s[1]]


def _bucket_start(start: int, offset: int, tz: ZoneInfo | None) -> int:
    """The UTC instant at which a local bucket begins; SQL computed it with the offset of the
    segment, which is wrong when the bucket began before an offset change."""
    if tz is None or utc_offset(tz, start) == offset:
        return start
    try:
        local = datetime_from_us(start + offset).replace(tzinfo=None)
        return us_from_datetime(local.replace(tzinfo=tz))
    except (OverflowError, ValueError):  # at the very end of year 9999
        return start


async def aggregate_windows(
    ledger: LedgerView, series: Sequence[Series], start: int, end: int, bucket: int,
    tz: ZoneInfo | None = None,
) -> AsyncIterator[list[BucketStats]]:
    """Yields buckets oldest first (series in the given order within a bucket), a window of
    at most ~ROWS_PER_WINDOW rows at a time, so a caller can stream them."""
    if not series:
        return
    order = {s.id: i for i, s in enumerate(series)}
    per_window = max(1, ROWS_PER_WINDOW // len(series)) * bucket
    held: list[BucketStats] = []
    start = max(start, 0)  # nothing is stored before 1970; keeps the SQL division a floor
    for seg_start, seg_end, offset in offset_segments(tz, start, end):
        sql_offset = offset % bucket
        lo = seg_start
        while lo < seg_end:
            aligned = lo - (lo + sql_offset) % bucket  # start of the bucket holding lo
            hi = min(aligned + per_window, seg_end)
            rows = await ledger.aggregates.buckets(series, lo, hi, bucket, sql_offset)
            lo = hi
            if not rows:
                continue
            if tz is not None:
                rows = [_restart(r, _bucket_start(r.start, offset, tz)) for r in rows]
            if len(order) > 1:  # the ledger gives one series' buckets in order already
                rows.sort(key=lambda r: (r.start, order[r.series_id]))
            if held:  # the previous window's last bucket may continue here (offset change)
                first = rows[0].start
                if held[0].start == first:
                    parts = {r.series_id: r for r in held}
                    rows = [merge_stats(parts.pop(r.series_id), r)
                            if r.start == first and r.series_id in parts else r for r in rows]
                    rows += parts.values()
                    rows.sort(key=lambda r: (r.start, order[r.series_id]))
                else:
                    yield held
                held = []
            last = rows[-1].start
            cut = len(rows) - 1  # the last bucket's rows are at the end: scan back only
            while cut > 0 and rows[cut - 1].start == last:
                cut -= 1
            held, body = rows[cut:], rows[:cut]
            if body:
                yield body
    if held:
        yield held


def _restart(row: BucketStats, start: int) -> BucketStats:
    if row.start == start:
        return row
    return BucketStats(row.series_id, start, row.count, row.values, row.min, row.max, row.avg,
                       row.last, row.last_ts)
