"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc`, served with their viewers
from this package: a plant network without internet still gets readable, clickable docs.

The viewers are swagger-ui-dist 5.35.0 and redoc 2.5.4 from the npm registry, unchanged, with
their licences, in `api/static/vendor/`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

VENDOR = Path(__file__).resolve().parent / "static" / "vendor"
FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
         "redoc.standalone.js": "text/javascript", "swagger-init.js": "text/javascript"}
CACHE = {"Cache-Control": "public, max-age=86400"}  # they change only with a new version

SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="icon" href="/static/favicon.svg">
<link rel="stylesheet" href="/static/vendor/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="/static/vendor/swagger-ui-bundle.js"></script>
<script src="/static/vendor/swagger-init.js"></script>
</body></html>"""

REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} - API reference</title>
<link rel="icon" href="/static/favicon.svg">
</head><body>
<redoc spec-url="/openapi.json" hide-download-button="false"></redoc>
<script src="/static/vendor/redoc.standalone.js"></script>
</body></html>"""


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER.format(title="Retrofit data collector"))


@router.get("/redoc", response_class=HTMLResponse)
async def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC.format(title="Retrofit data collector"))


@router.get("/static/vendor/{name}")
async def vendor_file(name: str) -> FileResponse:
    if name not in FILES:
        raise HTTPException(404, f"no file {name!r} here; the API docs are at /docs")
    return FileResponse(VENDOR / name, media_type=FILES[name], headers=CACHE)
