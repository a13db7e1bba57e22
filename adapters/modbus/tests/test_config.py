"""Config validation through `collector.config.parse_config`: the path and message a
technician sees for every rule, and the shipped sample and example configs accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.modbus.config import ModbusSourceConfig, ModbusTagConfig
from collector.config import ConfigError, parse_config

from .conftest import SAMPLE

ROOT = Path(__file__).resolve().parents[3]


def problems_of(source: dict, tags: list[dict] | None = None) -> list[str]:
    src = {"id": "io", "protocol": "modbus", "host": "127.0.0.1", **source}
    if tags is not None:
        src["tags"] = tags
    text = yaml.safe_dump({"machines": [{"id": "press07", "sources": [src]}]}, sort_keys=False)
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return [f"{p.path}: {p.message}" for p in info.value.problems]


TAG = "machines[0].sources[0].tags[0]"
SRC = "machines[0].sources[0]"


@pytest.mark.parametrize(("tag", "path", "words"), [
    ({"register": "coil", "type": "float32"}, f"{TAG}.type", "a coil holds a single bit"),
    ({"register": "discrete", "type": "uint16"}, f"{TAG}.type", "must be bool"),
    ({"type": "float32", "bit": 3}, f"{TAG}.bit", "remove it for type float32"),
    ({"register": "coil", "bit": 3}, f"{TAG}.bit", "remove it for a coil"),
    ({"type": "bool", "bit": 16}, f"{TAG}.bit", "less than or equal to 15"),
    ({"type": "uint16", "length": 2}, f"{TAG}.length", "only for type string"),
    ({"type": "string"}, f"{TAG}.length", "a string needs 'length'"),
    ({"type": "int16", "byte": "high"}, f"{TAG}.byte", "only for int8/uint8"),
    ({"type": "bool", "bit": 3, "byte_order": "BADC"}, f"{TAG}.byte_order",
     "BADC does not apply to type bool (a bit has no byte order); remove byte_order"),
    ({"type": "string", "length": 2, "byte_order": "CDAB"}, f"{TAG}.byte_order",
     "use ABCD or BADC or DCBA"),
    ({"type": "float32", "address": 65535}, f"{TAG}.address",
     "runs past the last address 65535 (to 65536)"),
    ({"type": "float64", "address": 65533}, f"{TAG}.address", "occupies 4 registers"),
    ({"type": "string", "length": 10, "address": 65530}, f"{TAG}.address", "runs past"),
    ({"address": 65536}, f"{TAG}.address", "less than or equal to 65535"),
    ({"address": -1}, f"{TAG}.address", "greater than or equal to 0"),
    ({"type": "bool", "bit": 1, "scale": 2}, f"{TAG}.scale", "numbers only"),
    ({"type": "string", "length": 2, "offset": 1}, f"{TAG}.offset", "numbers only"),
    ({"type": "bool", "bit": 1, "nan_value": 1}, f"{TAG}.nan_value", "numbers only"),
    ({"type": "string", "length": 2, "clamp_max": 5}, f"{TAG}.clamp_max", "numbers only"),
    ({"clamp_min": 10, "clamp_max": 5}, f"{TAG}.clamp_max", "not be less than clamp_min (10)"),
    ({"type": "float"}, f"{TAG}.type", "'float' is not one of"),
    ({"register": "holdings"}, f"{TAG}.register", "'holdings' is not one of"),
    ({"byte_order": "abcd"}, f"{TAG}.byte_order", "is not one of"),
    ({"adress": 3}, f"{TAG}.adress", "unknown field 'adress'"),
    ({"unit_id": 256}, f"{TAG}.unit_id", "less than or equal to 255"),
])
def test_tag_rules(tag: dict, path: str, words: str) -> None:
    problems = problems_of({}, [{"name": "t", "address": 0, **tag}])
    assert any(p.startswith(path + ": ") and words in p for p in problems), problems


@pytest.mark.parametrize(("source", "path", "words"), [
    ({"serial": "/dev/ttyUSB0"}, f"{SRC}.host", "either 'host'"),
    ({"host": None}, f"{SRC}.host", "not neither"),
    ({"baudrate": 19200}, f"{SRC}.baudrate", "serial port setting"),
    ({"parity": "E"}, f"{SRC}.parity", "serial port setting"),
    ({"host": None, "serial": "/dev/ttyUSB0", "framer": "tcp"}, f"{SRC}.framer", "needs 'host'"),
    ({"host": None, "serial": "/dev/ttyUSB0", "port": 502}, f"{SRC}.port", "TCP port"),
    ({"host": None, "serial": "/dev/ttyUSB0", "parity": "X"}, f"{SRC}.parity", "is not one of"),
    ({"host": None, "serial": "/dev/ttyUSB0", "stopbits": 3}, f"{SRC}.stopbits", ""),
    ({"max_registers": 126}, f"{SRC}.max_registers", "less than or equal to 125"),
    ({"max_bits": 2001}, f"{SRC}.max_bits", "less than or equal to 2000"),
    ({"unit": 300}, f"{SRC}.unit", "less than or equal to 255"),
    ({"interval": 0}, f"{SRC}.interval", "more than 0"),
    ({"interval": "fast"}, f"{SRC}.interval", "not a duration"),
    ({"reconnect_delay": "10s", "reconnect_delay_max": "1s"}, f"{SRC}.reconnect_delay_max",
     "not be less than"),
    ({"framer": "udp"}, f"{SRC}.framer", "is not one of"),
])
def test_source_rules(source: dict, path: str, words: str) -> None:
    problems = problems_of(source)
    assert any(p.startswith(path + ": ") and words in p for p in problems), problems


def test_string_longer_than_one_request() -> None:
    problems = problems_of({"max_registers": 40}, [
        {"name": "ok", "address": 0}, {"name": "s", "address": 0, "type": "string", "length": 50}])
    assert problems == [f"{SRC}.tags[1].length: 50 registers do not fit in one request of at "
                        "most max_registers=40; shorten the string or raise max_registers"]


def test_problem_carries_the_line() -> None:
    text = SAMPLE.read_text().replace("type: int8, byte: high", "type: int16, byte: high")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    (problem,) = info.value.problems
    assert problem.path == "machines[0].sources[0].tags[7].byte"
    assert problem.line is not None
    line = text.splitlines()[problem.line - 1]
    assert "i8_high" in line


def test_several_problems_reported_together() -> None:
    problems = problems_of({}, [{"name": "a", "address": 0, "register": "coil", "type": "int16",
                                 "bit": 2, "length": 3}])
    assert {p.split(":")[0] for p in problems} >= {f"{TAG}.type", f"{TAG}.bit", f"{TAG}.length"}


@pytest.mark.parametrize(("type_", "order"), [
    ("uint8", "BADC"), ("int8", "DCBA"), ("int8", "CDAB"), ("int16", "CDAB"), ("uint16", "DCBA"),
    ("float16", "CDAB"), ("bool", "CDAB")])
def test_byte_orders_written_for_telegraf_are_accepted(type_: str, order: str) -> None:
    """Telegraf's INT8L/INT8H on a byte-swapped device, and CDAB on one register (as ABCD)."""
    tag = ModbusTagConfig(name="x", address=3, type=type_, byte_order=order)
    assert tag.byte_order == order and tag.width == 1


def test_defaults() -> None:
    tag = ModbusTagConfig(name="x", address=3)
    assert (tag.register, tag.value_type, tag.byte_order, tag.width) == ("holding", "uint16", "ABCD", 1)
    assert ModbusTagConfig(name="c", address=3, register="coil").value_type == "bool"
    source = ModbusSourceConfig(id="s", protocol="modbus", serial="/dev/ttyUSB0")
    assert (source.transport, source.baudrate, source.parity, source.stopbits, source.bytesize) == \
        ("rtu", 9600, "N", 1, 8)
    gateway = ModbusSourceConfig(id="g", protocol="modbus", host="10.0.0.5", framer="rtu")
    assert (gateway.transport, gateway.port, gateway.reconnect_delay_max) == ("rtu", 502, 30.0)


@pytest.mark.parametrize("path", [SAMPLE, ROOT / "config" / "modbus-io-module.yaml",
                                  ROOT / "config" / "sdm630-energy-meter.yaml"],
                         ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = parse_config(path.read_text())
    sources = [s for m in config.machines for s in m.sources if s.protocol == "modbus"]
    assert sources and all(s.tags for s in sources)


def test_sample_counts() -> None:
    config = parse_config(SAMPLE.read_text())
    assert config.counts() == (1, 1, 52)
