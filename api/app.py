"""The FastAPI application: the read side of the ledger plus the live health of the runtime.

`create_app(runtime)` takes anything that offers `ledger`, `pipeline`, `health` and `config`
(the `Runtime` in production, the same in tests), so the API never talks to devices.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import health, machines


def create_app(runtime: Any) -> FastAPI:
    app = FastAPI(
        title="Retrofit data collector",
        version="0.1.0",
        description="Production-data ledger of retrofitted machines: machines, tags, latest "
        "values, raw readings, aggregates and the collector's health.",
    )
    app.state.runtime = runtime
    app.include_router(health.router)
    app.include_router(machines.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # a database that is down is the only expected cause; never a bare 500 page
        return JSONResponse({"detail": f"the ledger could not answer: {type(exc).__name__}"},
                            status_code=503)

    return app


def describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "header", "body")]
        name = ".".join(loc) or "request"
        parts.append(f"parameter {name!r}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
