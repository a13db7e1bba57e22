"""`GET /api/v1/tags?machine=`: every series with its unit, source, protocol and newest reading."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from api.deps import require_key, runtime
from api.lookup import machine_series, tag_descriptions
from api.output import QUALITY, clean
from api.params import format_ts_fast
from api.schemas import ERRORS, LastReading, TagInfo, TagList
from collector.ledger.queries import present

router = APIRouter(prefix="/api/v1/tags", tags=["tags"], dependencies=[Depends(require_key)],
                   responses=ERRORS)


@router.get("", response_model=TagList, summary="Tags (series) with unit, source and newest value")
async def list_tags(
    machine: str | None = Query(None, description="only this machine's tags; all when omitted"),
    rt: Any = Depends(runtime),
) -> TagList:
    if machine is not None:
        series = await machine_series(rt, machine)
    else:
        series = await rt.ledger.series()
    kinds = {s.id: s.kind for s in series}
    latest = {
        sid: LastReading(ts=format_ts_fast(ts), value=clean(present(kinds[sid], value, text)),
                         quality=QUALITY[quality])
        for sid, ts, value, text, quality in await rt.ledger.latest_rows(list(kinds))}
    described = tag_descriptions(rt)
    return TagList(items=[
        TagInfo(machine=s.machine, tag=s.tag, unit=s.unit, source=s.source, protocol=s.protocol,
                kind=s.kind, description=described.get((s.machine, s.tag)),
                latest=latest.get(s.id))
        for s in series
    ])
