"""`make wheelhouse` and the offline install of deploy/README.md: the wheels of the collector
and of every dependency, installed into a fresh virtualenv with `--no-index` (no package index
at all), give a `collector` that runs and checks the shipped config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def run(*args: str | Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **extra, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PIP_INDEX_URL", None)
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def test_an_offline_install_from_the_wheelhouse_runs(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    made = run("make", "-s", "wheelhouse", f"WHEELHOUSE={house}")
    assert f"pip install --no-index --find-links {house} retrofit-collector" in made.stdout
    wheels = sorted(p.name for p in house.iterdir())
    assert all(name.endswith(".whl") for name in wheels)
    assert any(name.startswith("retrofit_collector-") for name in wheels)

    box = tmp_path / "box"
    run(sys.executable, "-m", "venv", box)
    run(box / "bin" / "pip", "install", "--quiet", "--no-index", "--find-links", house,
        "retrofit-collector")
    version = run(box / "bin" / "collector", "--version")
    assert version.stdout.startswith("collector 0.1.0")
    for shipped in ("config/collector.yaml", "deploy/collector/collector.yaml"):
        check = run(box / "bin" / "collector", "check", "-c", ROOT / shipped,
                    LEDGER_PASSWORD="pw", COLLECTOR_API_KEY="key", MQTT_PASSWORD="pw")
        assert "machine" in check.stdout and "tag" in check.stdout, check.stdout
