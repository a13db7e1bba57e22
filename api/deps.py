"""Shared request dependencies: the runtime, and API-key checking. Both are coroutines:
FastAPI runs plain functions in a thread pool, a hop that costs more than they do."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import HTTPException, Request

from api.offload import Offload

CHUNK_ROWS = 2000  # rows formatted between two yields (~2 ms)


async def runtime(request: Request) -> Any:
    return request.app.state.runtime


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
