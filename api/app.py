"""The FastAPI application: the read side of the ledger plus the live health of the runtime.

`create_app(runtime)` takes a `RuntimeView` (`api.boundary`): the `Runtime` in production,
a stand-in with a real ledger in tests, so the API never talks to devices.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from api import docs, health, machines, metrics, production, readings, status, tags
from api.boundary import RuntimeView
from api.hardening import Hardening
from api.offload import Offload
from api.params import BadParameter
from collector.derive.report import ProductionReport

log = logging.getLogger("api")

MAX_QUERY_BYTES = 16_384
MAX_BODY_BYTES = 65_536


def create_app(runtime: RuntimeView) -> FastAPI:
    app = FastAPI(
        title="Retrofit data collector",
        docs_url=None, redoc_url=None,  # served from this package by api/docs.py
        version="0.1.0",
        description="Production-data ledger of retrofitted machines: machines, tags, latest "
        "values, raw readings, aggregates and the collector's health. When `api.api_keys` is "
        "set, every /api/v1 path except /api/v1/health needs `X-API-Key: <key>` or "
        "`Authorization: Bearer <key>`.",
    )
    app.state.runtime = runtime
    app.state.offload = Offload(runtime.ledger, runtime.config.api.workers)
    app.state.production = ProductionReport(runtime.config, runtime.ledger.production)
    app.include_router(docs.router)
    for module in (health, machines, tags, readings, production, metrics):
        app.include_router(module.router)
    app.include_router(status.router)

    @app.exception_handler(BadParameter)
    async def _bad(_request: Request, exc: BadParameter) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    origins = list(runtime.config.api.cors_origins)
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "PATCH"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"],
                           expose_headers=["X-Next-Cursor"])
    app.add_middleware(RequestLimits)
    # outermost: its headers go on every answer, and an exception (a database that is down
    # is the only expected cause) becomes a 503 and one log line, never a bare 500 page
    app.add_middleware(Hardening)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class RequestLimits:
    """Refuses over-long query strings and request bodies before any routing happens."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            detail = None
            if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
                status, detail = 414, f"the query string is longer than {MAX_QUERY_BYTES} bytes"
            else:
                for name, value in scope.get("headers", ()):
                    if name == b"content-length" and (not value.isdigit()
                                                      or int(value) > MAX_BODY_BYTES):
                        status, detail = 413, f"request bodies are limited to {MAX_BODY_BYTES} bytes"
            if detail is not None:
                await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document, saying 400 (what the API answers) where FastAPI says 422."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema


def describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "header", "body")]
        name = ".".join(loc) or "request"
        given = err.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int) and len(str(given)) < 60 else ""
        parts.append(f"parameter {name!r}: {err.get('msg', 'invalid')}{shown}")
    return "; ".join(parts)
