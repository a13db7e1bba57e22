"""`collector modbus-scan` against pymodbus' server: the table a technician reads, the YAML
line to paste (checked by loading it), and one-line errors with a non-zero exit."""

from __future__ import annotations

import argparse
import asyncio

import pytest
import yaml

from adapters.modbus.scan import add_cli, handler
from collector.config import parse_config
from tests.kit.modbus import SilentDevice, sim_device
from tests.kit.ports import free_port


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="collector")
    add_cli(parser.add_subparsers())
    return parser.parse_args(["modbus-scan", *argv])


async def scan(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = parse(*argv)
    assert args.func is handler
    code = await asyncio.to_thread(handler, args)  # the handler runs its own event loop
    out, err = capsys.readouterr()
    return code, out, err


async def test_scan_shows_every_interpretation(devices, capsys) -> None:
    device = await devices([sim_device(1)])
    await device.set("input", 10, [0x4365, 0xB333, 0xFFFE, 0x0000, 0x002A])  # 229.7 V, -2, 42
    code, out, err = await scan(capsys, "--host", "127.0.0.1", "--port", str(device.port),
                                "--register", "input", "--start", "10", "--count", "5")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"# input 10..14 of unit 1 at 127.0.0.1:{device.port}"
    assert "   10  0x4365   17253   17253" in lines
    assert "   12  0xFFFE   65534      -2" in lines
    float_row = next(line for line in lines if "10-11 float32" in line)
    assert "ABCD 229.7" in float_row and "CDAB" in float_row and "DCBA" in float_row
    assert any("10-11 int32    ABCD 1130738483  CDAB -1288486043" in line for line in lines)
    assert any("10-11 uint32" in line and "CDAB 3006481253" in line for line in lines)
    assert "(second register of the float32 at 10)" in out
    assert not any(line.strip().startswith("14-15") for line in lines)  # no pair past the end
    # the suggested lines paste into a config that validates
    tags = [yaml.safe_load(line.split("yaml: - ", 1)[1]) for line in lines if "yaml: - " in line]
    assert tags[0] == {"name": "input_10", "register": "input", "address": 10,
                       "type": "float32", "byte_order": "ABCD"}
    assert tags[1]["type"] == "int16" and tags[1]["address"] == 12
    config = parse_config(yaml.safe_dump({"machines": [{"id": "m", "sources": [
        {"id": "s", "protocol": "modbus", "host": "127.0.0.1", "tags": tags}]}]}))
    assert config.counts() == (1, 1, 4)


async def test_scan_finds_a_swapped_float(devices, capsys) -> None:
    device = await devices([sim_device(1)])
    await device.set("holding", 0, [0xB333, 0x4365])  # 229.7 with the words swapped
    code, out, _ = await scan(capsys, "--host", "127.0.0.1", "--port", str(device.port),
                              "--count", "2")
    assert code == 0
    assert "type: float32, byte_order: CDAB}" in out


async def test_scan_coils(devices, capsys) -> None:
    device = await devices([sim_device(1)])
    await device.set("coil", 2, [True])
    code, out, _ = await scan(capsys, "--host", "127.0.0.1", "--port", str(device.port),
                              "--register", "coil", "--count", "4")
    assert code == 0
    assert "    2  1    yaml: - {name: coil_2, register: coil, address: 2, type: bool}" in out
    assert "    1  0" in out


async def test_scan_over_serial(pty_pair, devices, capsys) -> None:
    from pymodbus import FramerType

    device = await devices([sim_device(5)], serial=pty_pair.a, framer=FramerType.RTU)
    await device.set("holding", 3, [1234], unit=5)
    code, out, err = await scan(capsys, "--serial", pty_pair.b, "--baudrate", "115200",
                                "--unit", "5", "--start", "3", "--count", "1")
    assert (code, err) == (0, "")
    assert "    3  0x04D2    1234    1234" in out
    assert f"at {pty_pair.b} 115200 8N1" in out


async def test_connection_refused(capsys) -> None:
    port = free_port()
    code, out, err = await scan(capsys, "--host", "127.0.0.1", "--port", str(port))
    assert code == 1 and out == ""
    assert err == f"error: cannot connect to 127.0.0.1:{port}: connection refused (nothing " \
                  "listens on that port; check --port)\n"


async def test_no_answer(capsys) -> None:
    silent = await SilentDevice().start()
    try:
        code, _, err = await scan(capsys, "--host", "127.0.0.1", "--port", str(silent.port),
                                  "--timeout", "300ms")
    finally:
        await silent.stop()
    assert code == 1
    assert err == (f"error: no answer from unit 1 at 127.0.0.1:{silent.port} within 0.3 s "
                   "(check --unit, the wiring and the line settings)\n")


async def test_illegal_address(devices, capsys) -> None:
    device = await devices([sim_device(1, registers=((0, 10),))])
    code, _, err = await scan(capsys, "--host", "127.0.0.1", "--port", str(device.port),
                              "--start", "5", "--count", "10")
    assert code == 1
    assert err.startswith("error: unit 1 answered exception 2 (illegal data address) for "
                          "holding 5..14")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--count", "126"], "error: --count must be 1..125 for holding (got 126)"),
    (["--register", "coil", "--count", "2001"], "error: --count must be 1..2000 for coil"),
    (["--start", "65535", "--count", "2"], "error: --start 65535 with --count 2 runs outside"),
    (["--unit", "256"], "error: --unit must be 0..255"),
    (["--timeout", "soon"], "error: 'soon' is not a duration"),
])
def test_bad_arguments(argv: list[str], message: str, capsys) -> None:
    code = handler(parse("--host", "127.0.0.1", *argv))
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith(message) and err.count("\n") == 1


def test_serial_port_that_does_not_exist(tmp_path, capsys) -> None:
    code = handler(parse("--serial", str(tmp_path / "ttyUSB9")))
    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith(f"error: cannot open {tmp_path / 'ttyUSB9'} 9600 8N1")
