"""A small plant under load for the reliability tests and the soak run: a pymodbus device, an
asyncua server and a Mosquitto of its own, all with values that change on their own, and the
collector config that reads all three.

- Modbus (`press`): holding 0 is a stroke counter (+1 per tick), holdings 1.. change every tick.
- OPC UA (`lathe`): Double variables V0.. written every tick in the server's own loop.
- MQTT (`oven`): QoS 1 messages `{"seq": n, "ts": µs}`, each with a device time of its own,
  published by a paho client in a thread; `sent` holds every seq the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua

from .modbus import Device, sim_device
from .mqtt import Mosquitto, Publisher
from .opcua import OpcServer

TOPIC = "plant/oven/telemetry"


def opc_nodes(count: int) -> Any:
    async def build(server: Server, idx: int) -> dict[str, Node]:
        lathe = await server.nodes.objects.add_object(ua.NodeId("Lathe", idx), "Lathe")
        nodes = {}
        for i in range(count):
            nodes[f"v{i}"] = await lathe.add_variable(ua.NodeId(f"Lathe.V{i}", idx), f"V{i}",
                                                      ua.Variant(0.0, ua.VariantType.Double))
        return nodes

    return build


class Plant:
    """The three peers; `start()`, `stop()` and per-peer stop/start for flapping."""

    def __init__(self, workdir: Path, *, modbus_tags: int = 20, opcua_nodes: int = 10,
                 mqtt_rate: float = 100.0, tick: float = 0.1):
        self.workdir = workdir
        self.modbus_tags = modbus_tags
        self.opcua_nodes = opcua_nodes
        self.mqtt_rate = mqtt_rate
        self.tick = tick
        self.device = Device([sim_device(1, registers=((0, max(modbus_tags, 1) + 8),))])
        self.opc = OpcServer(opc_nodes(opcua_nodes))
        self.broker = Mosquitto(workdir / "broker")
        self.strokes = 0
        self.frozen = False  # the Modbus values stand still (a test compares counts)
        self.sent: list[int] = []  # seq numbers the broker acknowledged
        self._ticker: asyncio.Task[None] | None = None
        self._opc_ticker: Any = None
        self._publishing = threading.Event()
        self._publisher: threading.Thread | None = None
        self._quit = threading.Event()

    # lifecycle -------------------------------------------------------------------------
    async def start(self) -> Plant:
        await self.device.start()
        await asyncio.to_thread(self.opc.start)
        await asyncio.to_thread(self.broker.start)
        self._ticker = asyncio.create_task(self._tick_modbus())
        self._start_opc_ticker()
        return self

    def start_publishing(self) -> None:
        if self.mqtt_rate > 0 and self._publisher is None:
            self._publishing.set()
            self._publisher = threading.Thread(target=self._publish, daemon=True)
            self._publisher.start()

    def pause_publishing(self) -> None:
        self._publishing.clear()

    def resume_publishing(self) -> None:
        self._publishing.set()

    async def stop(self) -> None:
        self._quit.set()
        self._publishing.set()
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.join, 30)
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._opc_ticker is not None:
            self._opc_ticker.cancel()
        await self.device.stop()
        await asyncio.to_thread(self.opc.close)
        await asyncio.to_thread(self.broker.stop)

    # the config ------------------------------------------------------------------------
    def config(self, ledger_url: str, spool: Path, api_port: int, *, interval: str = "100ms",
               flush: str = "200ms", extra: str = "", production: bool = True,
               queue_size: int = 100_000) -> str:
        tags = "\n".join(
            f"          - {{name: h{i}, register: holding, address: {i}, type: uint16}}"
            for i in range(1, self.modbus_tags))
        nodes = "\n".join(
            f'          - {{name: v{i}, node: "ns=2;s=Lathe.V{i}"}}' for i in range(self.opcua_nodes))
        rules = """
    production:
      states:
        - {state: running, when: "h1 >= 0"}
        - {state: stopped, when: "true"}
      counters: {total: strokes}
      ideal_cycle: 100ms""" if production else ""
        return f"""
ledger:
  url: {ledger_url}
spool:
  path: {spool}
pipeline:
  flush_interval: {flush}
  queue_size: {queue_size}
api:
  port: {api_port}
  workers: 0
{extra}
machines:
  - id: press
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: {self.device.port}
        interval: {interval}
        timeout: 1s
        reconnect_delay: 200ms
        reconnect_delay_max: 1s
        tags:
          - {{name: strokes, register: holding, address: 0, type: uint16}}
{tags}{rules}
  - id: lathe
    sources:
      - id: hmi
        protocol: opcua
        endpoint: {self.opc.url}
        interval: {interval}
        timeout: 2s
        reconnect_delay: 200ms
        reconnect_delay_max: 1s
        tags:
{nodes}
  - id: oven
    sources:
      - id: sensors
        protocol: mqtt
        broker: {self.broker.url}
        qos: 1
        client_id: collector-oven-{self.broker.port}
        reconnect_delay: 200ms
        reconnect_delay_max: 1s
        tags:
          - {{name: seq, topic: {TOPIC}, json: seq, timestamp: ts}}
"""

    # the peers' own motion -------------------------------------------------------------
    async def _tick_modbus(self) -> None:
        n = 0
        while True:
            n += 1
            if self.device.server is not None and not self.frozen:
                self.strokes = (self.strokes + 1) % 65_536
                values = [self.strokes] + [(n + i) % 65_536 for i in range(1, self.modbus_tags)]
                try:
                    await self.device.set("holding", 0, values)
                except Exception:  # the device is being stopped by a flapping test
                    pass
            await asyncio.sleep(self.tick)

    def _start_opc_ticker(self) -> None:
        async def tick() -> None:
            n = 0
            while True:
                n += 1
                server = self.opc.server
                if server is not None:
                    for i, node in enumerate(self.opc.nodes.values()):
                        try:
                            await server.write_attribute_value(
                                node.nodeid, ua.DataValue(ua.Variant(float(n + i), ua.VariantType.Double)))
                        except Exception:  # stopped meanwhile
                            break
                await asyncio.sleep(self.tick)

        self._opc_ticker = asyncio.run_coroutine_threadsafe(tick(), self.opc.loop)

    def restart_opc_ticker(self) -> None:
        """After the OPC UA server was started again (its nodes are new objects)."""
        if self._opc_ticker is not None:
            self._opc_ticker.cancel()
        self._start_opc_ticker()

    def _publish(self) -> None:
        publisher: Publisher | None = None
        seq = len(self.sent)
        last_ts = 0
        every = 1.0 / self.mqtt_rate
        while not self._quit.is_set():
            self._publishing.wait()
            if self._quit.is_set():
                break
            try:
                if publisher is None:
                    publisher = Publisher(self.broker.port)
                ts = max(last_ts + 1, time.time_ns() // 1000)
                info = publisher.client.publish(TOPIC, json.dumps({"seq": seq, "ts": ts}), qos=1)
                info.wait_for_publish(10)
                if info.is_published():
                    self.sent.append(seq)
                    seq += 1
                    last_ts = ts
            except Exception:  # broker down (flapping): try again with a new client
                if publisher is not None:
                    try:
                        publisher.close()
                    except Exception:
                        pass
                publisher = None
                time.sleep(0.2)
                continue
            time.sleep(every)
        if publisher is not None:
            publisher.close()


_DEVICE_PROCESS = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from tests.kit.modbus import Device, sim_device
async def main():
    device = await Device([sim_device(1)], port=int(sys.argv[1])).start()
    await device.set("holding", 0, list(range(1, 11)))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


class DeviceProcess:
    """A pymodbus device in a process of its own (holdings 0-9 = 1..10): its answers do not
    wait for whatever the test's own process is busy with."""

    def __init__(self) -> None:
        from .ports import free_port

        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> DeviceProcess:
        self.proc = subprocess.Popen([sys.executable, "-c", _DEVICE_PROCESS, str(self.port),
                                      str(Path(__file__).resolve().parents[2])],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
