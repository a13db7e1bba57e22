"""The runtime end to end without devices: supervisor restarts, API health and latest values,
`collector run` stopping cleanly on SIGTERM, a ledger that is down at boot."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Literal

import httpx

from adapters.base import AdapterContext, AdapterSpec, register, registry
from api.server import ApiServer
from collector.config import SourceConfig, parse_config
from collector.ledger import PageQuery
from collector.ledger.engine import MIGRATIONS
from collector.model import Reading, now_us
from collector.runtime import (
    GC_COUNT_LIMIT,
    GC_OBJECTS_PER_READING,
    Runtime,
    collect_garbage_on_a_clock,
)
from tests.kit.ports import free_port
from tests.test_api_offload import process_alive


class CrashingSource(SourceConfig):
    protocol: Literal["crashtest"]


class CrashingAdapter:
    runs = 0

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx

    async def run(self) -> None:
        CrashingAdapter.runs += 1
        self.ctx.health.ok(1)
        await self.ctx.sink.put([Reading(self.ctx.machine.id, "beat", now_us(), CrashingAdapter.runs)])
        raise RuntimeError("sensor board on fire")


def _register() -> None:
    if "crashtest" not in registry():
        register(AdapterSpec("crashtest", CrashingSource, CrashingAdapter))
    if "stucktest" not in registry():
        register(AdapterSpec("stucktest", StuckSource, StuckAdapter))


class StuckSource(SourceConfig):
    protocol: Literal["stucktest"]


class StuckAdapter:
    """Hands over one reading, then ignores being cancelled until released, as a protocol
    library stuck on a connection that does not close would."""

    release: asyncio.Event

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx

    async def run(self) -> None:
        await self.ctx.sink.put([Reading(self.ctx.machine.id, "beat", now_us(), 7)])
        while not StuckAdapter.release.is_set():
            try:
                await StuckAdapter.release.wait()
            except asyncio.CancelledError:
                continue


def config(tmp_path: Path, extra: str = "", url: str | None = None, port: int = 0) -> str:
    return (
        f"ledger:\n  url: {url or f'sqlite:///{tmp_path}/ledger.db'}\n"
        f"spool:\n  path: {tmp_path}/spool.db\n"
        f"pipeline:\n  flush_interval: 50ms\n"
        f"api:\n  port: {port}\n"
        f"machines:\n  - id: press07\n    name: Press 07\n{extra}"
    )


async def test_crashing_adapter_is_restarted_and_reported(tmp_path: Path, monkeypatch) -> None:
    _register()
    monkeypatch.setattr("collector.runtime.RESTART_MIN", 0.05)
    cfg = parse_config(config(tmp_path, "    sources:\n      - id: board\n        protocol: crashtest\n"))
    async with Runtime(cfg, api=ApiServer) as rt:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if CrashingAdapter.runs >= 3:
                break
        health = rt.health_of("press07", "board")
        assert health.restarts >= 2
        assert health.last_error == "adapter crashed: RuntimeError: sensor board on fire"
        assert not health.connected
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}") as client:
            body = (await client.get("/api/v1/health")).json()
            assert body["status"] == "degraded"
            (source,) = body["sources"]
            assert (source["machine"], source["source"], source["protocol"]) == ("press07", "board", "crashtest")
            assert source["connected"] is False and "on fire" in source["last_error"]
            await rt.pipeline.flush()
            latest = (await client.get("/api/v1/machines/press07/latest")).json()["items"]
            assert latest[0]["tag"] == "beat" and latest[0]["quality"] == "good"
            assert latest[0]["ts"].endswith("Z") and latest[0]["value"] >= 1


async def test_a_source_that_does_not_stop_does_not_hold_the_stop(
        tmp_path: Path, monkeypatch, caplog) -> None:
    _register()
    StuckAdapter.release = asyncio.Event()
    monkeypatch.setattr("collector.runtime.SOURCE_STOP_SECONDS", 0.3)
    cfg = parse_config(config(tmp_path, "    sources:\n      - id: board\n        protocol: stucktest\n"))
    rt = Runtime(cfg)
    await rt.start()
    for _ in range(100):
        if rt.pipeline.received:
            break
        await asyncio.sleep(0.02)
    started = time.monotonic()
    await rt.stop()
    assert time.monotonic() - started < 3
    assert "source press07/board did not stop within 0 s" in caplog.text
    StuckAdapter.release.set()
    await asyncio.sleep(0.05)
    # what the stuck source handed over before was still written
    check = Runtime(cfg).ledger
    await check.open()
    try:
        page = PageQuery.of(await check.catalogue.series("press07"), 0, 2**62, 1000)
        assert [p.value async for p in check.pages.points(page)] == [7]
    finally:
        await check.close()


async def test_the_configured_future_margin_decides_which_latest_value_gives_way(
        tmp_path: Path) -> None:
    """`pipeline.future_margin` reaches the ledger's writer: with 5 s, a latest value stamped
    20 s ahead gives way to the next reading (with the default 60 s it would hold)."""
    text = config(tmp_path).replace("flush_interval: 50ms\n", "flush_interval: 50ms\n  future_margin: 5s\n")
    async with Runtime(parse_config(text)) as rt:
        now = now_us()
        await rt.pipeline.put([Reading("press07", "t", now + 20_000_000, 1.0)], wait=True)
        await rt.pipeline.put([Reading("press07", "t", now - 1_000_000, 2.0)], wait=True)
        (item,) = [p for s, p in await rt.ledger.latest.of_machine("press07") if s.tag == "t"]
        assert (item.value, item.ts) == (2.0, now - 1_000_000)


async def test_api_latest_values_and_errors(tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path))
    async with Runtime(cfg, api=ApiServer) as rt:
        ts = 1_763_776_800_123_000  # 2025-11-22T02:00:00.123Z
        await rt.pipeline.put([Reading("press07", "current", ts, 12.5),
                               Reading("press07", "door_open", ts, True),
                               Reading("press07", "mode", ts, "AUTO")], wait=True)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}") as client:
            items = (await client.get("/api/v1/machines/press07/latest")).json()["items"]
            assert items == [
                {"tag": "current", "ts": "2025-11-22T02:00:00.123Z", "value": 12.5, "quality": "good", "unit": None},
                {"tag": "door_open", "ts": "2025-11-22T02:00:00.123Z", "value": True, "quality": "good", "unit": None},
                {"tag": "mode", "ts": "2025-11-22T02:00:00.123Z", "value": "AUTO", "quality": "good", "unit": None},
            ]
            missing = await client.get("/api/v1/machines/lathe9/latest")
            assert missing.status_code == 404
            assert missing.json()["detail"].startswith("machine 'lathe9' not found")
            health = (await client.get("/api/v1/health")).json()
            assert health == {"status": "ok", "sources": [], "ledger": {
                "ok": True, "backlog": 0, "queued": 0, "dropped": 0, "written": 3, "future": 0, "last_error": None},
                "production": None, "problems": []}  # no production rules, no tag problems


async def test_api_keys_guard_everything_but_health(tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path).replace("api:\n", "api:\n  api_keys: [k-123]\n"))
    async with Runtime(cfg, api=ApiServer) as rt:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}") as client:
            assert (await client.get("/api/v1/health")).status_code == 200
            assert (await client.get("/api/v1/machines/press07/latest")).status_code == 401
            assert (await client.get("/api/v1/machines/press07/latest",
                                     headers={"X-API-Key": "wrong"})).status_code == 401
            assert (await client.get("/api/v1/machines/press07/latest",
                                     headers={"X-API-Key": "k-123"})).status_code == 200
            assert (await client.get("/api/v1/machines/press07/latest",
                                     headers={"Authorization": "Bearer k-123"})).status_code == 200


async def test_ledger_down_at_boot_spools_then_catches_up(tmp_path: Path, throwaway_pg) -> None:
    throwaway_pg.stop()
    cfg = parse_config(config(tmp_path, url=throwaway_pg.url))
    async with Runtime(cfg, api=ApiServer) as rt:
        assert not rt.ledger.ready and not rt.pipeline.ledger_ok
        await rt.pipeline.put([Reading("press07", "t", 1_700_000_000_000_000 + i, float(i)) for i in range(100)],
                              wait=True)
        assert rt.spool.backlog == 100
        throwaway_pg.start()
        for _ in range(400):
            await asyncio.sleep(0.1)
            if rt.ledger.ready and rt.spool.backlog == 0:
                break
        assert rt.ledger.ready and rt.spool.backlog == 0
        (series, point), = await rt.ledger.latest.of_machine("press07")
        assert point.value == 99.0


def test_collector_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "c.yaml"
    path.write_text(config(tmp_path, port=port))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("collector did not come up")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "stopping: flushing readings to the ledger" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_with_a_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        path = tmp_path / "c.yaml"
        path.write_text(config(tmp_path, port=busy.getsockname()[1]))
        result = subprocess.run([sys.executable, "-m", "collector.cli", "run", "-c", str(path)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "the API cannot listen on 127.0.0.1:" in result.stderr and "change api.port" in result.stderr


def test_unknown_event_loop_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config(tmp_path))
    env = {**os.environ, "COLLECTOR_EVENT_LOOP": "tokio"}
    for command in (["run", "-c", str(path)], ["demo", "--data", str(tmp_path / "demo")]):
        result = subprocess.run([sys.executable, "-m", "collector.cli", *command], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr and "never awaited" not in result.stderr
        assert "COLLECTOR_EVENT_LOOP='tokio': use auto, uvloop or asyncio" in result.stderr


def test_db_upgrade_command(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config(tmp_path))
    result = subprocess.run([sys.executable, "-m", "collector.cli", "db", "upgrade", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    head = max(p.name.split("_")[0] for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert result.stdout.strip() == f"ledger schema at revision {head}"


async def test_retention_sweep_runs_in_the_runtime(tmp_path: Path) -> None:
    text = config(tmp_path).replace("ledger:\n", "ledger:\n  retention: 1h\n  retention_interval: 100ms\n")
    cfg = parse_config(text)
    async with Runtime(cfg, api=ApiServer) as rt:
        now = now_us()
        old = [Reading("press07", "t", now - 7200 * 1_000_000 + i, 1.0) for i in range(50)]
        fresh = [Reading("press07", "t", now - 60 * 1_000_000 + i, 2.0) for i in range(5)]
        await rt.pipeline.put(old + fresh, wait=True)
        page = PageQuery.of(await rt.ledger.catalogue.series("press07"), 0, 2**62, 1000)
        for _ in range(100):
            points = [p async for p in rt.ledger.pages.points(page)]
            if len(points) == 5:
                break
            await asyncio.sleep(0.05)
        assert [p.value for p in points] == [2.0] * 5


def test_unwritable_spool_path_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the spool folder should be")
    path = tmp_path / "c.yaml"
    path.write_text(config(tmp_path).replace(f"{tmp_path}/spool.db", f"{blocker}/spool.db"))
    result = subprocess.run([sys.executable, "-m", "collector.cli", "run", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot open the spool file '{blocker}/spool.db'" in result.stderr
    assert "set spool.path to a writable location" in result.stderr


async def test_api_workers_start_with_a_large_answer_and_stop_with_the_runtime(
        tmp_path: Path) -> None:
    """`collector run` starts no API worker process (api.workers) until a large answer is
    asked for; they answer it, and stop when the runtime stops."""
    cfg = parse_config(config(tmp_path).replace("api:\n", "api:\n  workers: 2\n"))
    async with Runtime(cfg, api=ApiServer) as rt:
        ts = 1_763_776_800_000_000
        await rt.pipeline.put([Reading("press07", "current", ts + i * 1000, float(i))
                               for i in range(3_000)], wait=True)
        assert isinstance(rt.api, ApiServer) and rt.api.offload is not None
        offload = rt.api.offload
        await asyncio.sleep(0.5)
        assert offload.pids() == []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rt.api_port}") as client:
            r = await client.get("/api/v1/readings", params={
                "machine": "press07", "start": ts // 1000, "end": ts // 1000 + 10_000,
                "limit": 5_000})
            items = r.json()["items"]
            assert [i["value"] for i in items] == [float(i) for i in range(3_000)]
            pids = offload.pids()  # as many as were needed at once, at most api.workers
            assert 1 <= len(pids) <= 2 and os.getpid() not in pids
            metrics = (await client.get("/metrics")).text
            assert "collector_api_workers 2.0" in metrics
            assert "collector_api_worker_answers_total 1.0" in metrics
            assert "collector_api_worker_replacements_total 0.0" in metrics
    assert not any(map(process_alive, pids))


class _Node:
    other: _Node | None = None


async def test_garbage_is_collected_on_a_clock_and_on_the_count_again_after() -> None:
    before = gc.get_threshold()
    pacer = asyncio.create_task(collect_garbage_on_a_clock(young_every=0.05, full_every=3))
    await asyncio.sleep(0)
    assert gc.get_threshold()[0] == GC_COUNT_LIMIT  # its own count only past a burst
    young, old = _Node(), _Node()
    young.other, old.other = old, young  # a cycle: reference counting alone never frees it
    gc.collect(1)  # it survives a collection: now in the oldest generation, which only a
    refs = [weakref.ref(young), weakref.ref(old)]  # full collection looks at
    cycle = [_Node(), _Node()]
    cycle[0].other, cycle[1].other = cycle[1], cycle[0]
    refs.append(weakref.ref(cycle[0]))
    del young, old, cycle
    assert all(ref() is not None for ref in refs)
    for _ in range(100):
        if all(ref() is None for ref in refs):
            break
        await asyncio.sleep(0.02)
    assert [ref() for ref in refs] == [None, None, None]
    pacer.cancel()
    await asyncio.gather(pacer, return_exceptions=True)
    assert gc.get_threshold() == before


async def test_a_burst_of_cyclic_garbage_is_collected_before_the_next_tick() -> None:
    pacer = asyncio.create_task(collect_garbage_on_a_clock(young_every=3600))
    await asyncio.sleep(0)
    try:
        first = _Node()
        first.other = first
        ref = weakref.ref(first)
        del first
        burst = []
        for _ in range(GC_COUNT_LIMIT + 1000):  # each one object more, all alive
            node = _Node()
            node.other = node
            burst.append(node)
        assert ref() is None  # the count set a collection off, an hour before the clock
    finally:
        pacer.cancel()
        await asyncio.gather(pacer, return_exceptions=True)


async def test_a_running_service_collects_garbage_on_the_clock(tmp_path: Path) -> None:
    cfg = parse_config(config(tmp_path, port=free_port()))
    rt = Runtime(cfg, api=ApiServer)
    # the count's bound sits above what a full batch keeps alive (50,000 readings: 150,000)
    limit = max(GC_COUNT_LIMIT, GC_OBJECTS_PER_READING * cfg.pipeline.batch_size)
    assert limit == 150_000
    before = gc.get_threshold()
    service = asyncio.create_task(rt.run_until_signalled())
    try:
        for _ in range(200):
            if gc.get_threshold()[0] == limit:
                break
            await asyncio.sleep(0.05)
        assert gc.get_threshold()[0] == limit
    finally:
        rt.request_stop()
        await service
        gc.unfreeze()  # the service froze this test process's objects for good
    assert gc.get_threshold() == before
