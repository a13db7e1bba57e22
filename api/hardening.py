"""What every HTTP answer carries and what the log gets from the web server.

Security headers on every answer (the pages need nothing from elsewhere and no inline script,
so their policy is strict; the API docs' viewers only add inline styles). A request
that fails inside (the ledger's database is down) is answered 503 and logged in one line, not
with a traceback per request; and uvicorn's complaint about each malformed request goes through
the same once-a-minute folding as our own repeated errors.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("api")

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
               "frame-ancestors 'none'")
# /docs and /redoc: their viewers (served from this package) set inline styles and Redoc
# runs a worker from a blob; no script comes from elsewhere or from the page itself
DOCS_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "font-src 'self' data:; img-src 'self' data:; worker-src 'self' blob:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")

HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer")]


def policy_for(path: str) -> str:
    return DOCS_POLICY if path.startswith(DOCS_PATHS) else PAGE_POLICY


class Hardening:
    """ASGI middleware: security headers on every answer; an exception under way becomes a
    503 and one log line (Starlette would answer too, but then re-raise it for uvicorn to log
    as "Exception in ASGI application" with a traceback)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [*HEADERS, (b"content-security-policy", policy_for(scope["path"]).encode())]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in {name for name, _ in extra}]
                message = {**message, "headers": [*headers, *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            kind = getattr(exc, "kind", None) or type(exc).__name__  # WorkerError names its cause
            first = str(exc).splitlines()[0] if str(exc) else ""
            # no path in the template: one outage folds into one line a minute, whatever is asked
            log.warning("API requests fail, the ledger could not answer: %s: %s", kind, first[:300])
            if started:  # the answer is half sent: all that is left is to end it
                return
            await JSONResponse({"detail": f"the ledger could not answer: {kind}"},
                               status_code=503)(scope, receive, send_with_headers)


class MalformedRequests(logging.Filter):
    """uvicorn's "Invalid HTTP request received." comes with a traceback of its parser; the
    line is enough (and the repeat filter then folds it to one a minute)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and str(record.msg).startswith("Invalid HTTP"):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_uvicorn() -> dict[str, Any]:
    """uvicorn.Config options and logger set-up that send uvicorn's lines through our handler
    (and its repeat filter) instead of a handler of uvicorn's own."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, MalformedRequests) for f in error.filters):
        error.addFilter(MalformedRequests())
    return {"log_config": None}
