"""`GET /api/v1/tags?machine=`: every series with its unit, source, protocol and newest reading."""

from __future__ import annotations

import asyncio
import json
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.deps import large_answers, require_key, runtime
from api.lookup import cached_series, machine_series, tag_descriptions
from api.output import QUALITY, value_json
from api.params import format_ts_fast
from api.schemas import ERRORS, TagList
from collector.ledger import Series

router = APIRouter(prefix="/api/v1/tags", tags=["tags"], dependencies=[Depends(require_key)],
                   responses=ERRORS)


@router.get("", response_model=TagList, summary="Tags (series) with unit, source and newest value")
async def list_tags(
    machine: str | None = Query(None, description="only this machine's tags; all when omitted"),
    rt: Any = Depends(runtime),
    slots: asyncio.Semaphore = Depends(large_answers),
) -> Response:
    if machine is not None:
        series = await machine_series(rt, machine)
    else:
        series = await cached_series(rt.ledger, None)
    kinds = {s.id: s.kind for s in series}
    async with slots:
        latest = {
            sid: f'{{"ts":"{format_ts_fast(ts)}","value":{value_json(value, text, kinds[sid])},'
                 f'"quality":"{QUALITY[quality]}"}}'
            for sid, ts, value, text, quality in await rt.ledger.latest_rows(list(kinds))}
        described = tag_descriptions(rt)
        # written as text directly: with every tag of a plant this is thousands of items,
        # and the part that describes a series is the same from one request to the next
        items = ",".join([
            f'{_head(s, described.get((s.machine, s.tag)))}"latest":{latest.get(s.id, "null")}}}'
            for s in series])
        return Response(('{"items":[' + items + "]}").encode(), media_type="application/json")


@lru_cache(maxsize=65_536)
def _head(s: Series, description: str | None) -> str:
    dumps = json.dumps
    return (f'{{"machine":{dumps(s.machine)},"tag":{dumps(s.tag)},"unit":{dumps(s.unit)},'
            f'"source":{dumps(s.source)},"protocol":{dumps(s.protocol)},"kind":{dumps(s.kind)},'
            f'"description":{dumps(description)},')
