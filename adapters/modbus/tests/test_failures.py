"""Breaking things on purpose: a device stopped and restarted mid-run, a device that hangs or
is gone while another keeps its schedule, and the reconnect backoff staying capped."""

from __future__ import annotations

import asyncio

import pytest

from collector.model import BAD, GOOD
from tests.kit.modbus import sim_device
from tests.kit.ports import free_port
from tests.kit.waiting import wait_for

from .conftest import config_with


def plc(port: int, **extra: object) -> dict:
    return {"id": "plc", "protocol": "modbus", "host": "127.0.0.1", "port": port,
            "interval": "100ms", "timeout": "300ms", "retries": 0,
            "reconnect_delay": "100ms", "reconnect_delay_max": "400ms",
            "tags": [{"name": "count", "address": 0},
                     {"name": "temp", "address": 1, "type": "float32"}], **extra}


async def test_server_stopped_and_restarted(devices, adapters) -> None:
    device = await devices([sim_device(1)])
    await device.set("holding", 0, [41, 0x41C8, 0x0000])  # 41, 25.0
    run = adapters(config_with([plc(device.port)]))
    await wait_for(lambda: len(run.sink.of("count")) >= 3)
    assert run.health.connected

    await device.stop()
    await wait_for(lambda: run.sink.of("count")[-1].quality is BAD)
    assert not run.health.connected
    assert "lost" in run.health.last_error or "cannot connect" in run.health.last_error
    await asyncio.sleep(1.0)  # stays down for several scans and reconnect attempts
    for tag in ("count", "temp"):
        assert [r.quality for r in run.sink.of(tag)].count(BAD) == 1, "the gap is marked once"
        assert run.sink.of(tag)[-1].quality is BAD, "no stale good value while down"
    down_since = run.sink.of("count")[-1].ts

    await device.set("holding", 0, [42])
    await device.start()  # same port, same data, plus the new count
    await wait_for(lambda: run.sink.of("count")[-1].quality is GOOD, within=15)
    assert run.sink.of("count")[-1].value == 42
    assert run.sink.of("temp")[-1].value == 25.0
    assert run.health.connected
    assert run.adapter.link is not None and run.adapter.link.connects >= 2
    qualities = [r.quality for r in run.sink.of("count")]
    first_bad = qualities.index(BAD)
    assert all(q is GOOD for q in qualities[:first_bad])
    assert all(q is GOOD for q in qualities[first_bad + 1:])
    assert run.sink.of("count")[first_bad + 1].ts > down_since


@pytest.mark.parametrize("failure", ["hangs", "stopped"])
async def test_dead_device_never_delays_another(failure, devices, adapters, silent) -> None:
    healthy = await devices([sim_device(1)])
    await healthy.set("holding", 0, [7, 0x3F80, 0])
    dead_port = silent.port if failure == "hangs" else free_port()
    dead = plc(dead_port, id="dead", interval="200ms", timeout="1s", retries=1)
    good = plc(healthy.port, id="good", interval="200ms")
    good["tags"] = [{"name": "ok_count", "address": 0},
                    {"name": "ok_temp", "address": 1, "type": "float32"}]
    config = config_with([dead, good])
    run_dead, run_good = adapters(config, 0), adapters(config, 1)
    await asyncio.sleep(3.0)

    ts = [r.ts for r in run_good.sink.of("ok_count")]
    assert len(ts) >= 13, f"only {len(ts)} scans in 3 s at 200 ms"
    gaps = [(b - a) / 1e6 for a, b in zip(ts, ts[1:], strict=False)]
    assert max(gaps) < 0.4 and min(gaps) > 0.05, gaps  # a wait for the dead one: >= 1 s
    assert run_good.adapter.overruns == 0
    assert run_good.health.scan_time is not None and run_good.health.scan_time < 0.1
    assert all(r.quality is GOOD and r.value == 7 for r in run_good.sink.of("ok_count"))

    assert [r.quality for r in run_dead.sink.of("count")] == [BAD]  # marked bad once
    assert not run_dead.health.last_ok
    if failure == "hangs":
        assert "no answer from unit 1" in run_dead.health.last_error
        assert run_dead.adapter.overruns >= 3  # each scan waits 2 x 1 s for nothing
    else:
        assert "cannot connect to 127.0.0.1" in run_dead.health.last_error


async def test_reconnect_backoff_doubles_up_to_the_cap(adapters) -> None:
    source = plc(free_port(), reconnect_delay="50ms", reconnect_delay_max="200ms",
                 interval="20ms")
    run = adapters(config_with([source]))
    await wait_for(lambda: run.adapter.link is not None and run.adapter.link.backoff.current == 0.2)
    scans_before = run.adapter.scans
    attempts = run.health.errors
    await asyncio.sleep(1.0)
    # at the cap: one attempt per 200 ms at most, while the 20 ms schedule keeps ticking
    assert run.health.errors - attempts <= 7
    assert run.adapter.scans - scans_before >= 20
    assert run.health.extra["retry_in_s"] <= 0.2


async def test_cancel_always_stops_the_source(devices) -> None:
    """Cancelling mid-request must stop the task (Python 3.11's wait_for can drop it)."""
    from .conftest import Running

    device = await devices([sim_device(1)])
    config = config_with([plc(device.port, interval="5ms")])
    for attempt in range(25):
        run = Running(config).start()
        await asyncio.sleep(0.013 + attempt * 0.0017)
        assert run.task is not None
        run.task.cancel()
        done, _ = await asyncio.wait([run.task], timeout=2)
        assert done, f"attempt {attempt}: the adapter ignored its cancellation"
