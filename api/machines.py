"""Machines and their newest values: `/api/v1/machines`, `/api/v1/machines/{id}[/latest]`."""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from api.boundary import LedgerView, RuntimeView
from api.deps import require_key, runtime
from api.lookup import machine_series, unknown_machine
from api.output import QUALITY, status_json, value_json
from api.params import ts_text
from api.schemas import ERRORS, LatestList, Machine, MachineList
from collector.ledger import Series
from collector.ledger.pages import Row

router = APIRouter(prefix="/api/v1/machines", tags=["machines"],
                   dependencies=[Depends(require_key)], responses=ERRORS)


def machine_state(rt: RuntimeView, machine_id: str) -> str | None:
    """The state derived from the machine's production rules now (null without rules)."""
    derivation = rt.derivation
    return derivation.state_now(machine_id) if derivation is not None else None


async def _machines(rt: RuntimeView) -> list[Machine]:
    rows = await rt.ledger.catalogue.machines()
    configured = {m.id: m for m in rt.config.machines}
    out = []
    for row in rows:
        machine_id = str(row["id"])
        cfg = configured.get(machine_id)
        out.append(Machine(
            id=machine_id, name=(cfg.name if cfg else row["name"]) or machine_id,
            area=cfg.area if cfg else row["area"], line=cfg.line if cfg else row["line"],
            state=machine_state(rt, machine_id), tags=row["tags"]))
    stored = {row["id"] for row in rows}
    for cfg in rt.config.machines:  # configured but not yet in the ledger
        if cfg.id not in stored:
            out.append(Machine(id=cfg.id, name=cfg.display_name, area=cfg.area, line=cfg.line,
                               state=machine_state(rt, cfg.id),
                               tags=[t.name for s in cfg.sources for t in s.tags
                                     if "{" not in t.name]))
    return out


@router.get("", response_model=MachineList, summary="Every machine with its tags")
async def list_machines(rt: RuntimeView = Depends(runtime)) -> MachineList:
    return MachineList(items=await _machines(rt))


@router.get("/{machine_id}", response_model=Machine, summary="One machine")
async def get_machine(machine_id: str, rt: RuntimeView = Depends(runtime)) -> Machine:
    for m in await _machines(rt):
        if m.id == machine_id:
            return m
    raise unknown_machine(machine_id)


# machine id -> (ledger changes, series list, body) of the last latest-values answer
_latest_cache: weakref.WeakKeyDictionary[LedgerView, dict[str, tuple[int, list[Series], bytes]]] = (
    weakref.WeakKeyDictionary())


@router.get("/{machine_id}/latest", response_model=LatestList,
            summary="The newest reading of every tag of a machine",
            response_model_exclude_none=True)
async def latest(
    machine_id: str,
    int_as: Literal["number", "string"] = Query(
        "number", description="string: integers as strings of their digits (for JavaScript, "
        "whose numbers lose precision past 2^53); number: exact JSON numbers"),
    rt: RuntimeView = Depends(runtime),
) -> Response:
    series = await machine_series(rt, machine_id)
    if int_as == "string":  # not cached: dashboards poll the default
        rows = await rt.ledger.latest.rows([x.id for x in series])
        return Response(latest_body(series, rows, ints_as_text=True),
                        media_type="application/json")
    # Dashboards poll this, often several at once, many times per commit. For a machine of
    # this collector's config only this process writes its readings (the ledger's machine
    # claim), so the answer stays right until the ledger's change count moves.
    changes = rt.ledger.changes
    owned = any(m.id == machine_id for m in rt.config.machines)
    cache = _latest_cache.setdefault(rt.ledger, {})
    hit = cache.get(machine_id) if owned else None
    if hit is not None and hit[0] == changes and hit[1] is series:
        return Response(hit[2], media_type="application/json")
    body = latest_body(series, await rt.ledger.latest.rows([x.id for x in series]))
    if owned:
        cache[machine_id] = (changes, series, body)
    return Response(body, media_type="application/json")


def latest_body(series: Sequence[Series], rows: list[Row], ints_as_text: bool = False) -> bytes:
    """The `LatestList` of `series` from their newest rows (`Row`), by series id; integers as
    strings with `ints_as_text`. Written as text directly: dashboards poll this endpoint
    most."""
    by_id = {x.id: x for x in series}
    items = ",".join([
        f'{_tag_json(by_id[sid].tag)}{ts_text(ts)}",'
        f'"value":{value_json(value, text, by_id[sid].kind, value_int, ints_as_text)},'
        f'"quality":"{QUALITY[quality]}","unit":{_unit_json(by_id[sid].unit)}'
        f'{status_json(status)}}}'
        for sid, ts, value, text, quality, value_int, status in sorted(rows, key=_first)])
    return ('{"items":[' + items + "]}").encode()


def _first(row: Row) -> int:
    return row[0]


@lru_cache(maxsize=65_536)
def _tag_json(tag: str) -> str:
    return f'{{"tag":{json.dumps(tag)},"ts":"'


@lru_cache(maxsize=4096)
def _unit_json(unit: str | None) -> str:
    return json.dumps(unit)
