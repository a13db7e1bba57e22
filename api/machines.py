"""Machines and their newest values: `/api/v1/machines`, `/api/v1/machines/{id}[/latest]`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from api.deps import require_key, runtime
from collector.model import Value, format_ts

router = APIRouter(prefix="/api/v1/machines", tags=["machines"], dependencies=[Depends(require_key)])


class Machine(BaseModel):
    id: str
    name: str | None
    area: str | None
    line: str | None
    state: str | None
    tags: list[str]


class MachineList(BaseModel):
    items: list[Machine]


class LatestValue(BaseModel):
    tag: str
    ts: str
    value: Value
    quality: str
    unit: str | None


class LatestList(BaseModel):
    items: list[LatestValue]


def machine_state(rt: Any, machine_id: str) -> str | None:
    """`offline` when every enabled source of the machine is down; finer states (running,
    idle, stopped) come from the machine-state derivation."""
    sources = [h for h in rt.health if h.machine == machine_id]
    if sources and not any(h.connected for h in sources):
        return "offline"
    return None


async def _machines(rt: Any) -> list[Machine]:
    rows = await rt.ledger.machines()
    configured = {m.id: m for m in rt.config.machines}
    out = []
    for row in rows:
        cfg = configured.get(row["id"])
        out.append(Machine(
            id=row["id"], name=(cfg.name if cfg else row["name"]) or row["id"],
            area=cfg.area if cfg else row["area"], line=cfg.line if cfg else row["line"],
            state=machine_state(rt, row["id"]), tags=row["tags"]))
    return out


@router.get("", response_model=MachineList, summary="Every machine with its tags")
async def list_machines(rt: Any = Depends(runtime)) -> MachineList:
    return MachineList(items=await _machines(rt))


@router.get("/{machine_id}", response_model=Machine, summary="One machine")
async def get_machine(machine_id: str, rt: Any = Depends(runtime)) -> Machine:
    for m in await _machines(rt):
        if m.id == machine_id:
            return m
    raise HTTPException(404, f"machine {machine_id!r} not found")


@router.get("/{machine_id}/latest", response_model=LatestList,
            summary="The newest reading of every tag of a machine")
async def latest(machine_id: str, rt: Any = Depends(runtime)) -> LatestList:
    rows = await rt.ledger.latest(machine_id)
    if not rows and not await rt.ledger.series(machine_id):
        known = {m.id for m in rt.config.machines}
        if machine_id not in known:
            raise HTTPException(404, f"machine {machine_id!r} not found")
    return LatestList(items=[
        LatestValue(tag=s.tag, ts=format_ts(p.ts), value=p.value, quality=p.quality.label, unit=s.unit)
        for s, p in rows
    ])
