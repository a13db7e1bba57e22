"""The reliability suite: each test breaks something on purpose and asserts what the box
promises (README "Guarantees"). `RELIABILITY_LONG=1` runs the longer variants (minutes
instead of seconds); every figure a test measured is printed and kept in
test-artifacts/reliability.json for the Guarantees table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

LONG = os.environ.get("RELIABILITY_LONG", "") not in ("", "0")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.slow


def record(test: str, **figures: Any) -> None:
    """Print what `test` measured and merge it into test-artifacts/reliability.json."""
    print(f"\n{test}: {json.dumps(figures)}")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "reliability.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[test] = {"long": LONG, **figures}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
