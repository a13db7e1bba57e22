"""`GET /api/v1/health`: is every source delivering and is the ledger writable (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from api.boundary import RuntimeView
from api.deps import runtime

router = APIRouter(tags=["health"])


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


class LedgerStatus(BaseModel):
    ok: bool
    backlog: int
    queued: int = 0
    dropped: int = 0
    written: int = 0
    last_error: str | None = None


class Health(BaseModel):
    status: str
    sources: list[SourceStatus]
    ledger: LedgerStatus
    production: dict[str, Any] | None = None  # derivation of states and counts, when configured


@router.get("/api/v1/health", response_model=Health, summary="Collector and ledger health")
async def get_health(rt: RuntimeView = Depends(runtime)) -> Health:
    sources = [SourceStatus(**h.as_dict()) for h in rt.health]
    ledger = LedgerStatus.model_validate(rt.pipeline.stats())  # the figures it names
    enabled = {(m.id, s.id) for m in rt.config.machines for s in m.sources if s.enabled}
    healthy = ledger.ok and ledger.dropped == 0 and all(
        s.connected for s in sources if (s.machine, s.source) in enabled)
    derivation = rt.derivation
    production = derivation.health() if derivation is not None and derivation.rules else None
    if production is not None and production.get("last_error"):
        healthy = False
    return Health(status="ok" if healthy else "degraded", sources=sources, ledger=ledger,
                  production=production)
