"""Counting bad payloads per tag, keeping a sample of each, and logging them without flooding.

A sensor that sends garbage ten times a second must show up in health (count, last error,
the offending payload) and in the log, but as one line a minute, not ten lines a second.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from collector.model import SourceHealth, format_ts, now_us

log = logging.getLogger("adapters.mqtt")

LOG_EVERY = 60.0  # seconds between log lines about the same tag
SAMPLE_BYTES = 200


def sample_of(raw: bytes) -> str:
    """A short printable excerpt of a payload for health and logs."""
    text = raw[:SAMPLE_BYTES].decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in text)
    return text + (f"... ({len(raw)} bytes)" if len(raw) > SAMPLE_BYTES else "")


class PayloadStats:
    """Per-source counters shown in `health.extra` (the API's `details`)."""

    def __init__(self, health: SourceHealth, machine: str, source: str):
        self.health = health
        self.prefix = f"{machine}/{source}"
        self.messages = 0
        self.unmatched = 0
        self.empty = 0
        self.dropped = 0
        self.acked = 0
        self.redelivered = 0  # messages the broker marked as sent before (DUP): at-least-once
        self.bad: dict[str, int] = {}
        self.bad_timestamps: dict[str, int] = {}
        self.samples: dict[str, dict[str, Any]] = {}
        self._logged_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def bad_payload(self, tag: str, topic: str, raw: bytes, error: str, *, timestamp: bool = False) -> None:
        """Count one bad payload (or bad timestamp) for `tag`, keep it as the sample, maybe log it."""
        counter = self.bad_timestamps if timestamp else self.bad
        counter[tag] = counter.get(tag, 0) + 1
        self.samples[tag] = {"topic": topic, "error": error, "payload": sample_of(raw),
                             "at": format_ts(now_us())}
        # an error of the source like any other (collector_source_errors_total), but logged
        # here, per tag, rather than by health: good messages of other tags are no recovery
        health = self.health
        health.errors += 1
        health.last_error = f"tag {tag}: bad payload on topic {topic}: {error}"
        health.last_error_at = now_us()
        now = time.monotonic()
        last = self._logged_at.get(tag)
        if last is not None and now - last < LOG_EVERY:
            self._suppressed[tag] = self._suppressed.get(tag, 0) + 1
            return
        self._logged_at[tag] = now
        more = self._suppressed.pop(tag, 0)
        log.warning("%s tag %s: bad payload on topic %s: %s; payload %r%s", self.prefix, tag,
                    topic, error, sample_of(raw),
                    f" ({more} more since the last report)" if more else "")

    def publish(self, **live: Any) -> None:
        """Copy the counters into `health.extra`; called once per batch, not per message."""
        extra = self.health.extra
        extra["messages"] = self.messages
        extra["unmatched"] = self.unmatched
        extra["empty"] = self.empty
        extra["acked"] = self.acked
        extra["redelivered"] = self.redelivered
        if self.dropped:
            extra["dropped"] = self.dropped
        extra["bad_payloads"] = dict(self.bad)
        extra["bad_payloads_total"] = sum(self.bad.values())
        if self.bad_timestamps:
            extra["bad_timestamps"] = dict(self.bad_timestamps)
        if self.samples:
            extra["bad_samples"] = {k: dict(v) for k, v in self.samples.items()}
        extra.update(live)
