"""Logging for people (text) or log collectors (JSON), with repeats folded.

An error that repeats every poll (a dead sensor at 10 Hz) is logged once, then at most once a
minute with the number of repeats in between, so a log file stays readable for months.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

REPEAT_WINDOW = 60.0


class RepeatFilter(logging.Filter):
    """Lets a given (logger, message template) through once per window, counting the rest."""

    def __init__(self, window: float = REPEAT_WINDOW):
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, f"{record.msg}|{record.args!r}"[:500])
        now = time.monotonic()
        last = self._seen.get(key)
        if last is None or now - last[0] >= self.window:
            if last is not None and last[1]:
                record.msg = f"{record.msg} (repeated {last[1]} times in the last {self.window:.0f} s)"
            self._seen[key] = (now, 0)
            if len(self._seen) > 10_000:
                self._seen.clear()
            return True
        self._seen[key] = (last[0], last[1] + 1)
        return False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class CurrentStderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a line is logged, not to the one there was when
    logging was set up (a command run in-process, as the tests do, may swap it and close it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = CurrentStderr()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # asyncua logs every lost connection with a traceback; the adapter reports it in one line
    logging.getLogger("asyncua.client.ua_session").setLevel(logging.CRITICAL)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # timeouts are reported in health
    for noisy in ("asyncua", "aiosqlite", "uvicorn.error", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
