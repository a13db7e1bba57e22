"""Fast JSON and streamed CSV pieces for the large answers (pages of readings, buckets).

Pages of up to 100,000 rows are written straight to JSON text rather than through pydantic
models (the models describe them in the OpenAPI document, and `tests/test_api_boundary.py`
holds every answer to its model); CSV is sent chunk by chunk while the rows come out of the
database, so an export never sits whole in memory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
from collections.abc import AsyncIterator, Iterable, Sequence
from itertools import chain, repeat
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

from api.params import ts_text
from collector.ledger.aggregates import BucketStats
from collector.ledger.exact import exact_value
from collector.ledger.pages import PageColumns
from collector.ledger.statuses import status_name

CSV_TYPE = "text/csv; charset=utf-8"
QUALITY = ("good", "uncertain", "bad")


def value_json(value: float | None, text: str | None, kind: str | None,
               value_int: int | bytes | None = None, ints_as_text: bool = False) -> str:
    """A stored value as JSON text, as `collector.ledger.pages.present` shows it; an integer
    reading's exact value (a JSON string of its digits with `ints_as_text`)."""
    if text is not None:
        return json.dumps(text, ensure_ascii=False)
    if value_int is not None:
        digits = str(exact_value(value, value_int))
        return f'"{digits}"' if ints_as_text else digits
    if value is None or not math.isfinite(value):
        return "null"
    if kind == "bool":
        return "false" if value == 0.0 else "true"
    return repr(float(value))


def status_json(status: int | None) -> str:
    """`,"status":"<name>","status_code":<code>` of a reading with a status code, else ""."""
    if status is None:
        return ""
    return f',"status":{json.dumps(status_name(status))},"status_code":{status}'


def ints_as_strings(values: Sequence[Any]) -> list[Any]:
    """The values with each integer (and the digits of a wide one) as text."""
    return [str(v) if v.__class__ is int else v.decode() if v.__class__ is bytes else v
            for v in values]


class _MinuteText(dict[int, bytes]):
    """b"2026-11-21T10:15:" of each minute since the epoch, made when first asked for."""

    def __missing__(self, minute: int) -> bytes:
        text = ts_text(minute * 60_000_000)[:-7].encode()  # without "SS.mmmZ"
        self[minute] = text
        return text


_MINUTES = _MinuteText()
_MINUTES_KEPT = 100_000  # ~70 days of minutes, ~12 MB at most
_SECOND_MS: list[bytes] = []  # b"SS.mmmZ" for each millisecond of a minute


def ts_texts(tss: Sequence[int]) -> Iterable[bytes]:
    """`ts_text` of each timestamp (µs) as bytes, with no Python code run per row: the
    minute's text from a cache, the rest from a table of the 60,000 milliseconds of a
    minute (made on first use)."""
    if not _SECOND_MS:
        _SECOND_MS.extend(f"{s:02d}.{ms:03d}Z".encode() for s in range(60) for ms in range(1000))
    if len(_MINUTES) > _MINUTES_KEPT:
        _MINUTES.clear()
    ms = list(map(operator.floordiv, tss, repeat(1000)))
    return map(operator.add,
               map(_MINUTES.__getitem__, map(operator.floordiv, ms, repeat(60_000))),
               map(_SECOND_MS.__getitem__, map(operator.mod, ms, repeat(60_000))))


def _value_bytes(value: Any) -> bytes:
    """One value as JSON (number, text or null; NaN and infinity as null); the digits of a
    wide integer (`collector.ledger.exact`) are its JSON number."""
    if value.__class__ is bytes:
        return value
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # text orjson refuses (a lone surrogate), an int past 64 bits
        return json.dumps(value).encode()


def _bool_bytes(value: Any) -> bytes:
    """A value of a bool series: its text if it has one, else false/true (null if none)."""
    if value.__class__ is float and math.isfinite(value):
        return b"false" if value == 0.0 else b"true"
    return _value_bytes(value)


def value_texts(values: Sequence[Any], bools: Iterable[bool] | None = None,
                ints_as_text: bool = False) -> list[bytes]:
    """Each value (number, text or None) as JSON, the same text `value_json` gives but with
    floats with the shortest digits that read back exactly, as repr() finds them, from
    orjson (small numbers may be written 1e-7 or 0.00001 where repr writes 1e-07 or
    1e-05, the same double); integers exactly, as strings with `ints_as_text`.
    `bools` marks the values of bool series, shown as false/true."""
    if ints_as_text:
        values = ints_as_strings(values)
    if bools is not None:
        return [_bool_bytes(v) if b else _value_bytes(v) for v, b in zip(values, bools, strict=False)]  # bools may repeat
    if not values:
        return []
    try:  # one call for the whole column, split at the commas between the values
        texts = orjson.dumps(values)[1:-1].split(b",")
        if len(texts) == len(values):
            return texts
    except orjson.JSONEncodeError:
        pass
    return list(map(_value_bytes, values))  # a text holds a comma, or orjson refused one (the
    # digits of a wide integer, bytes, among them)


QUALITY_TAILS = [f',"quality":"{q}"}}'.encode() for q in QUALITY]


def quality_tail(quality: int, status: int | None) -> bytes:
    """The end of an item: its quality and, when it has one, its status."""
    if status is None:
        return QUALITY_TAILS[quality]
    return f',"quality":"{QUALITY[quality]}"{status_json(status)}}}'.encode()


def reading_items(page: PageColumns, heads: dict[int, bytes], bools: set[int],
                  ints_as_text: bool = False) -> list[bytes]:
    """The pieces of `{"machine":..,"tag":..,"ts":..,"value":..,"quality":..}` items of a page
    (and `"status"`, `"status_code"` where a reading has them), separated by commas; `heads`
    is each series' b'{"machine":"m","tag":"t","ts":"'. Every column is turned to text in one
    pass of C code, not an f-string per row."""
    n = len(page)
    if not n:
        return []
    if page.series_ids is None:
        row_heads: Iterable[bytes] = repeat(heads[page.single])  # type: ignore[index]
        flags: Iterable[bool] | None = repeat(True, n) if page.single in bools else None
    else:
        row_heads = map(heads.__getitem__, page.series_ids)
        flags = map(bools.__contains__, page.series_ids) if bools else None
    tails = (map(QUALITY_TAILS.__getitem__, page.qualities) if page.statuses is None
             else map(quality_tail, page.qualities, page.statuses))
    pieces = list(chain.from_iterable(zip(
        repeat(b","), row_heads, ts_texts(page.ts), repeat(b'","value":'),
        value_texts(page.values, flags, ints_as_text), tails)))
    del pieces[0]  # no comma before the first item
    return pieces


def bucket_items(buckets: Sequence[BucketStats], heads: dict[int, bytes],
                 ints_as_text: bool = False) -> list[bytes]:
    """The pieces of `{"machine":..,"tag":..,"start":..,"count":..,"min":..,"max":..,
    "avg":..,"last":..}` items of aggregate buckets (`BucketStats`), separated by commas;
    `heads` is each series' b'{"machine":"m","tag":"t","start":"'. Column by column in C
    code, as `reading_items`; min/max/avg/last that are NaN or infinite show as null; with
    `ints_as_text` an integer min, max or last is a string of its digits."""
    if not buckets:
        return []

    def column(name: str) -> list[Any]:
        return list(map(operator.attrgetter(name), buckets))

    pieces = list(chain.from_iterable(zip(
        repeat(b","), map(heads.__getitem__, column("series_id")), ts_texts(column("start")),
        repeat(b'","count":'), value_texts(column("count")),
        repeat(b',"min":'), value_texts(column("min"), None, ints_as_text),
        repeat(b',"max":'), value_texts(column("max"), None, ints_as_text),
        repeat(b',"avg":'), value_texts(column("avg")),
        repeat(b',"last":'), value_texts(column("last"), None, ints_as_text), repeat(b"}"))))
    del pieces[0]  # no comma before the first item
    return pieces


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if value.__class__ is bytes:  # the digits of a wide integer
        return value.decode()
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value.__class__ is float and not math.isfinite(value):
        return ""
    return value


def csv_text(rows: Iterable[Iterable[Any]]) -> str:
    """CSV lines of `rows`, cells as `csv_cell` shows them."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def csv_response(chunks: AsyncIterator[str], filename: str,
                 headers: dict[str, str] | None = None) -> StreamingResponse:
    """CSV text sent as `chunks` come, shown inline as `filename`."""
    return StreamingResponse(chunks, media_type=CSV_TYPE, headers={
        "Content-Disposition": f'inline; filename="{filename}"', **(headers or {})})
