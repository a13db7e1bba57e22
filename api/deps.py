"""Shared request dependencies: the runtime, and API-key checking. Both are coroutines:
FastAPI runs plain functions in a thread pool, a hop that costs more than they do."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from api.boundary import RuntimeView
from api.offload import Offload

CHUNK_ROWS = 2000  # rows formatted between two yields (~2 ms)


def runtime_of(request: Request) -> RuntimeView:
    """The runtime `create_app` was given."""
    view: RuntimeView = request.app.state.runtime
    return view


async def runtime(request: Request) -> RuntimeView:
    return runtime_of(request)


async def offloaded(request: Request) -> Offload:
    """The worker processes that build large answers (`api.offload`)."""
    offload: Offload = request.app.state.offload
    return offload


def _given_key(request: Request) -> str | None:
    given = request.headers.get("x-api-key")
    if given is None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
    return given or None


def _matches(given: str | None, keys: list[str]) -> bool:
    if not given or not keys:
        return False
    supplied = given.encode()
    # compare against every key so the time taken does not depend on which one matched
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied, key.encode())
    return matched


async def require_key(request: Request) -> None:
    """When `api.api_keys` is set, demand one (or a write key) in `X-API-Key` or
    `Authorization: Bearer`."""
    api = runtime_of(request).config.api
    keys = api.api_keys
    if not keys:
        return
    if _matches(_given_key(request), [*keys, *api.write_keys]):
        return
    raise HTTPException(401, "a valid API key is required (header X-API-Key or Authorization: Bearer)",
                        headers={"WWW-Authenticate": "Bearer"})


async def require_write_key(request: Request) -> None:
    """Changing data needs a key listed in `api.write_keys`; read keys cannot write."""
    write_keys = runtime_of(request).config.api.write_keys
    if not write_keys:
        raise HTTPException(403, "changing data needs a write key, and none is configured: "
                            "add one to api.write_keys in the config")
    if not _matches(_given_key(request), write_keys):
        raise HTTPException(403, "changing data needs a key listed in api.write_keys "
                            "(header X-API-Key or Authorization: Bearer); read keys cannot write")
