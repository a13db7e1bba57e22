"""`GET /api/v1/health`: is every source delivering, is every tag reading, and is the ledger
writable (no key needed).

A source can be connected while one of its tags never reads (a register the device refuses)
or stops updating: such a tag is listed under its source as `bad` or `stale` with the reason,
`problems` says it in one sentence naming the machine, source and tag, and the status is
`degraded`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from api.boundary import RuntimeView
from api.deps import runtime
from collector.model import now_us
from collector.taghealth import TagWatch, describe

router = APIRouter(tags=["health"])


class TagStatus(BaseModel):
    tag: str
    problem: Literal["bad", "stale"]
    since: str | None  # the first bad reading, or the last good one (null: never read)
    reason: str


class SourceStatus(BaseModel):
    machine: str
    source: str
    protocol: str
    connected: bool
    last_ok: str | None
    last_error: str | None
    last_error_at: str | None = None
    reads: int = 0
    errors: int = 0
    readings: int = 0
    restarts: int = 0
    scan_time: float | None = None
    details: dict[str, Any] | None = None
    tags_total: int = 0  # tags this source reads (names bound at run time once seen)
    tag_problems: list[TagStatus] = []  # the tags that are bad or stale now


class LedgerStatus(BaseModel):
    ok: bool
    backlog: int
    queued: int = 0
    dropped: int = 0
    written: int = 0
    future: int = 0  # readings stamped too far ahead of the box's clock, stored as uncertain
    last_error: str | None = None


class Health(BaseModel):
    status: str
    sources: list[SourceStatus]
    ledger: LedgerStatus
    production: dict[str, Any] | None = None  # derivation of states and counts, when configured
    problems: list[str] = []  # one sentence per bad or stale tag: machine, source, tag, why


@router.get("/api/v1/health", response_model=Health, summary="Collector and ledger health")
async def get_health(rt: RuntimeView = Depends(runtime)) -> Health:
    now = now_us()
    sources, problems = [], []
    for h in rt.health:
        status = SourceStatus(**h.as_dict())
        watch = getattr(h, "tags", None)
        if isinstance(watch, TagWatch):
            found = watch.problems(now)
            status.tags_total = len(watch.tags)
            status.tag_problems = [TagStatus.model_validate(p.as_dict()) for p in found]
            problems += [describe(h.machine, h.source, p) for p in found]
        sources.append(status)
    ledger = LedgerStatus.model_validate(rt.pipeline.stats())  # the figures it names
    enabled = {(m.id, s.id) for m in rt.config.machines for s in m.sources if s.enabled}
    healthy = ledger.ok and ledger.dropped == 0 and not problems and all(
        s.connected for s in sources if (s.machine, s.source) in enabled)
    derivation = rt.derivation
    production = derivation.health() if derivation is not None and derivation.rules else None
    if production is not None and production.get("last_error"):
        healthy = False
    return Health(status="ok" if healthy else "degraded", sources=sources, ledger=ledger,
                  production=production, problems=problems)
