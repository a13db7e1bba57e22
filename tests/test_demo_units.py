"""The demo's simulated Modbus devices answer an unknown unit id as a real gateway does
(exception 0x0B, gateway target did not respond), quietly: no traceback in the demo window."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from collector.demo import _quiet_libraries
from collector.demo.press import HR_MODE, PressSimulator
from tests.kit.ports import free_port


@pytest.fixture
def demo_logging() -> Iterator[None]:
    names = ("asyncua", "pymodbus", "amqtt", "transitions")
    levels = {name: logging.getLogger(name).level for name in names}
    _quiet_libraries()
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


async def test_another_unit_id_gets_gateway_exception_0x0b_and_nothing_in_the_log(
        demo_logging: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    press = PressSimulator(free_port(), free_port(), random.Random(7))
    await press.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=press.io_port, timeout=2, retries=0)
    try:
        assert await client.connect()
        caplog.clear()
        for unit in (5, 0, 247):
            answer = await client.read_holding_registers(0, count=4, device_id=unit)
            assert answer.isError() and answer.exception_code == 0x0B, (unit, answer)
        mode = await client.read_holding_registers(HR_MODE, count=1, device_id=1)
        assert mode.registers == [0x0102]
    finally:
        client.close()
        await press.stop()
    loud = [(r.name, r.levelname, r.getMessage()[:200]) for r in caplog.records
            if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == []
