"""README.md's commands, run against `collector demo`, so the README cannot drift from what the
program prints.

A block after `<!-- docs-test: demo-banner -->` is what the demo prints when it starts; a block
after `<!-- docs-test -->` holds `$ command` lines, each followed by what it shows. The demo's
default addresses in the README (API 8080, Modbus 5020 and 5021, OPC UA 4840, `demo-data/`) are
replaced by this run's. Each shown line must match a line of the output, in order; `...` inside
a line stands for any text, a line of only `...` for any lines. `collector check` examples with
a `# validate: "..."` comment are run on the config they name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kit.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COLLECTOR = str(ROOT / ".venv" / "bin" / "collector")


def blocks(mark: str) -> list[str]:
    """The fenced blocks right after `<!-- mark -->`."""
    return re.findall(rf"<!-- {re.escape(mark)} -->\n```\w*\n(.*?)```", README.read_text(), re.S)


def matches(shown: str, line: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in shown.split("..."))
    return re.fullmatch(pattern, line) is not None


def assert_shows(shown: list[str], output: str, what: str) -> None:
    """Every shown line matches an output line, in order; `...` alone skips any lines."""
    lines = output.splitlines()
    at = 0
    for expected in shown:
        if expected.strip() == "...":
            continue
        while at < len(lines) and not matches(expected, lines[at]):
            at += 1
        assert at < len(lines), (f"{what}: README shows {expected!r}, the output has no such "
                                 f"line (after the previous one):\n{output}")
        at += 1


def wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = path.read_text(errors="replace")
        if text in out:
            return out
        assert proc.poll() is None, f"the demo ended:\n{out}"
        time.sleep(0.1)
    raise AssertionError(f"the demo did not print {text!r} in {seconds} s:\n{path.read_text()}")


def addresses(banner: str) -> dict[str, str]:
    """This run's addresses, from what the demo printed, keyed by the README's defaults."""
    io, meter = re.search(r"I/O module 127\.0\.0\.1:(\d+), SDM630 energy meter 127\.0\.0\.1:(\d+)",
                          banner).groups()  # type: ignore[union-attr]
    opcua = re.search(r"opc\.tcp://127\.0\.0\.1:(\d+)", banner).group(1)  # type: ignore[union-attr]
    api = re.search(r"Status page: http://127\.0\.0\.1:(\d+)/", banner).group(1)  # type: ignore[union-attr]
    return {"127.0.0.1:8080": f"127.0.0.1:{api}", "demo-8080": f"demo-{api}",
            "127.0.0.1:5020": f"127.0.0.1:{io}", "127.0.0.1:5021": f"127.0.0.1:{meter}",
            "--port 5020": f"--port {io}", "--port 5021": f"--port {meter}",
            "127.0.0.1:4840": f"127.0.0.1:{opcua}"}


def localise(text: str, ports: dict[str, str], data: Path) -> str:
    for readme, here in ports.items():
        text = text.replace(readme, here)
    text = text.replace("/home/you/retrofit-collector/demo-data", str(data))
    return re.sub(r"(?<![\w/])demo-data/", f"{data}/", text)


@pytest.mark.slow
def test_readme_commands_show_what_the_demo_shows(tmp_path: Path) -> None:
    banner_blocks, command_blocks = blocks("docs-test: demo-banner"), blocks("docs-test")
    assert banner_blocks and command_blocks, "README.md lost its docs-test blocks"
    data = tmp_path / "demo-data"
    log = tmp_path / "demo.log"
    env = {**os.environ, "COLLECTOR_DEMO_PORTS": "free", "COLLECTOR_DEMO_MQTT": "shared",
           "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        demo = subprocess.Popen([COLLECTOR, "demo", "--port", str(free_port()), "--data",
                                 str(data), "--seconds", "120"], stdout=out, stderr=out,
                                cwd=ROOT, env=env)
    try:
        printed = wait_for(log, "Stop with Ctrl-C.", demo, 60)
        ports = addresses(printed)
        for block in banner_blocks:
            assert_shows(localise(block, ports, data).splitlines(), printed, "the demo's banner")
        time.sleep(2)  # the first readings, sessions and subscriptions
        for block in command_blocks:
            steps = re.split(r"^\$ ", localise(block, ports, data), flags=re.M)[1:]
            assert steps, "a docs-test block without `$ command` lines"
            for step in steps:
                command, *shown = step.rstrip("\n").split("\n")
                done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                      cwd=ROOT, timeout=30, env=env)
                assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr}"
                assert_shows(shown, done.stdout, command)
    finally:
        demo.terminate()
        demo.wait(timeout=60)


def test_check_examples_show_what_check_prints() -> None:
    examples = re.findall(r"collector check -c (config/\S+)\s+# validate: \"([^\"]+)\"",
                          README.read_text())
    assert examples
    for config, shown in examples:
        done = subprocess.run([sys.executable, "-m", "collector.cli", "check", "-c", config],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.stdout.strip() == shown, f"collector check -c {config}: {done.stdout}"
