"""What every benchmark prints beside its figures: how fast this machine is at the moment,
and which code was measured."""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path


def speed_reference() -> float:
    """Milliseconds for a fixed piece of pure Python (the best of three), printed with the
    results: this VM's speed swings by up to 2x from hour to hour, and figures of two runs
    compare only after scaling by it."""
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        sum(range(10_000_000))
        best = min(best, time.perf_counter() - t)
    return best * 1000


def code_version() -> str:
    """The commit measured, and whether the code differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "collector", "api"],
                               cwd=root, check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return head + (" with local changes" if dirty else "")
