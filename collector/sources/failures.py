"""A source's failures in the log: a warning when it starts failing, then at most one line a
minute with a count while it goes on, and an info line when it recovers.

Health keeps every error (count, last text); the log is where a technician looks first
(`journalctl -u collector -p warning`), so it must say that a machine is blind without
repeating it ten times a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("collector.sources")

REPORT_EVERY = 60.0  # seconds between warnings about the same source


class FailureLog:
    """The log lines of one source's failures; `failed()` per error, `recovered()` per clean
    read (a read or scan without any error in it)."""

    def __init__(self, machine: str, source: str, *, every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.prefix = f"machine {machine!r} source {source!r}"
        self.every = every
        self.clock = clock
        self.streak = 0  # failures since the last clean read
        self.unreported = 0  # failures not yet counted in a warning
        self.reported_streak = False  # this streak's start was logged
        self._last_warning: float | None = None

    def failed(self, message: str) -> None:
        self.streak += 1
        self.unreported += 1
        now = self.clock()
        if self._last_warning is not None and now - self._last_warning < self.every:
            return
        text = message if message.startswith("machine ") else f"{self.prefix}: {message}"
        if self.streak == 1 and self.unreported == 1:
            log.warning("%s", text)
        else:
            since = (f"{now - self._last_warning:.0f} s" if self._last_warning is not None
                     else "start")
            log.warning("%s (%d failures in the last %s)", text, self.unreported, since)
        self._last_warning = now
        self.unreported = 0
        self.reported_streak = True

    def recovered(self) -> None:
        if not self.streak:
            return
        if self.reported_streak:  # a streak nobody was told about needs no all-clear either
            log.info("%s: recovered after %d failure%s", self.prefix, self.streak,
                     "" if self.streak == 1 else "s")
        self.streak = 0
        self.reported_streak = False
