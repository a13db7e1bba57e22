"""Fast JSON and streamed CSV bodies for the large answers (pages of readings, buckets).

Pages of up to 100,000 rows are written straight to JSON text rather than through pydantic
models (the models still describe them in the OpenAPI document); CSV is produced chunk by
chunk while the rows come out of the database, so an export never sits whole in memory.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from fastapi.responses import StreamingResponse

from collector.model import Value

CSV_TYPE = "text/csv; charset=utf-8"
_FLUSH_ROWS = 2000


def clean(value: Value) -> Value:
    """JSON has no NaN or infinity: such a stored float is shown as null."""
    if value.__class__ is float and not math.isfinite(value):
        return None
    return value


QUALITY = ("good", "uncertain", "bad")


def value_json(value: float | None, text: str | None, kind: str | None) -> str:
    """A stored value as JSON text, as `collector.ledger.queries.present` shows it."""
    if text is not None:
        return json.dumps(text, ensure_ascii=False)
    if value is None or not math.isfinite(value):
        return "null"
    if kind == "bool":
        return "false" if value == 0.0 else "true"
    return repr(float(value))


def num_json(value: float | None) -> str:
    """A float or None as JSON text; NaN and infinity as null (their repr ends in n or f,
    a finite float's in a digit)."""
    if value is None:
        return "null"
    text = repr(value)
    return "null" if text[-1] in "fn" else text


def repr_is_json(text: str) -> bool:
    """Is text whose numbers were written with repr() valid JSON? Not when a number was None,
    infinite or NaN (`:None`, `:inf`, `:-inf`, `:nan`); a JSON string holding one of those
    only costs a rewrite the careful way."""
    return not (":None" in text or ":inf" in text or ":-inf" in text or ":nan" in text)


def any_json(value: Value) -> str:
    """A presented value (number, bool, text or None) as JSON text; NaN and infinity as null."""
    cls = value.__class__
    if cls is float:
        return repr(value) if math.isfinite(value) else "null"  # type: ignore[arg-type]
    if value is None:
        return "null"
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value.__class__ is float and not math.isfinite(value):
        return ""
    return value


async def csv_chunks(header: Sequence[str], rows: AsyncIterator[Iterable[Any]]) -> AsyncIterator[str]:
    """CSV text in chunks of a few thousand rows, header first."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    n = 0
    async for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        n += 1
        if n >= _FLUSH_ROWS:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
            n = 0
    yield buf.getvalue()


def csv_response(header: Sequence[str], rows: AsyncIterator[Iterable[Any]], filename: str,
                 headers: dict[str, str] | None = None) -> StreamingResponse:
    all_headers = {"Content-Disposition": f'inline; filename="{filename}"', **(headers or {})}
    return StreamingResponse(csv_chunks(header, rows), media_type=CSV_TYPE, headers=all_headers)
