"""Secrets stay secret: a `collector run` configured with passwords and keys from `${ENV}`
(a PostgreSQL ledger that is down, an OPC UA server that is not there, a broker login, API and
write keys) is made to fail in every way that writes an error, and then its log, `collector
check` (good and bad config), health, metrics and every error answer are searched for the
secrets. The OPC UA private key the collector generates is readable by its owner only, and
the API listens on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.kit.collector import CollectorProcess, listening_addresses
from tests.kit.modbus import Device, sim_device
from tests.kit.mqtt import Mosquitto
from tests.kit.ports import free_ports
from tests.reliability.conftest import record

SECRETS = {
    "RT_LEDGER_PW": "ledger-pw-Zq81x",
    "RT_OPC_PW": "opc-pw-Vb27k",
    "RT_MQTT_PW": "mqtt-pw-Lr64c",
    "RT_API_KEY": "api-key-Hn35w",
    "RT_WRITE_KEY": "write-key-Pd90s",
}

CONFIG = """
ledger:
  url: postgresql://collector:${{RT_LEDGER_PW}}@127.0.0.1:{pg}/plant
spool: {{path: {tmp}/spool.db}}
pipeline: {{flush_interval: 100ms}}
api:
  port: {api}
  workers: 0
  api_keys: ["${{RT_API_KEY}}"]
  write_keys: ["${{RT_WRITE_KEY}}"]
machines:
  - id: press
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: {modbus}
        interval: 200ms
        tags:
          - {{name: a, register: holding, address: 0, type: uint16}}
      - id: hmi
        protocol: opcua
        endpoint: opc.tcp://127.0.0.1:{opc}
        security_policy: Basic256Sha256
        certificate: {tmp}/pki/client.der
        private_key: {tmp}/pki/client-key.pem
        username: operator
        password: ${{RT_OPC_PW}}
        reconnect_delay: 200ms
        tags:
          - {{name: t, node: "ns=2;s=T"}}
      - id: sensors
        protocol: mqtt
        broker: mqtt://127.0.0.1:{broker}
        username: collector
        password: ${{RT_MQTT_PW}}
        tags:
          - {{name: m, topic: plant/press/m}}
"""


def leaks(text: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text]


def check(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", "check", "--explain", "-c",
                           str(cfg)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **SECRETS})


async def test_secrets_never_leave_and_the_key_and_the_port_are_private(tmp_path: Path) -> None:
    pg, opc = free_ports(2)  # nothing listens there: both fail, and say so
    device = await Device([sim_device(1)]).start()
    broker = Mosquitto(tmp_path / "broker").start()
    cfg = tmp_path / "collector.yaml"
    collector = CollectorProcess(cfg, tmp_path / "collector.log", env=SECRETS)
    cfg.write_text(CONFIG.format(pg=pg, opc=opc, api=collector.api_port, modbus=device.port,
                                 broker=broker.port, tmp=tmp_path))
    answers: dict[str, str] = {}
    try:
        await asyncio.to_thread(collector.start)
        deadline = time.monotonic() + 30
        while True:  # until every failing part has said what is wrong
            health = collector.health()
            hmi = next(s for s in health["sources"] if s["source"] == "hmi")
            if health["ledger"]["last_error"] and hmi["errors"] >= 2:
                break
            assert time.monotonic() < deadline, health
            await asyncio.sleep(0.3)
        key = {"X-API-Key": SECRETS["RT_API_KEY"]}
        async with httpx.AsyncClient(base_url=collector.url, timeout=10) as client:
            requests = {
                "health": client.get("/api/v1/health"),
                "metrics": client.get("/metrics", headers=key),
                "no key": client.get("/api/v1/machines"),
                "wrong key": client.get("/api/v1/machines",
                                        headers={"X-API-Key": SECRETS["RT_API_KEY"][:-1]}),
                "unknown machine": client.get("/api/v1/machines/nope", headers=key),
                "write without write key": client.patch("/api/v1/downtimes/press-1", headers=key,
                                                        json={"reason": "x"}),
                "bad parameter": client.get("/api/v1/readings", headers=key,
                                            params={"machine": "press", "tag": "a", "limit": -1}),
                "ledger down": client.get("/api/v1/readings", headers=key,
                                          params={"machine": "press", "tag": "a"}),
                "openapi": client.get("/openapi.json"),
            }
            for name, request in requests.items():
                response = await request
                answers[name] = f"{response.status_code} {response.text}"
        listening = listening_addresses(collector.pid)
        key_file = tmp_path / "pki" / "client-key.pem"
        key_mode = stat.S_IMODE(key_file.stat().st_mode) if key_file.exists() else None
    finally:
        collector.stop()
        broker.stop()
        await device.stop()

    good = check(cfg)
    broken = tmp_path / "broken.yaml"
    broken.write_text(cfg.read_text().replace("interval: 200ms", "interval: soon")
                      .replace("port: " + str(device.port), "port: many"))
    bad = check(broken)
    texts = {"log": collector.log_text(), "check": good.stdout + good.stderr,
             "check with problems": bad.stdout + bad.stderr, **answers}
    found = {where: leaks(text) for where, text in texts.items() if leaks(text)}
    record("secrets", places=sorted(texts), secrets=len(SECRETS), leaks=found,
           key_mode=oct(key_mode) if key_mode is not None else None,
           listening=sorted(f"{a}:{p}" for a, p in listening),
           statuses={k: int(v.split()[0]) for k, v in answers.items()})
    assert good.returncode == 0 and bad.returncode == 2, (good.stderr, bad.stderr)
    assert "interval" in bad.stderr and "port" in bad.stderr
    assert answers["no key"].startswith("401") and answers["wrong key"].startswith("401")
    assert answers["write without write key"].startswith("403")
    assert "ledger" in texts["log"] and "hmi" in texts["log"]  # the failures were logged ...
    assert not found, found  # ... without a secret
    assert key_mode == 0o600
    assert listening == {("127.0.0.1", collector.api_port)}
