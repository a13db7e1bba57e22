"""Raw readings and time-bucket aggregates: `/api/v1/readings` and `/api/v1/readings/aggregate`,
as JSON or streamed CSV.

Each body is written by one function, whether the collector process or a worker builds it
(`api.offload`): `page_body` and `aggregate_body` (JSON), `reading_lines` and `bucket_lines`
(CSV rows under `READING_COLUMNS` and `AGGREGATE_COLUMNS`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.boundary import LedgerView, RuntimeView
from api.buckets import aggregate_windows
from api.deps import CHUNK_ROWS, offloaded, require_key, runtime
from api.lookup import resolve_series
from api.offload import Offload
from api.output import CSV_TYPE, bucket_items, csv_response, csv_text, reading_items
from api.params import (
    LIMIT_DEFAULT,
    LIMIT_MAX,
    BadParameter,
    check_buckets,
    encode_cursor,
    page_range,
    parse_bucket,
    parse_tags,
    parse_tz,
    resolve_range,
    ts_text,
)
from api.schemas import ERRORS, AggregateList, ReadingPage
from collector.ledger import BucketStats, Series
from collector.ledger.pages import PageQuery, Point
from collector.ledger.statuses import status_name

router = APIRouter(prefix="/api/v1/readings", tags=["readings"],
                   dependencies=[Depends(require_key)], responses=ERRORS)

MAX_JSON_BUCKETS = 1_000_000
CSV_PART = 20_000  # readings a worker writes out as CSV at a time
# the CSV columns: the fields of a ReadingItem and of an AggregateItem
READING_COLUMNS = ("machine", "tag", "ts", "value", "quality", "status", "status_code")
AGGREGATE_COLUMNS = ("machine", "tag", "start", "count", "min", "max", "avg", "last")
_CSV = {"content": {CSV_TYPE.split(";")[0]: {"schema": {"type": "string"}}},
        "description": "with format=csv: a header row, then one row per item"}

MachineQ = Query(..., description="machine id, e.g. press07")
TagQ = Query(None, description="tag name; repeat (or comma-separate) for several; all tags of "
             "the machine when omitted")
StartQ = Query(None, description="RFC 3339 (Z or offset) or epoch ms; default end - 1h")
EndQ = Query(None, description="RFC 3339 (Z or offset) or epoch ms, exclusive; default now")
FormatQ = Query("json", description="json, or csv for a streamed text/csv download")
IntAsQ = Query("number", description="number (default): integers as exact JSON numbers, to 64 "
               "bits and beyond; string: integers as strings of their digits, for JavaScript, "
               "whose numbers lose precision past 2^53 (CSV is text either way)")
IntAs = Literal["number", "string"]


def _file(machine: str, kind: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{machine}-{kind}.csv")


def _heads(machine: str, names: Mapping[int, str], time_field: str) -> dict[int, bytes]:
    """Each series' item up to its time: b'{"machine":"m","tag":"t","<time_field>":"'."""
    return {sid: f'{{"machine":{json.dumps(machine)},"tag":{json.dumps(tag)},'
            f'"{time_field}":"'.encode() for sid, tag in names.items()}


@router.get("", response_model=ReadingPage, summary="Raw readings, oldest first, paged",
            responses={200: _CSV}, response_model_exclude_none=True)
async def get_readings(
    machine: str = MachineQ,
    tag: list[str] | None = TagQ,
    start: str | None = StartQ,
    end: str | None = EndQ,
    limit: int = Query(LIMIT_DEFAULT, ge=1, le=LIMIT_MAX, description="rows per page"),
    cursor: str | None = Query(None, description="the `next` of the previous page"),
    format: Literal["json", "csv"] = FormatQ,
    int_as: IntAs = IntAsQ,
    rt: RuntimeView = Depends(runtime),
    offload: Offload = Depends(offloaded),
) -> Response:
    tags = parse_tags(tag)
    s, e, after = page_range(machine, tags, start, end, cursor)
    series = await resolve_series(rt, machine, tags)
    names = {x.id: x.tag for x in series}
    if format == "csv":
        return await _readings_csv(rt.ledger, offload, machine, tags, series, names, s, e,
                                   limit, after)
    heads = _heads(machine, names, "ts")
    bools = {x.id for x in series if x.kind == "bool"}
    body = await offload.answer(limit, page_body, machine, tags, heads, bools, s, e, limit, after,
                                int_as == "string")
    return Response(body, media_type="application/json")


async def page_body(ledger: LedgerView, machine: str, tags: list[str], heads: dict[int, bytes],
                    bools: set[int], s: int, e: int, limit: int,
                    after: tuple[int, int] | None, ints_as_text: bool = False) -> bytes:
    """The `ReadingPage` of the series in `heads` (in a worker process when there are any:
    `api.offload`); integers as strings with `ints_as_text`."""
    page = await ledger.pages.columns(PageQuery(tuple(heads), s, e, limit + 1, after))
    next_cursor = None
    if len(page) > limit:
        page = page.slice(0, limit)
        next_cursor = encode_cursor(machine, tags, s, e, (page.ts[-1], page.series_at(limit - 1)))
    parts = [b'{"items":[']
    for i in range(0, len(page), CHUNK_ROWS):
        if i:
            await asyncio.sleep(0)  # let the sources and the writer have a turn
            parts.append(b",")
        parts += reading_items(page.slice(i, i + CHUNK_ROWS), heads, bools, ints_as_text)
    parts.append(b'],"next":' + json.dumps(next_cursor).encode() + b"}")
    return b"".join(parts)


def reading_lines(machine: str, names: Mapping[int, str], points: Sequence[Point]) -> str:
    """CSV rows of `points`, under `READING_COLUMNS`."""
    return csv_text([(machine, names[p.series_id], ts_text(p.ts), p.value, p.quality.label,
                      *_status_cells(p.status)) for p in points])


def _status_cells(status: int | None) -> tuple[str | None, int | None]:
    return (None, None) if status is None else (status_name(status), status)


async def _readings_csv(ledger: LedgerView, offload: Offload, machine: str, tags: list[str],
                        series: list[Series], names: dict[int, str], s: int, e: int,
                        limit: int, after: tuple[int, int] | None) -> Response:
    # the page's last key is found first, so the next cursor can go in a header
    last = await ledger.pages.end(PageQuery.of(series, s, e, limit, after))
    headers = {"X-Next-Cursor": encode_cursor(machine, tags, s, e, last)} if last else {}
    stop_end = last[0] + 1 if last else e
    if offload.sends(limit):
        # written by the workers, CSV_PART rows at a time, each part a keyset page after the
        # one before: the stream never holds more than a part
        async def parts() -> AsyncIterator[str]:
            yield csv_text([READING_COLUMNS])
            key, sent = after, 0
            while True:
                n = CSV_PART if last is not None else min(CSV_PART, limit - sent)
                text, key, count, passed = await offload.run(
                    csv_part, machine, series, names, s, stop_end, key, n, last)
                yield text
                sent += count
                if passed or count < n or (last is None and sent >= limit):
                    return

        return csv_response(parts(), _file(machine, "readings"), headers)

    async def chunks() -> AsyncIterator[str]:
        """Written here as the rows come out of the ledger, CHUNK_ROWS at a time."""
        yield csv_text([READING_COLUMNS])
        held: list[Point] = []
        n = 0
        async for p in ledger.pages.points(PageQuery.of(series, s, stop_end, 2**62, after)):
            if last is not None and (p.ts, p.series_id) > last:
                break
            if last is None and n >= limit:
                break
            n += 1
            held.append(p)
            if len(held) >= CHUNK_ROWS:
                yield reading_lines(machine, names, held)
                held = []
        yield reading_lines(machine, names, held)

    return csv_response(chunks(), _file(machine, "readings"), headers)


async def csv_part(ledger: LedgerView, machine: str, series: list[Series], names: dict[int, str],
                   s: int, end: int, after: tuple[int, int] | None, n: int,
                   last: tuple[int, int] | None) -> tuple[str, tuple[int, int] | None, int, bool]:
    """Up to `n` readings after `after` as CSV lines, none past `last` (in a worker process:
    `api.offload`): (text, the key of its last row, rows, whether `last` was passed)."""
    points: list[Point] = []
    async for p in ledger.pages.points(PageQuery.of(series, s, end, n, after)):
        if last is not None and (p.ts, p.series_id) > last:
            return reading_lines(machine, names, points), _key(points, after), len(points), True
        points.append(p)
    return reading_lines(machine, names, points), _key(points, after), len(points), False


def _key(points: Sequence[Point], after: tuple[int, int] | None) -> tuple[int, int] | None:
    """The page key of the last of `points` (`after` when there are none)."""
    return (points[-1].ts, points[-1].series_id) if points else after


@router.get("/aggregate", response_model=AggregateList, responses={200: _CSV},
            summary="count/min/max/avg/last per time bucket, empty buckets omitted")
async def get_aggregate(
    machine: str = MachineQ,
    tag: list[str] | None = TagQ,
    start: str | None = StartQ,
    end: str | None = EndQ,
    bucket: str = Query("1m", description="1s to 1d: 30s, 1m, 5m, 15m, 1h, 1d, ..."),
    tz: str | None = Query(None, description="IANA time zone (Europe/Berlin) that buckets, "
                           "day buckets above all, are aligned to; default UTC"),
    format: Literal["json", "csv"] = FormatQ,
    int_as: IntAs = IntAsQ,
    rt: RuntimeView = Depends(runtime),
    offload: Offload = Depends(offloaded),
) -> Response:
    tags = parse_tags(tag)
    bucket_us = parse_bucket(bucket)
    zone = parse_tz(tz)
    s, e = resolve_range(start, end)
    per_series = check_buckets(s, e, bucket_us)
    series = await resolve_series(rt, machine, tags)
    names = {x.id: x.tag for x in series}
    if format == "csv":
        if zone is None and offload.sends(per_series * len(series)):
            # UTC buckets never straddle two parts cut at bucket boundaries, so the workers
            # can write them a time range at a time (a local day may come in two pieces
            # that are merged: those stay in the collector process)
            step = max(1, CSV_PART // max(1, len(series))) * bucket_us

            async def parts() -> AsyncIterator[str]:
                yield csv_text([AGGREGATE_COLUMNS])
                lo = s
                while lo < e:
                    hi = min(max(lo, 0) - max(lo, 0) % bucket_us + step, e)
                    text = await offload.run(aggregate_csv, machine, series, names, lo, hi,
                                             bucket_us)
                    if text:
                        yield text
                    lo = hi

            return csv_response(parts(), _file(machine, "aggregate"))

        async def chunks() -> AsyncIterator[str]:
            """Written here as the buckets come out of the ledger, CHUNK_ROWS at a time."""
            yield csv_text([AGGREGATE_COLUMNS])
            async for window in aggregate_windows(rt.ledger, series, s, e, bucket_us, zone):
                for i in range(0, len(window), CHUNK_ROWS):
                    yield bucket_lines(machine, names, window[i:i + CHUNK_ROWS])

        return csv_response(chunks(), _file(machine, "aggregate"))
    if per_series * len(series) > MAX_JSON_BUCKETS:
        raise BadParameter(
            f"the answer could hold {per_series * len(series)} buckets ({len(series)} tags x "
            f"{per_series}); JSON answers hold at most {MAX_JSON_BUCKETS}: choose fewer tags, "
            "a larger bucket or a shorter range, or use format=csv")
    heads = _heads(machine, names, "start")
    body = await offload.answer(per_series * len(series), aggregate_body, series, s, e,
                                bucket_us, zone, heads, int_as == "string")
    return Response(body, media_type="application/json")


def bucket_lines(machine: str, names: Mapping[int, str], buckets: Sequence[BucketStats]) -> str:
    """CSV rows of `buckets`, under `AGGREGATE_COLUMNS`."""
    return csv_text([(machine, names[b.series_id], ts_text(b.start), b.count, b.min, b.max,
                      b.avg, b.last) for b in buckets])


async def aggregate_csv(ledger: LedgerView, machine: str, series: list[Series],
                        names: dict[int, str], s: int, e: int, bucket_us: int) -> str:
    """The UTC buckets of [s, e) as CSV lines (in a worker process: `api.offload`)."""
    return "".join([bucket_lines(machine, names, window) async for window
                    in aggregate_windows(ledger, series, s, e, bucket_us, None)])


async def aggregate_body(ledger: LedgerView, series: list[Series], s: int, e: int,
                         bucket_us: int, zone: ZoneInfo | None, heads: dict[int, bytes],
                         ints_as_text: bool = False) -> bytes:
    """The `AggregateList` of `series` (in a worker process when there are any:
    `api.offload`); integers as strings with `ints_as_text`."""
    parts = [b'{"items":[']
    first = True
    async for window in aggregate_windows(ledger, series, s, e, bucket_us, zone):
        for i in range(0, len(window), CHUNK_ROWS):
            if i:
                await asyncio.sleep(0)  # let the sources and the writer have a turn
            items = bucket_items(window[i:i + CHUNK_ROWS], heads, ints_as_text)
            if items:
                if not first:
                    parts.append(b",")
                parts += items
                first = False
    parts.append(b"]}")
    return b"".join(parts)
