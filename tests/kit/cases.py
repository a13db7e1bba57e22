"""The data-driven cases in tests/cases/<protocol>/<name>/: the config, what the peer serves
(device.yaml), and the readings expected (expected.json) or the error a technician sees
(error.txt: a line per problem, its fragments separated by " … " found in order in one line
of the error). Loading and comparing here; running them in test_cases.py."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from collector.model import Quality, Reading, now_us

CASES = Path(__file__).resolve().parents[1] / "cases"
RECENT_US = 60_000_000  # a reading without an expected ts is stamped by us: within a minute


@dataclass(frozen=True)
class Expected:
    """One reading a case expects; `ts` None: stamped by the collector when read."""

    machine: str
    tag: str
    value: object
    quality: Quality
    ts: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.machine, self.tag


@dataclass(frozen=True)
class Case:
    path: Path
    expected: list[Expected] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)  # details the source's health reports
    error: list[str] = field(default_factory=list)

    @property
    def protocol(self) -> str:
        return self.path.parent.name

    @property
    def id(self) -> str:
        return f"{self.protocol}/{self.path.name}"

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    def config_data(self) -> dict[str, Any]:
        data = yaml.safe_load(self.config_file.read_text())
        assert isinstance(data, dict), self.config_file
        return data

    @cached_property
    def device(self) -> dict[str, Any]:
        data = yaml.safe_load((self.path / "device.yaml").read_text()) or {}
        assert isinstance(data, dict), self.path / "device.yaml"
        return data

    def values(self) -> dict[str, object]:
        """Expected good values by tag (the cases of one machine)."""
        return {e.tag: e.value for e in self.expected if e.quality is Quality.GOOD}

    def tags(self, quality: Quality) -> set[str]:
        return {e.tag for e in self.expected if e.quality is quality}


def load_case(path: Path | str) -> Case:
    """The case in `path` (a folder, or `<protocol>/<name>` under tests/cases)."""
    folder = Path(path) if Path(path).is_absolute() else CASES / path
    error_file, expected_file = folder / "error.txt", folder / "expected.json"
    assert error_file.exists() != expected_file.exists(), f"{folder}: expected.json or error.txt"
    if error_file.exists():
        lines = [line.strip() for line in error_file.read_text().splitlines()]
        return Case(folder, error=[line for line in lines if line])
    data = json.loads(expected_file.read_text())
    expected = [Expected(r["machine"], r["tag"], r.get("value"), Quality[r["quality"].upper()],
                         r.get("ts")) for r in data["readings"]]
    return Case(folder, expected=expected, health=data.get("health", {}))


def all_cases(protocol: str | None = None) -> list[Case]:
    folders = sorted(p.parent for p in CASES.glob("*/*/config.yaml"))
    return [load_case(f) for f in folders if protocol is None or f.parent.name == protocol]


def same(a: object, b: object) -> bool:
    """Equal values of the same type, telling -0.0 from 0.0 and comparing floats closely."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.copysign(1, a) == math.copysign(1, b) and math.isclose(a, b, rel_tol=1e-12)
    return type(a) is type(b) and a == b


def mismatch(reading: Reading | None, expected: Expected) -> str | None:
    """What is wrong with `reading` as `expected`, or None when it is right."""
    where = f"{expected.machine}/{expected.tag}"
    if reading is None:
        return f"{where}: no reading"
    if not same(reading.value, expected.value) or reading.quality is not expected.quality:
        return (f"{where}: {reading.value!r} ({reading.quality.name}), "
                f"expected {expected.value!r} ({expected.quality.name})")
    if expected.ts is not None and reading.ts != expected.ts:
        return f"{where}: stamped {reading.ts}, expected {expected.ts}"
    if expected.ts is None and abs(reading.ts - now_us()) > RECENT_US:
        return f"{where}: stamped {reading.ts}, not the time it was read"
    return None


def mismatches_latest(readings: Iterable[Reading], expected: list[Expected]) -> list[str]:
    """Each expected reading against the newest reading of its tag; also tags not expected."""
    latest: dict[tuple[str, str], Reading] = {(r.machine, r.tag): r for r in readings}
    wrong = [m for e in expected if (m := mismatch(latest.get(e.key), e))]
    keys = {e.key for e in expected}
    wrong += [f"{m}/{t}: not expected" for m, t in latest if (m, t) not in keys]
    return wrong


def mismatches_in_order(readings: list[Reading], expected: list[Expected]) -> list[str]:
    """The readings one by one against the expected ones, in order and no more."""
    wrong = [m for r, e in zip(readings, expected, strict=False) if (m := mismatch(r, e))]
    if len(readings) != len(expected):
        wrong.append(f"{len(readings)} readings, expected {len(expected)}")
    return wrong


def missing_errors(error: str, wanted: list[str]) -> list[str]:
    """The lines of error.txt that no line of `error` matches."""
    def matches(line: str, fragments: list[str]) -> bool:
        at = 0
        for fragment in fragments:
            at = line.find(fragment, at)
            if at < 0:
                return False
            at += len(fragment)
        return True

    lines = error.splitlines()
    return [w for w in wanted if not any(matches(line, w.split(" … ")) for line in lines)]


def health_mismatches(extra: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    return [f"health {k}: {extra.get(k)!r}, expected {v!r}" for k, v in expected.items()
            if extra.get(k) != v]
