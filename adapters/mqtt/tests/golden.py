"""Golden cases for sample.yaml: (topic, payload) in, readings out (machine, tag, value,
quality, ts in µs or None for the receive time). One parametrised test runs them all."""

from __future__ import annotations

import json
from pathlib import Path

from collector.model import BAD, GOOD

SAMPLE = Path(__file__).resolve().parent.parent / "sample.yaml"
TS = 1_700_000_000_123

CASES: list[tuple[str, str, str | bytes, list[tuple[str, str, object, int, int | None]]]] = [
    ("plain number", "press07/temp", "21.5", [("sample", "temp", 21.5, GOOD, None)]),
    ("scale and offset", "press07/temp_raw", "615", [("sample", "temp_raw", 21.5, GOOD, None)]),
    ("bool on", "press07/door", "ON", [("sample", "door_open", True, GOOD, None)]),
    ("bool 0", "press07/door", "0", [("sample", "door_open", False, GOOD, None)]),
    ("text", "press07/mode", "AUTO", [("sample", "mode", "AUTO", GOOD, None)]),
    ("integer", "press07/count", "1234", [("sample", "counter", 1234, GOOD, None)]),
    ("nan_value", "press07/humidity", "-999", [("sample", "humidity", None, BAD, None)]),
    ("above clamp_max", "press07/humidity", "100.4", [("sample", "humidity", 100.0, GOOD, None)]),
    ("within the clamp", "press07/humidity", "55", [("sample", "humidity", 55, GOOD, None)]),
    ("text where a number is expected", "press07/temp", "n/a", [("sample", "temp", None, BAD, None)]),
    ("json, three tags from one message", "press07/telemetry",
     json.dumps({"current_a": 12.5, "ts": TS, "phases": [{"v": 229.1}, {"v": 230.4}],
                 "state": {"running": True}}),
     [("sample", "current", 12.5, GOOD, TS * 1000), ("sample", "voltage_l2", 230.4, GOOD, TS * 1000),
      ("sample", "running", True, GOOD, None)]),
    ("json, truncated", "press07/telemetry", '{"current_a": 12.5, "ts": 17',
     [("sample", "current", None, BAD, None), ("sample", "voltage_l2", None, BAD, None),
      ("sample", "running", None, BAD, None)]),
    ("json, path missing", "press07/telemetry", json.dumps({"current_a": 3, "ts": TS}),
     [("sample", "current", 3, GOOD, TS * 1000), ("sample", "voltage_l2", None, BAD, None),
      ("sample", "running", None, BAD, None)]),
    ("rfc 3339 with offset, key with a dot", "oven1/status",
     json.dumps({"data": {"temp.c": 180.5}, "time": "2024-05-01T10:00:00.250+02:00"}),
     [("sample", "oven_temp", 180.5, GOOD, 1_714_550_400_250_000)]),
    ("json list, epoch seconds", "meter/energy", '[{"kwh": 1520.25, "t": 1714550400.5}]',
     [("sample", "energy", 1520.25, GOOD, 1_714_550_400_500_000)]),
    ("bound machine and tag", "line2/Lathe 3/Spindle-RPM", "1450",
     [("lathe_3", "spindle_rpm", 1450, GOOD, None)]),
    ("bound part of a name", "meter/L1/power", '{"w": 230}', [("sample", "power_l1", 230, GOOD, None)]),
    ("oversized", "press07/temp", "1" * 5000, [("sample", "temp", None, BAD, None)]),
]
