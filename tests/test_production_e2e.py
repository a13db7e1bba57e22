"""End to end: a pymodbus server plays a press (current through its states, a 16-bit stroke
counter that wraps, a stop compressed in time, a spell without answers); `collector run` is
SIGKILLed once and started again; the API's states, parts, downtimes and OEE equal what the
simulated press did, the parts exactly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.kit.modbus import Device, sim_device
from tests.kit.ports import free_port

pytestmark = pytest.mark.slow

CONFIG = """
ledger:
  url: sqlite:///{tmp}/ledger.db
spool:
  path: {tmp}/spool.db
pipeline:
  flush_interval: 100ms
api:
  port: {api}
plant:
  timezone: UTC
machines:
  - id: press07
    line: line2
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: {modbus}
        interval: 200ms
        timeout: 300ms
        reconnect_delay: 200ms
        reconnect_delay_max: 500ms
        tags:
          - {{name: current, register: holding, address: 0, type: uint16, scale: 0.1, unit: A}}
          - {{name: strokes, register: holding, address: 1, type: uint16}}
    production:
      states:
        - {{state: running, when: "current > 8"}}
        - {{state: idle, when: "current > 1"}}
        - {{state: stopped, when: "true"}}
      counters: {{total: strokes}}
      ideal_cycle: 250ms
      micro_stop: 2s
"""

CURRENT = {"running": 120, "idle": 40, "stopped": 0}  # raw: 12.0 A, 4.0 A, 0 A
# (state, seconds): the stop lasts longer than micro_stop (a downtime), "gone" has no answers
SCRIPT = [("running", 6.0), ("idle", 3.0), ("stopped", 4.0), ("running", 6.0), ("gone", 4.0),
          ("running", 5.0)]
KILL_AT = 15.5  # seconds into the script: in the second running phase


class Press:
    """The simulated press: the truth the ledger is compared with."""

    def __init__(self, device: Device):
        self.device = device
        self.strokes = 65_520  # wraps at 65,536 during the first running phase
        self.made = 0
        self.changes: list[tuple[float, str]] = []  # (wall time, state)

    async def play(self, on_time: dict[float, object]) -> None:
        begin = time.time()
        for state, seconds in SCRIPT:
            self.changes.append((time.time(), "offline" if state == "gone" else state))
            if state == "gone":
                await self.device.stop()
            else:
                if self.device.server is None:
                    await self.device.start()
                await self.device.set("holding", 0, [CURRENT[state]])
            until = time.time() + seconds
            while time.time() < until:
                if state == "running":
                    self.strokes = (self.strokes + 1) % 65_536
                    self.made += 1
                    await self.device.set("holding", 1, [self.strokes])
                for at, action in list(on_time.items()):
                    if time.time() - begin >= at:
                        on_time.pop(at)
                        action()  # type: ignore[operator]
                await asyncio.sleep(0.3)
        self.changes.append((time.time(), "end"))


def start_collector(path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "-c", str(path)],
                                stdout=out, stderr=out, env=env)


def wait_up(api: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "collector exited"
        try:
            if httpx.get(f"{api}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("collector did not come up")


def ms(t: float) -> int:
    return int(t * 1000)


async def test_states_parts_downtimes_and_oee_equal_what_the_press_did(tmp_path: Path) -> None:
    device = await Device([sim_device(1)]).start()
    press = Press(device)
    await device.set("holding", 0, [0])
    await device.set("holding", 1, [press.strokes])
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    path = tmp_path / "collector.yaml"
    path.write_text(CONFIG.format(tmp=tmp_path, api=api_port, modbus=device.port))
    log = tmp_path / "collector.log"
    procs = [start_collector(path, log)]
    killed: list[float] = []
    try:
        await asyncio.to_thread(wait_up, api, procs[0])
        await asyncio.sleep(1.0)  # a second of "stopped" before the script starts

        def kill_and_restart() -> None:
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait()
            killed.append(time.time())
            procs.append(start_collector(path, log))

        begin = time.time()
        await press.play({KILL_AT: kill_and_restart})
        await asyncio.to_thread(wait_up, api, procs[-1])
        window = {"start": ms(begin), "end": ms(press.changes[-1][0])}
        async with httpx.AsyncClient(base_url=api, timeout=10) as client:
            # derivation takes readings in once they are two seconds old: wait for the parts
            deadline = time.monotonic() + 20
            while True:
                got = (await client.get("/api/v1/machines/press07/production",
                                        params=window)).json()
                if got["total"] == press.made or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert (got["total"], got["good"], got["reject"]) == (press.made, press.made, 0)
            states = (await client.get("/api/v1/machines/press07/states",
                                       params=window)).json()["items"]
            downtimes = (await client.get("/api/v1/machines/press07/downtimes",
                                          params=window)).json()
            oee = (await client.get("/api/v1/machines/press07/oee", params=window)).json()
            health = (await client.get("/api/v1/health")).json()
            metrics = (await client.get("/metrics")).text
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await device.stop()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert len(killed) == 1
    assert health["production"]["ready"] is True and health["production"]["machines"] == 1
    assert 'collector_production_events_total{event="counter_wrap"}' in metrics

    # the states, as the press went through them (polls every 0.2 s: edges within a second on a busy machine)
    seen = [(s["state"], s["duration_s"]) for s in states if s["duration_s"] >= 0.5]
    truth = [(state, b - a) for (a, state), (b, _) in zip(press.changes, press.changes[1:],
                                                          strict=False)]
    print("states seen", seen, "truth", truth, "parts", press.made)
    assert [s for s, _ in seen] == [s for s, _ in truth], (seen, truth)
    for (state, got_s), (_, want_s) in zip(seen, truth, strict=True):
        slack = 2.5 if state == "offline" or want_s == truth[-2][1] else 1.0  # reconnect backoff
        assert abs(got_s - want_s) <= slack, (state, got_s, want_s)
    running = sum(b - a for (a, s), (b, _) in zip(press.changes, press.changes[1:],
                                                  strict=False) if s == "running")
    assert oee["running_s"] == pytest.approx(running, abs=2.5)
    assert oee["total"] == press.made
    assert oee["performance"] == pytest.approx(0.25 * press.made / oee["running_s"], rel=1e-4)
    # idle then stopped is one stop of 7 s, and the spell without answers another: both
    # downtimes (>= micro_stop 2 s)
    kinds = [d["states"] for d in downtimes["items"]]
    assert kinds == [["idle", "stopped"], ["offline"]], downtimes
    assert downtimes["micro_stops"] == 0
