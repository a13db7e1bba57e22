"""Machines and their newest values: `/api/v1/machines`, `/api/v1/machines/{id}[/latest]`."""

from __future__ import annotations

import json
import weakref
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from api.deps import require_key, runtime
from api.lookup import machine_series, unknown_machine
from api.output import QUALITY, value_json
from api.params import ts_text
from api.schemas import ERRORS, LatestList, Machine, MachineList

router = APIRouter(prefix="/api/v1/machines", tags=["machines"],
                   dependencies=[Depends(require_key)], responses=ERRORS)


def machine_state(rt: Any, machine_id: str) -> str | None:
    """The state derived from the machine's production rules now (null without rules)."""
    derivation = getattr(rt, "derivation", None)
    return derivation.state_now(machine_id) if derivation is not None else None


async def _machines(rt: Any) -> list[Machine]:
    rows = await rt.ledger.catalogue.machines()
    configured = {m.id: m for m in rt.config.machines}
    out = []
    for row in rows:
        cfg = configured.get(row["id"])
        out.append(Machine(
            id=row["id"], name=(cfg.name if cfg else row["name"]) or row["id"],
            area=cfg.area if cfg else row["area"], line=cfg.line if cfg else row["line"],
            state=machine_state(rt, row["id"]), tags=row["tags"]))
    stored = {row["id"] for row in rows}
    for cfg in rt.config.machines:  # configured but not yet in the ledger
        if cfg.id not in stored:
            out.append(Machine(id=cfg.id, name=cfg.display_name, area=cfg.area, line=cfg.line,
                               state=machine_state(rt, cfg.id),
                               tags=[t.name for s in cfg.sources for t in s.tags
                                     if "{" not in t.name]))
    return out


@router.get("", response_model=MachineList, summary="Every machine with its tags")
async def list_machines(rt: Any = Depends(runtime)) -> MachineList:
    return MachineList(items=await _machines(rt))


@router.get("/{machine_id}", response_model=Machine, summary="One machine")
async def get_machine(machine_id: str, rt: Any = Depends(runtime)) -> Machine:
    for m in await _machines(rt):
        if m.id == machine_id:
            return m
    raise unknown_machine(machine_id)


# machine id -> (ledger changes, series list, body) of the last latest-values answer
_latest_cache: weakref.WeakKeyDictionary[Any, dict[str, tuple[int, list[Any], bytes]]] = (
    weakref.WeakKeyDictionary())


@router.get("/{machine_id}/latest", response_model=LatestList,
            summary="The newest reading of every tag of a machine")
async def latest(machine_id: str, rt: Any = Depends(runtime)) -> Response:
    series = await machine_series(rt, machine_id)
    # Dashboards poll this, often several at once, many times per commit. For a machine of
    # this collector's config only this process writes its readings (the ledger's machine
    # claim), so the answer stays right until the ledger's change count moves.
    changes = rt.ledger.changes
    owned = any(m.id == machine_id for m in rt.config.machines)
    cache = _latest_cache.setdefault(rt.ledger, {})
    hit = cache.get(machine_id) if owned else None
    if hit is not None and hit[0] == changes and hit[1] is series:
        return Response(hit[2], media_type="application/json")
    by_id = {x.id: x for x in series}
    rows = sorted(await rt.ledger.latest.rows(list(by_id)))
    # written as text directly: this is the endpoint dashboards poll most
    items = ",".join([
        f'{_tag_json(by_id[sid].tag)}{ts_text(ts)}",'
        f'"value":{value_json(value, text, by_id[sid].kind)},"quality":"{QUALITY[quality]}",'
        f'"unit":{_unit_json(by_id[sid].unit)}}}'
        for sid, ts, value, text, quality in rows])
    body = ('{"items":[' + items + "]}").encode()
    if owned:
        cache[machine_id] = (changes, series, body)
    return Response(body, media_type="application/json")


@lru_cache(maxsize=65_536)
def _tag_json(tag: str) -> str:
    return f'{{"tag":{json.dumps(tag)},"ts":"'


@lru_cache(maxsize=4096)
def _unit_json(unit: str | None) -> str:
    return json.dumps(unit)
