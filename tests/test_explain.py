"""`collector check --explain`: per tag, in plain words, what will be read (register kind,
0-based addresses and the manual's numbering, count, function code, type, byte order,
scale/offset, unit) and where the tag is written, also when it comes from a device profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.cli import main

CONFIG = """\
machines:
  - id: press07
    sources:
      - id: energy
        protocol: modbus
        host: 10.0.0.5
        unit: 3
        profile: profiles/meter.yaml
        tags:
          - {name: power, scale: 0.001, unit: kW}
          - {name: guard_closed, register: holding, address: 20, type: bool, bit: 3}
          - {name: firmware, register: holding, address: 100, type: string, length: 8}
          - {name: temperature, register: input, address: 1, type: int16, scale: 0.1, offset: -40, unit: degC}
  - id: comp01
    sources:
      - id: sensors
        protocol: mqtt
        broker: mqtt://user:secret@10.0.0.9:1883
        tags:
          - {name: pressure, topic: plant/comp01, json: p_bar, unit: bar, stale_after: 1m}
      - id: hmi
        protocol: opcua
        endpoint: opc.tcp://10.0.0.7:4840
        tags:
          - {name: speed, node: "ns=2;s=Spindle.Speed"}
"""
PROFILE = """\
device: test meter
reference: test table
tags:
  - {name: power, register: input, address: 52, type: float32, byte_order: CDAB, unit: W}
"""


def test_check_explain_says_what_each_tag_reads(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "meter.yaml").write_text(PROFILE)
    (tmp_path / "box.yaml").write_text(CONFIG)
    assert main(["check", "-c", str(tmp_path / "box.yaml"), "--explain"]) == 0
    out = capsys.readouterr().out
    blocks = {chunk.splitlines()[0]: chunk for chunk in _blocks(out)}
    power = blocks["press07 / energy / power"]
    assert "written at profile " in power and "meter.yaml tags[0] (line 4)" in power
    assert "changed here: scale, unit at machines[0].sources[0].tags[0] (line 10)" in power
    assert ("reads input register addresses 52 to 53 (0-based; 30053 to 30054 in a manual "
            "counting from 30001), 2 registers, with function code 04 (read input registers) "
            "from unit 3 at 10.0.0.5:502 every 1 s") in power
    assert "as float32: a decimal number (IEEE 754 float), least significant word first " \
           "(CDAB, words swapped)" in power
    assert "then value = raw x 0.001; unit kW" in power
    assert "stale (status page amber) after 3 s without a good reading" in power
    guard = blocks["press07 / energy / guard_closed"]
    assert "written at machines[0].sources[0].tags[1] (line 11)" in guard
    assert "function code 03 (read holding registers)" in guard and "40021" in guard
    assert "as true/false: bit 3 of the register (0 = least significant)" in guard
    firmware = blocks["press07 / energy / firmware"]
    assert "addresses 100 to 107" in firmware and "8 registers" in firmware
    assert "as text: up to 16 characters, two per register, high byte first" in firmware
    temperature = blocks["press07 / energy / temperature"]
    assert "as int16: a whole number -32768 to 32767" in temperature
    assert "then value = raw x 0.1 - 40; unit degC" in temperature
    pressure = blocks["comp01 / sensors / pressure"]
    assert "takes the JSON field 'p_bar' of each message on topic 'plant/comp01' from the " \
           "broker mqtt://10.0.0.9:1883" in pressure
    assert "secret" not in out
    assert "stale (status page amber) after 60 s" in pressure
    speed = blocks["comp01 / hmi / speed"]
    assert "reads node ns=2;s=Spindle.Speed from opc.tcp://10.0.0.7:4840 (subscribed" in speed
    assert "never stale: the device sends only on change" in speed
    assert out.rstrip().endswith("2 machines, 3 sources, 6 tags")


def _blocks(out: str) -> list[str]:
    chunks: list[list[str]] = []
    for line in out.splitlines():
        if line and not line.startswith(" ") and " / " in line:
            chunks.append([line])
        elif chunks and line.startswith(" "):
            chunks[-1].append(line)
    return ["\n".join(c) for c in chunks]


def test_check_without_explain_prints_only_the_summary(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "meter.yaml").write_text(PROFILE)
    (tmp_path / "box.yaml").write_text(CONFIG)
    assert main(["check", "-c", str(tmp_path / "box.yaml")]) == 0
    assert capsys.readouterr().out == "2 machines, 3 sources, 6 tags\n"
