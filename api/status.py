"""The status page at `/`: one self-refreshing screen of every machine, tag and source; and
the daily production ledger at `/ledger`.

The pages and their files are served without an API key; the pages then read the
same public REST API as everyone else (asking for a key, kept in the browser, when the API
wants one). Nothing is fetched from the internet, so it works on an isolated plant network.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

import anyio
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

from api.boundary import RuntimeView
from api.deps import runtime

router = APIRouter(include_in_schema=False)

# anyio loads its file functions on first use: load them with this module, not inside the
# first file answer
_OPEN_FILE = anyio.open_file

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"status.css": "text/css", "status.js": "text/javascript", "draw.js": "text/javascript",
          "ledger.css": "text/css", "ledger.js": "text/javascript",
          "favicon.svg": "image/svg+xml"}  # the only files served: no path is taken from a URL
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate, so a new version shows after an update


@cache
def _page_template(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _page(name: str, rt: RuntimeView) -> HTMLResponse:
    """A page, with this box's name in its title."""
    box = html.escape(rt.config.box or "collector")
    return HTMLResponse(_page_template(name).replace("{{BOX}}", box), headers=NO_CACHE)


@router.get("/", response_class=HTMLResponse)
async def status_page(rt: RuntimeView = Depends(runtime)) -> HTMLResponse:
    return _page("index.html", rt)


@router.get("/ledger", response_class=HTMLResponse)
async def ledger_page(rt: RuntimeView = Depends(runtime)) -> HTMLResponse:
    """The daily production ledger of a date (`?date=`, read by the page): shifts, totals,
    downtimes and their reasons; printable."""
    return _page("ledger.html", rt)


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, f"no file {name!r} here; the status page is at /")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=NO_CACHE)
