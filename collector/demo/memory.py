"""The simulated devices' counters kept in the demo's data folder, as a real counter module or
meter keeps them through a power cut: a demo started again goes on counting from there."""

from __future__ import annotations

import json
import os
from pathlib import Path


class CounterMemory:
    """Named counter values in a small JSON file, written before a device shows them."""

    def __init__(self, path: Path | None):
        self.path = path
        self.values: dict[str, float] = {}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                self.values = {k: float(v) for k, v in loaded.items()}
            except (OSError, ValueError, AttributeError):
                self.values = {}  # unreadable: the devices start afresh

    def get(self, name: str, default: float) -> float:
        return self.values.get(name, default)

    def remember(self, **values: float) -> None:
        if all(self.values.get(k) == v for k, v in values.items()):
            return
        self.values.update(values)
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.values), encoding="utf-8")
        os.replace(tmp, self.path)
