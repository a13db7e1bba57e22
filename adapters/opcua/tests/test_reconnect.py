"""Server stopped and restarted on the same port: a visible gap, then values again, unattended."""

from __future__ import annotations

import asyncio
import time

import pytest
from asyncua import ua

from collector.model import BAD, GOOD, now_us
from tests.kit.waiting import wait_for

from .conftest import Running, source_config
from .press07 import press07_server

TAGS = [{"name": "counter", "node": "ns=2;s=Press07.Counter"},
        {"name": "temperature", "node": "ns=2;i=42"}]


@pytest.mark.parametrize(("mode", "outage"), [("subscribe", 10.0), ("poll", 3.0)])
async def test_server_restart_leaves_a_gap_and_recovers(mode: str, outage: float) -> None:
    srv = press07_server()
    srv.start()
    try:
        source = source_config(srv.url, TAGS, mode=mode, reconnect_delay_max="1s", timeout="2s")
        async with Running(source) as run:
            sink = run.sink
            await srv.write("Counter", 1, ua.VariantType.Int32)
            await wait_for(lambda: sink.of("counter") and sink.last("counter").value == 1, what="counter 1")
            await wait_for(lambda: sink.of("temperature"), what="temperature")

            stopped_at = now_us()
            await asyncio.to_thread(srv.stop)
            await wait_for(lambda: sink.last("counter").quality is BAD, what="a BAD reading after the stop")
            await wait_for(lambda: not run.health.connected, what="health says disconnected")
            assert "machine press07, source hmi" in run.last_error
            bad_count = len(sink.readings)
            await asyncio.sleep(outage - (now_us() - stopped_at) / 1e6)
            assert len(sink.readings) == bad_count  # nothing during the outage: no stale good values

            restarted = time.monotonic()
            await asyncio.to_thread(srv.start)  # a brand-new server on the same port
            await srv.write("Counter", 2, ua.VariantType.Int32)
            await wait_for(lambda: sink.last("counter").value == 2, 20, "counter 2 after the restart")
            await wait_for(lambda: sink.last("temperature").quality is GOOD, 20, "temperature good again")
            assert time.monotonic() - restarted < 10
            assert run.health.connected

            for tag in ("counter", "temperature"):
                series = sink.of(tag)
                bad = [r for r in series if r.quality is BAD]
                assert len(bad) == 1, (tag, series)  # exactly one marker per outage
                gap_start = bad[0].ts
                before = [r for r in series if r.ts < gap_start]
                after = [r for r in series if r.ts > gap_start]
                assert before and before[-1].quality is GOOD
                assert after and all(r.quality is GOOD for r in after)
                # the first value after the gap is dated after the marker, even for an unchanged value
                assert after[0].ts > gap_start and gap_start >= stopped_at
    finally:
        srv.close()


async def test_unreachable_at_start_then_appears() -> None:
    srv = press07_server()  # port chosen, server not started yet
    try:
        source = source_config(srv.url, TAGS, reconnect_delay_max="1s", timeout="2s")
        async with Running(source) as run:
            await wait_for(lambda: run.health.last_error, what="an error")
            assert run.health.last_error == (
                f"machine press07, source hmi: connection refused by 127.0.0.1:{srv.port}; is the OPC UA "
                "server running and is the port in 'endpoint' right?")
            assert [r.quality for r in run.sink.readings] == [BAD, BAD]
            await asyncio.to_thread(srv.start)
            await wait_for(lambda: run.sink.last("temperature").quality is GOOD, 20, "values once it is up")
            assert run.sink.last("temperature").value == 20.5
    finally:
        srv.close()


async def test_server_ending_the_subscription_triggers_resubscribe(opc_server) -> None:
    """A server that drops our subscription (stale/lifetime) is noticed and it is recreated."""
    source = source_config(opc_server.url, TAGS[:1], timeout="2s")
    async with Running(source) as run:
        await opc_server.write("Counter", 5, ua.VariantType.Int32)
        await wait_for(lambda: run.sink.of("counter") and run.sink.last("counter").value == 5, what="5")

        async def drop_subscriptions() -> None:
            service = opc_server.server.iserver.subscription_service
            await service.delete_subscriptions(list(service.subscriptions))

        await opc_server.call(drop_subscriptions)
        await wait_for(lambda: run.health.extra.get("retry_in_s") is not None or
                    run.sink.last("counter").quality is BAD, 30, "the loss to be noticed")
        await opc_server.write("Counter", 6, ua.VariantType.Int32)
        await wait_for(lambda: run.sink.last("counter").value == 6, 30, "values after resubscribing")
