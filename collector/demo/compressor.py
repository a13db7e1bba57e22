"""Compressor 01: a screw compressor with a wireless vibration/temperature sensor on MQTT.

The sensor publishes one JSON document a second (`{"ts": ..., "vib": {"rms": ..., "peak":
...}, "temp_c": ..., "battery": ...}`); a pressure transmitter on a micro-controller publishes
plain numbers. They go to the local Mosquitto when one answers on 127.0.0.1:1883, otherwise to
an MQTT broker started in this process (amqtt, when installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiomqtt

from .behaviour import IDLE, RUNNING, STOPPED, Behaviour, approach, noisy, standard_behaviour

log = logging.getLogger("collector.demo")

SHARED_MQTT_PORT = 1883


@dataclass
class CompressorModel:
    """Loaded (running), unloaded (idle) or off (stopped): vibration, temperature, pressure."""

    rng: random.Random
    behaviour: Behaviour
    vibration: float = 0.0  # mm/s RMS
    temperature: float = 30.0  # degC at the air end
    pressure: float = 6.8  # bar in the receiver
    battery: float = 93.0  # % of the sensor's battery

    def tick(self, now: float, dt: float) -> None:
        state = self.behaviour.step(now)
        vib_target = {RUNNING: 4.6, IDLE: 1.9, STOPPED: 0.04}[state]
        self.vibration = max(0.01, noisy(self.rng, approach(self.vibration, vib_target, 3.0, dt),
                                         0.12 if state != STOPPED else 0.005))
        temp_target = {RUNNING: 79.0, IDLE: 64.0, STOPPED: 24.0}[state]
        self.temperature = noisy(self.rng, approach(self.temperature, temp_target, 180.0, dt), 0.05)
        press_target = {RUNNING: 7.9, IDLE: 6.2, STOPPED: 4.5}[state]
        self.pressure = noisy(self.rng, approach(self.pressure, press_target, 60.0, dt), 0.01)
        self.battery = max(5.0, self.battery - dt * 1e-4)

    def telemetry(self, ts_ms: int) -> dict[str, Any]:
        return {"ts": ts_ms,
                "vib": {"rms": round(self.vibration, 3),
                        "peak": round(self.vibration * self.rng.uniform(2.6, 3.4), 3)},
                "temp_c": round(self.temperature, 2), "battery": round(self.battery)}


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


class EmbeddedBroker:
    """An amqtt broker in this process, for machines without Mosquitto."""

    def __init__(self, port: int):
        self.port = port
        self.broker: Any = None

    @staticmethod
    def available() -> bool:
        try:
            import amqtt.broker  # noqa: F401
        except ImportError:
            return False
        return True

    async def start(self) -> None:
        from amqtt.broker import Broker

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self.broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        })
        await self.broker.start()

    async def stop(self) -> None:
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.shutdown()


class CompressorSimulator:
    """Publishes the compressor's sensor messages once a second, reconnecting as needed."""

    def __init__(self, port: int, topic_root: str, rng: random.Random, pace: float = 1.0):
        self.port = port
        self.root = topic_root.rstrip("/")
        self.model = CompressorModel(rng, standard_behaviour(rng, pace))
        self.published = 0

    async def start(self) -> None:
        self.model.behaviour.start(asyncio.get_running_loop().time(), RUNNING)

    async def stop(self) -> None:
        return None

    async def run(self, period: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        ident = f"demo-sensor-{self.root.replace('/', '-')}"[:64]
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=ident) as client:
                    while True:
                        now = loop.time()
                        self.model.tick(now, now - last)
                        last = now
                        await self.publish(client)
                        await asyncio.sleep(period)
            except aiomqtt.MqttError as exc:
                log.warning("demo compressor sensor: broker 127.0.0.1:%d: %s; retrying in 2 s",
                            self.port, exc)
                await asyncio.sleep(2.0)

    async def publish(self, client: aiomqtt.Client) -> None:
        doc = self.model.telemetry(time.time_ns() // 1_000_000)
        await client.publish(f"{self.root}/telemetry", json.dumps(doc), qos=1)
        await client.publish(f"{self.root}/pressure", f"{self.model.pressure:.3f}", qos=1)
        self.published += 1
