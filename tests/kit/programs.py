"""The machine's programs a peer needs (mosquitto, socat, openssl, psql): found or the test fails."""

from __future__ import annotations

import shutil

import pytest


def need_program(name: str, package: str) -> str:
    """The path of the program `name`; without it the test fails, naming the Debian package to
    install (README.md lists them under "Tests"; `.ci/run` installs them)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package}", pytrace=False)
    return path
