"""Small disks that fill up: a size-capped tmpfs mounted by the test (as root) and unmounted
in its finaliser, and a filler file that takes whatever space is left."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """`where` as a tmpfs of `size` (e.g. "8m"), unmounted afterwards, also on failure."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                   check=True, capture_output=True)
    try:
        yield where
    finally:
        result = subprocess.run(["umount", str(where)], capture_output=True)
        if result.returncode != 0:  # still open by a process being stopped: detach it
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; delete the file to free them again."""
    filler = disk / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb", buffering=0) as out:
        for size in (len(chunk), 4096, 1):  # then the last partial blocks
            try:
                while True:
                    out.write(chunk[:size])
            except OSError:
                pass
    return filler


def free(disk: Path) -> int:
    """Bytes free on `disk`."""
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize
