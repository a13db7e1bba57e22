"""`GET /api/v1/tags?machine=`: every series with its unit, source, protocol and newest reading."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import repeat

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.boundary import LedgerView, RuntimeView
from api.deps import offloaded, require_key, runtime
from api.lookup import cached_series, machine_series, tag_descriptions
from api.offload import Offload
from api.output import QUALITY_TAILS, quality_tail, ts_texts, value_texts
from api.readings import IntAs, IntAsQ
from api.schemas import ERRORS, TagList
from collector.ledger import Series
from collector.ledger.exact import exact_value
from collector.ledger.pages import Row

router = APIRouter(prefix="/api/v1/tags", tags=["tags"], dependencies=[Depends(require_key)],
                   responses=ERRORS)


@router.get("", response_model=TagList, summary="Tags (series) with unit, source and newest value",
            response_model_exclude_none=True)  # status: only on readings that have one
async def list_tags(
    machine: str | None = Query(None, description="only this machine's tags; all when omitted"),
    int_as: IntAs = IntAsQ,
    rt: RuntimeView = Depends(runtime),
    offload: Offload = Depends(offloaded),
) -> Response:
    if machine is not None:
        series = await machine_series(rt, machine)
    else:
        series = await cached_series(rt.ledger, None)
    bools = {s.id for s in series if s.kind == "bool"}
    latest = await offload.answer(len(series), latest_texts, [s.id for s in series], bools,
                                  int_as == "string")
    return Response(tags_body(series, tag_descriptions(rt), latest),
                    media_type="application/json")


def tags_body(series: Sequence[Series], described: Mapping[tuple[str, str], str],
              latest: Mapping[int, bytes]) -> bytes:
    """The `TagList` of `series`, with the descriptions by (machine, tag) and each series'
    newest reading as `latest_texts` wrote it. Written as text directly: with every tag of a
    plant this is thousands of items, and the part that describes a series is the same from
    one request to the next."""
    parts = [b'{"items":[']
    for s in series:
        parts += (_head(s, described.get((s.machine, s.tag))), latest.get(s.id, b"null"), b"},")
    if series:
        parts[-1] = b"}"
    parts.append(b"]}")
    return b"".join(parts)


async def latest_texts(ledger: LedgerView, ids: list[int], bools: set[int],
                       ints_as_text: bool = False) -> dict[int, bytes]:
    """Each series' newest reading as `{"ts":..,"value":..,"quality":..}` (in a worker
    process when there are any: `api.offload`)."""
    return _latest_texts(await ledger.latest.rows(ids), bools, ints_as_text)


def _latest_texts(rows: list[Row], bools: set[int], ints_as_text: bool = False
                  ) -> dict[int, bytes]:
    """`{"ts":..,"value":..,"quality":..}` of each series' newest reading (with `status`
    and `status_code` where it has one), column by column in C code
    (`api.output.value_texts`); integers as strings with `ints_as_text`."""
    if not rows:
        return {}
    sids, tss, values, texts, qualities, ints, statuses = zip(*rows, strict=True)
    if ints.count(None) != len(ints):  # the exact integers
        values = tuple(map(exact_value, values, ints))
    if texts.count(None) != len(texts):  # text first, as `present` shows it
        values = tuple(v if t is None else t for v, t in zip(values, texts, strict=True))
    flags = map(bools.__contains__, sids) if bools else None
    tails = (map(QUALITY_TAILS.__getitem__, qualities) if statuses.count(None) == len(statuses)
             else map(quality_tail, qualities, statuses))
    return dict(zip(sids, map(b"".join, zip(
        repeat(b'{"ts":"'), ts_texts(tss), repeat(b'","value":'),
        value_texts(values, flags, ints_as_text), tails)), strict=False))


_HEADS: dict[tuple[int, str | None], tuple[Series, bytes]] = {}
_HEADS_KEPT = 65_536


def _head(s: Series, description: str | None) -> bytes:
    """The part of a tag's item before its latest reading, kept per series id and description
    while the series is the same object (the series list is cached, so it mostly is; looking
    up the Series itself would compare all its fields on every request)."""
    key = (s.id, description)
    hit = _HEADS.get(key)
    if hit is not None and hit[0] is s:
        return hit[1]
    if len(_HEADS) >= _HEADS_KEPT:
        _HEADS.clear()
    text = _head_text(s, description)
    _HEADS[key] = (s, text)
    return text


def _head_text(s: Series, description: str | None) -> bytes:
    dumps = json.dumps
    return (f'{{"machine":{dumps(s.machine)},"tag":{dumps(s.tag)},"unit":{dumps(s.unit)},'
            f'"source":{dumps(s.source)},"protocol":{dumps(s.protocol)},"kind":{dumps(s.kind)},'
            f'"description":{dumps(description)},"latest":').encode()
