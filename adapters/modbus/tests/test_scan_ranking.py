"""`collector modbus-scan` suggests the most plausible reading of real-world register layouts
served by pymodbus' server: energy-meter floats in all four byte orders, packed status words,
byte-sized codes, ASCII firmware strings; `--as TYPE` forces one; and the demo's own devices
(the SDM630 meter and the press's I/O module), including a scan with a unit id they do not have.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from typing import Any

import pytest
import yaml

from adapters.modbus.scan import handler
from collector.config import parse_config
from collector.demo.press import (
    FIRMWARE,
    HR_FIRMWARE,
    HR_MODE,
    HR_STATUS,
    SDM_CURRENT,
    SDM_IMPORT,
    SDM_VOLTAGE,
    PressSimulator,
)
from tests.kit.modbus import encode, sim_device
from tests.kit.ports import free_port

from .test_scan import parse, scan


def suggested(out: str) -> list[dict[str, Any]]:
    """The YAML tag lines to paste (not the commented alternatives), parsed."""
    return [yaml.safe_load(line.split("yaml: - ", 1)[1]) for line in out.splitlines()
            if "yaml: - " in line]


def alternatives(out: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(line.split("#  or: - ", 1)[1]) for line in out.splitlines()
            if "#  or: - " in line]


def shape(tag: dict[str, Any]) -> tuple[Any, ...]:
    """What a suggestion says about the registers, without its name."""
    return (tag["address"], tag["type"], tag.get("byte_order"), tag.get("bit"),
            tag.get("byte"), tag.get("length"))


def floats(values: list[float], order: str) -> list[int]:
    return [w for v in values for w in encode(v, "float32", order)]


METER = [231.9092, 230.4, 229.77, 13.62, 0.87, 14.01]  # V, V, V, A, pf, A: noisy and short
ENERGY = [15234.56, 49.98, 3.275]  # kWh, Hz, kW


def text(s: str, registers: int) -> list[int]:
    return encode(s.ljust(registers * 2, "\0"), "string")


LAYOUTS = {
    # energy meters: float32 measurements, one per two registers, in each word and byte order
    **{f"meter-{order}": (
        floats(METER + ENERGY, order),
        [(2 * i, "float32", order, None, None, None) for i in range(len(METER + ENERGY))])
       for order in ("ABCD", "CDAB", "BADC", "DCBA")},
    # an I/O module's packed status words (alarm bit 15 + input bits) and two byte codes
    "status-words": (
        [0x8008, 0x4001, 0x0102, 0x0003, 0x8000 | 0x0100 | 0x0004],
        [(0, "bool", None, 3, None, None), (0, "bool", None, 15, None, None),
         (1, "bool", None, 0, None, None), (1, "bool", None, 14, None, None),
         (2, "uint8", None, None, "high", None), (2, "uint8", None, None, "low", None),
         (3, "uint16", None, None, None, None),
         (4, "bool", None, 2, None, None), (4, "bool", None, 8, None, None),
         (4, "bool", None, 15, None, None)]),
    # device identification: firmware and serial number as ASCII, high byte first
    "ascii-strings": (
        text("SDM630-Modbus V2", 8) + [0x0000] + text("SN 2203-0417", 6),
        [(0, "string", None, None, None, 8), (8, "uint16", None, None, None, None),
         (9, "string", None, None, None, 6)]),
    # a float next to small integers, and a negative temperature as int16
    "mixed": (
        [0x0000, *encode(229.7, "float32"), 0xFFF6, 0x002A],
        [(0, "uint16", None, None, None, None), (1, "float32", "ABCD", None, None, None),
         (3, "int16", None, None, None, None), (4, "uint16", None, None, None, None)]),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
async def test_suggests_the_most_plausible_reading_of_real_world_layouts(
        layout: str, devices: Any, capsys: pytest.CaptureFixture[str]) -> None:
    words, expected = LAYOUTS[layout]
    device = await devices([sim_device(1)])
    await device.set("holding", 0, words)
    code, out, err = await scan(capsys, "--host", "127.0.0.1", "--port", str(device.port),
                                "--start", "0", "--count", str(len(words)))
    assert (code, err) == (0, "")
    tags = suggested(out)
    assert [shape(t) for t in tags] == expected, out
    # every suggestion pastes into a config that validates, names unique
    config = parse_config(yaml.safe_dump({"machines": [{"id": "m", "sources": [
        {"id": "s", "protocol": "modbus", "host": "127.0.0.1", "tags": tags}]}]}))
    assert config.counts()[2] == len(expected)


async def test_values_bits_bytes_and_text_are_shown(devices: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    device = await devices([sim_device(1)])
    await device.set("holding", 0, [*encode(231.9092, "float32"), 0x8008, 0x0102, 0x494F])
    _, out, _ = await scan(capsys, "--host", "127.0.0.1", "--port", str(device.port),
                           "--count", "5")
    assert "float32 ABCD: 231.9092" in out
    assert "bits set: 3 15 · bytes: high 128 low 8" in out
    assert "bytes: high 1 low 2" in out
    assert "text: 'IO'" in out
    # the large integer the float's first word makes is offered, but only as a comment
    assert {"name": "holding_0", "register": "holding", "address": 0, "type": "uint16"} \
        in alternatives(out)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--as", "float32"], [(0, "float32", "CDAB", None, None, None),
                           (2, "float32", "CDAB", None, None, None)]),
    (["--as", "float32", "--byte-order", "ABCD"], [(0, "float32", "ABCD", None, None, None),
                                                   (2, "float32", "ABCD", None, None, None)]),
    (["--as", "uint16"], [(a, "uint16", None, None, None, None) for a in range(4)]),
    (["--as", "string"], [(0, "string", None, None, None, 4)]),
])
async def test_as_forces_one_type(argv: list[str], expected: list[tuple[Any, ...]],
                                  devices: Any, capsys: pytest.CaptureFixture[str]) -> None:
    device = await devices([sim_device(1)])
    await device.set("holding", 0, floats([229.7, 50.01], "CDAB"))
    code, out, err = await scan(capsys, "--host", "127.0.0.1", "--port", str(device.port),
                                "--count", "4", *argv)
    assert (code, err) == (0, "")
    assert [shape(t) for t in suggested(out)] == expected
    assert alternatives(out) == []


async def test_as_bool_lists_the_bits_set(devices: Any,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    device = await devices([sim_device(1)])
    await device.set("holding", 0, [0x0005])
    _, out, _ = await scan(capsys, "--host", "127.0.0.1", "--port", str(device.port),
                           "--count", "1", "--as", "bool")
    assert [(t["bit"], t["name"]) for t in suggested(out)] == [(0, "holding_0_bit0"),
                                                              (2, "holding_0_bit2")]


@pytest.mark.parametrize(("argv", "message"), [
    (["--byte-order", "CDAB"], "error: --byte-order goes with --as TYPE"),
    (["--as", "float64", "--count", "2"], "error: --as float64 needs --count 4 or more"),
    (["--as", "uint16", "--register", "coil"], "error: --as reads registers; a coil is"),
])
def test_as_with_bad_arguments(argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code = handler(parse("--host", "127.0.0.1", *argv))
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith(message) and err.count("\n") == 1


@pytest.fixture
async def press() -> Any:
    sim = PressSimulator(free_port(), free_port(), random.Random(11))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_demo_sdm630_meter_floats_are_suggested_as_float32(
        press: PressSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(press.meter_port)
    code, out, _ = await scan(capsys, "--host", "127.0.0.1", "--port", port,
                              "--register", "input", "--start", str(SDM_VOLTAGE), "--count", "12")
    assert code == 0
    tags = suggested(out)
    assert [shape(t) for t in tags] == [(a, "float32", "ABCD", None, None, None)
                                        for a in range(SDM_VOLTAGE, SDM_CURRENT + 6, 2)]
    voltage = next(line for line in out.splitlines() if "yaml: - {name: input_0," in line)
    assert 225 < float(voltage.rsplit(": ", 1)[1]) < 235  # the value, as a comment
    code, out, _ = await scan(capsys, "--host", "127.0.0.1", "--port", port,
                              "--register", "input", "--start", str(SDM_IMPORT), "--count", "2")
    assert [shape(t) for t in suggested(out)] == [(SDM_IMPORT, "float32", "ABCD", None, None,
                                                   None)]


async def test_demo_io_module_status_word_mode_byte_and_firmware_text(
        press: PressSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    port = str(press.io_port)

    async def best(start: int, count: int) -> list[tuple[Any, ...]]:
        code, out, _ = await scan(capsys, "--host", "127.0.0.1", "--port", port,
                                  "--start", str(start), "--count", str(count))
        assert code == 0
        return [shape(t) for t in suggested(out)]

    status = await best(HR_STATUS, 1)
    assert (HR_STATUS, "bool", None, 15, None, None) in status  # counter enabled
    assert all(t[1] == "bool" for t in status)
    assert await best(HR_MODE, 1) == [(HR_MODE, "uint8", None, None, "high", None),
                                      (HR_MODE, "uint8", None, None, "low", None)]
    assert await best(HR_FIRMWARE, 8) == [(HR_FIRMWARE, "string", None, None, None, 8)]
    _, out, _ = await scan(capsys, "--host", "127.0.0.1", "--port", port,
                           "--start", str(HR_FIRMWARE), "--count", "8")
    assert f"text (8 registers): {FIRMWARE!r}" in out


async def test_demo_device_scanned_with_another_unit_id_answers_quietly(
        press: PressSimulator, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    from collector.demo import _quiet_libraries

    names = ("asyncua", "pymodbus", "amqtt", "transitions")
    levels = {name: logging.getLogger(name).level for name in names}
    _quiet_libraries()
    try:
        caplog.set_level(logging.DEBUG)
        code, out, err = await scan(capsys, "--host", "127.0.0.1", "--port",
                                    str(press.io_port), "--unit", "5")
        await asyncio.sleep(0.2)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert (code, out) == (1, "")
    # what the command printed (an earlier command run in this process may have left the
    # collector's log handler on stderr: its lines are checked through caplog below)
    printed = "".join(line for line in err.splitlines(keepends=True)
                      if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", line))
    assert printed == ("error: unit 5 answered exception 11 (gateway target did not respond) "
                       "for holding 0..9\n")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []
