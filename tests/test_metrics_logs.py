"""Prometheus metrics from a running collector, and logs that stay readable."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx

from api.server import ApiServer
from collector.config import parse_config
from collector.logs import JsonFormatter, RepeatFilter
from collector.model import Reading, now_us
from collector.runtime import Runtime


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


async def test_metrics_expose_pipeline_ledger_and_process(tmp_path: Path) -> None:
    cfg = parse_config(f"ledger:\n  url: sqlite:///{tmp_path}/l.db\nspool:\n  path: {tmp_path}/s.db\n"
                       "api:\n  port: 0\nmachines:\n  - id: m1\n")
    async with Runtime(cfg, api=ApiServer) as rt:
        await rt.pipeline.put([Reading("m1", f"t{i}", now_us(), float(i)) for i in range(42)], wait=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}") as client:
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _value(text, "collector_ledger_rows_written_total") == 42
    assert _value(text, "collector_pipeline_received_readings_total") == 42
    assert _value(text, "collector_ledger_up") == 1
    assert _value(text, "collector_spool_backlog_readings") == 0
    assert _value(text, "collector_spool_dropped_readings_total") == 0
    assert _value(text, "collector_ledger_write_seconds_count") >= 1
    assert _value(text, "process_resident_memory_bytes") > 10_000_000


def test_repeating_errors_are_logged_once_per_window_with_a_count() -> None:
    f = RepeatFilter(window=60)
    records = [logging.LogRecord("adapters.modbus", logging.WARNING, __file__, 1,
                                 "press07/io: timeout reading unit %d", (1,), None) for _ in range(100)]
    passed = [r for r in records if f.filter(r)]
    assert len(passed) == 1
    f._seen = {k: (v[0] - 61, v[1]) for k, v in f._seen.items()}  # a minute later
    late = logging.LogRecord("adapters.modbus", logging.WARNING, __file__, 1,
                             "press07/io: timeout reading unit %d", (1,), None)
    assert f.filter(late)
    assert "(repeated 99 times in the last 60 s)" in late.getMessage()
    info = logging.LogRecord("x", logging.INFO, __file__, 1, "same", (), None)
    assert f.filter(info) and f.filter(info)  # information is never folded


def test_json_log_lines() -> None:
    record = logging.LogRecord("collector.runtime", logging.ERROR, __file__, 1, "ledger %s down", ("pg",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error" and entry["message"] == "ledger pg down"
    assert entry["logger"] == "collector.runtime" and entry["ts"].endswith("Z")
