"""Device profiles: a tag list in its own file, reused by sources with per-machine changes
(fields of a tag by name, a tag left out, extra tags); checked like tags written in the config,
with problems named by profile file and line; the shipped profiles cite their source and read
the demo's devices (a real pymodbus server each) correctly."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import yaml

from adapters.base import AdapterContext, registry
from adapters.modbus.adapter import ModbusAdapter
from collector.cli import main
from collector.config import ConfigError, load_config
from collector.demo.press import FIRMWARE, PressSimulator
from collector.model import GOOD, SourceHealth
from tests.kit.ports import free_port
from tests.kit.sinks import Sink
from tests.kit.waiting import wait_for

registry()
ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "profiles"

METER = """\
device: test meter
reference: test table
protocol: modbus
tags:
  - {name: voltage, register: input, address: 0, type: float32, unit: V}
  - {name: current, register: input, address: 6, type: float32, unit: A}
  - {name: power, register: input, address: 52, type: float32, unit: W}
  - {name: energy, register: input, address: 72, type: float32, unit: kWh}
"""


def write(folder: Path, sources: str, profile: str = METER) -> Path:
    (folder / "profiles").mkdir(exist_ok=True)
    (folder / "profiles" / "meter.yaml").write_text(profile)
    config = folder / "collector.yaml"
    config.write_text(f"machines:\n  - id: press07\n    sources:\n{sources}")
    return config


def problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    return [str(p) for p in caught.value.problems]


SOURCE = """\
      - id: energy
        protocol: modbus
        host: 127.0.0.1
        profile: profiles/meter.yaml
"""


def test_profile_tags_with_changes_by_name_a_tag_left_out_and_an_extra(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SOURCE + """\
        tags:
          - {name: power, scale: 0.001, unit: kW}
          - {name: energy, omit: true}
          - {name: frequency, register: input, address: 70, type: float32, unit: Hz}
"""))
    source = config.machines[0].sources[0]
    assert source.profile == "profiles/meter.yaml"
    assert [(t.name, t.address, t.type, t.unit, t.scale) for t in source.tags] == [
        ("voltage", 0, "float32", "V", 1.0), ("current", 6, "float32", "A", 1.0),
        ("power", 52, "float32", "kW", 0.001), ("frequency", 70, "float32", "Hz", 1.0)]
    assert config.tag_origin(0, 0, 0).profile_index == 0
    assert config.tag_origin(0, 0, 2).overridden == frozenset({"scale", "unit"})
    assert config.tag_origin(0, 0, 3).profile_index is None


def test_one_profile_serves_several_machines(tmp_path: Path) -> None:
    config = write(tmp_path, SOURCE)
    text = config.read_text() + "  - id: press08\n    sources:\n" + SOURCE
    config.write_text(text)
    assert load_config(config).counts() == (2, 2, 8)


def test_a_bad_profile_tag_names_the_profile_file_line_and_the_source(tmp_path: Path) -> None:
    config = write(tmp_path, SOURCE, METER.replace("address: 6, type: float32",
                                                   "address: 6, type: float33"))
    (line,) = problems(config)
    assert line.split(": ", 1)[0].endswith("profiles/meter.yaml")  # relative to the folder
    assert ": tags[1].type: 'float33' is not one of" in line
    assert "(profile of machine 'press07' source 'energy', machines[0].sources[0].profile)" in line
    assert line.endswith("(line 6)")


def test_a_bad_change_names_the_config_line(tmp_path: Path) -> None:
    config = write(tmp_path, SOURCE + """\
        tags:
          - {name: power, scale: lots}
          - {name: powr, unit: kW}
""")
    lines = problems(config)
    assert lines[0].startswith("machines[0].sources[0].tags[0].scale: ")  # the config's entry
    assert lines[0].endswith("(line 9)")
    assert any(p.startswith("machines[0].sources[0].tags[1].address: required field is missing"
                            " (no tag of this name in the profile profiles/meter.yaml to change")
               and p.endswith("(line 10)") for p in lines), lines


@pytest.mark.parametrize(("profile", "sources", "wanted"), [
    (METER, SOURCE.replace("meter.yaml", "metre.yaml"),
     "machines[0].sources[0].profile: profile file 'profiles/metre.yaml' not found"),
    (METER.replace("protocol: modbus", "protocol: opcua"), SOURCE,
     "machines[0].sources[0].profile: profile 'profiles/meter.yaml' is for protocol 'opcua', "
     "but this source is 'modbus'"),
    (METER + "unit: 1\n", SOURCE, "profiles/meter.yaml: unit: unknown field 'unit' in a profile"),
    ("tags: {voltage: 1}\n", SOURCE, "profiles/meter.yaml: a profile is a YAML mapping with "
     "`tags:`"),
    ("tags:\n  - {name: a, address: 1\n", SOURCE, "profiles/meter.yaml: not valid YAML"),
    (METER.replace("name: power,", "name: voltage,"), SOURCE,
     "profiles/meter.yaml: tags[2].name: duplicate tag name 'voltage' in machine 'press07'"),
    (METER, SOURCE + "        tags: [{name: volts, omit: true}]\n",
     "machines[0].sources[0].tags[0].omit: there is no tag 'volts' in the profile"),
])
def test_profile_problems_are_one_clear_line_each(tmp_path: Path, profile: str, sources: str,
                                                  wanted: str) -> None:
    lines = problems(write(tmp_path, sources, profile))
    assert any(wanted in line for line in lines), lines


def test_collector_check_prints_the_profile_file_instead_of_the_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, SOURCE + "        tags: [{name: power, scale: x}]\n",
          METER.replace("address: 0,", "address: -1,"))
    assert main(["check", "-c", "collector.yaml"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("profiles/meter.yaml: tags[0].address: ")
    assert err[0].endswith("(line 5)")
    assert err[1].startswith("collector.yaml: machines[0].sources[0].tags[0].scale: ")
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_profiles_cite_their_register_map_and_pass_check(tmp_path: Path,
                                                                 path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    assert data["device"] and data["reference"] and data["protocol"] == "modbus"
    config = tmp_path / "box.yaml"
    config.write_text(f"machines:\n  - id: m\n    sources:\n      - {{id: s, protocol: modbus, "
                      f"host: 127.0.0.1, profile: {path}}}\n")
    assert load_config(config).counts() == (1, 1, len(data["tags"]))


async def read_once(config_text: str, folder: Path) -> dict[str, object]:
    path = folder / "box.yaml"
    path.write_text(config_text)
    config = load_config(path)
    machine = config.machines[0]
    sink = Sink()
    source = machine.sources[0]
    adapter = ModbusAdapter(AdapterContext(machine, source, sink,
                                           SourceHealth(machine.id, source.id, "modbus")))
    task = asyncio.create_task(adapter.run())
    try:
        await wait_for(lambda: {r.tag for r in sink.readings} >= {t.name for t in source.tags},
                       15, "a reading of every tag")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    latest = sink.latest()
    assert all(r.quality is GOOD for r in latest.values()), latest
    return {tag: r.value for tag, r in latest.items()}


async def test_shipped_profiles_read_the_demo_devices(tmp_path: Path) -> None:
    press = PressSimulator(free_port(), free_port(), random.Random(5))
    await press.start()
    try:
        meter = await read_once(
            f"machines:\n  - id: press07\n    sources:\n      - {{id: energy, protocol: modbus, "
            f"host: 127.0.0.1, port: {press.meter_port}, max_registers: 80, "
            f"profile: {SHIPPED / 'sdm630.yaml'}, tags: [{{name: energy_total, omit: true}}, "
            f"{{name: energy_export, omit: true}}]}}\n", tmp_path)
        io = await read_once(
            f"machines:\n  - id: press07\n    sources:\n      - {{id: io, protocol: modbus, "
            f"host: 127.0.0.1, port: {press.io_port}, "
            f"profile: {SHIPPED / 'demo-press-io.yaml'}}}\n", tmp_path)
    finally:
        await press.stop()
    model = press.model
    for phase in (1, 2, 3):
        assert 220 < meter[f"voltage_l{phase}"] < 240  # type: ignore[operator]
    assert meter["frequency"] == pytest.approx(50, abs=0.5)
    assert meter["energy_import"] == pytest.approx(model.energy_kwh, rel=1e-3)
    assert io["firmware"] == FIRMWARE
    assert io["mode_selector"] == 2
    assert io["counter_enabled"] is True
    assert io["parts_total"] == pytest.approx(model.parts, abs=3)
    assert io["light_green"] is True  # the press starts running
