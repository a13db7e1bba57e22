"""Shared request dependencies: the runtime, and API-key checking. Both are coroutines:
FastAPI runs plain functions in a thread pool, a hop that costs more than they do."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastapi import HTTPException, Request

from api.offload import Offload

# Answers built from thousands of rows in this process (pages, aggregates and every tag when
# there are no worker processes, `api.offload`) are made at most this many at a time, in
# arrival order; each yields to the event loop between chunks of rows. The loop also runs the
# sources and the ledger writer: with eight clients asking for 10,000-row pages at once,
# unbounded, its turns grew to ~160 ms and ingest fell to a tenth of its rate. Two at once:
# one can wait for the database while the other formats.
LARGE_AT_ONCE = 2
CHUNK_ROWS = 2000  # rows formatted between two yields (~2 ms)
# answers that may hold this many rows or more are built in a worker process when there are
# any (`api.offload`); smaller ones cost less than the trip
OFFLOAD_ROWS = 1000


async def runtime(request: Request) -> Any:
    return request.app.state.runtime


async def large_answers(request: Request) -> asyncio.Semaphore:
    """The slots for large answers (`LARGE_AT_ONCE`), one set per app."""
    slots: asyncio.Semaphore | None = getattr(request.app.state, "large_answers", None)
    if slots is None:
        slots = request.app.state.large_answers = asyncio.Semaphore(LARGE_AT_ONCE)
    return slots


async def offloaded(request: Request) -> Offload:
    """The worker processes that build large answers (`api.offload`)."""
    return request.app.state.offload


async def require_key(request: Request) -> None:
    """When `api.api_keys` is set, demand one in `X-API-Key` or `Authorization: Bearer`."""
    keys: list[str] = request.app.state.runtime.config.api.api_keys
    if not keys:
        return
    given = request.headers.get("x-api-key")
    if given is None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
    if given:
        supplied = given.encode()
        # compare against every key so the time taken does not depend on which one matched
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(supplied, key.encode())
        if matched:
            return
    raise HTTPException(401, "a valid API key is required (header X-API-Key or Authorization: Bearer)",
                        headers={"WWW-Authenticate": "Bearer"})
