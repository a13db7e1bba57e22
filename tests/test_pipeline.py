"""The pipeline: deadband and heartbeat, batching, store-and-forward through the spool when
the ledger fails, bounded memory under overload, and a flush on shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector import pipeline as pipeline_module
from collector.config import PipelineConfig
from collector.ledger import Ledger, PageQuery
from collector.model import BAD, Reading
from collector.pipeline import ChangeFilter, Pipeline, TagRule
from collector.spool import Spool
from tests.kit.postgres import ThrowawayPostgres

T0 = 1_700_000_000_000_000
S = 1_000_000


async def all_keys(ledger: Ledger) -> list[tuple[str, int]]:
    series = await ledger.catalogue.series()
    tags = {s.id: s.tag for s in series}
    return [(tags[p.series_id], p.ts)
            async for p in ledger.pages.points(PageQuery.of(series, 0, 2**62, 2**62))]


def test_deadband_keeps_only_real_changes() -> None:
    f = ChangeFilter({("m", "t"): TagRule(deadband=0.5)})
    values = [10.0, 10.2, 10.4, 10.6, 10.7, 9.9, 9.95]
    kept = f([Reading("m", "t", T0 + i * S, v) for i, v in enumerate(values)])
    assert [r.value for r in kept] == [10.0, 10.6, 9.9]
    assert f.suppressed == 4


def test_heartbeat_stores_unchanged_values_at_least_this_often() -> None:
    f = ChangeFilter({("m", "t"): TagRule(heartbeat_us=10 * S)})
    kept = f([Reading("m", "t", T0 + i * S, 1.0) for i in range(25)])
    assert [r.ts for r in kept] == [T0, T0 + 10 * S, T0 + 20 * S]
    # a change is stored at once; other tags are untouched by the rule
    kept = f([Reading("m", "t", T0 + 21 * S, 2.0), Reading("m", "x", T0, 1.0), Reading("m", "x", T0, 1.0)])
    assert len(kept) == 3


def test_quality_change_always_passes_the_deadband() -> None:
    f = ChangeFilter({("m", "t"): TagRule(deadband=100.0, heartbeat_us=3600 * S)})
    kept = f([Reading("m", "t", T0, 5.0), Reading("m", "t", T0 + S, None, BAD),
              Reading("m", "t", T0 + 2 * S, 5.0), Reading("m", "t", T0 + 3 * S, "text")])
    assert [r.quality for r in kept] == [0, BAD, 0, 0]


async def make(tmp_path: Path, url: str, schema: str | None = None, **cfg: object) -> Pipeline:
    ledger = Ledger(url, schema=schema)
    try:
        await ledger.open()
    except Exception:
        pass
    spool = Spool(tmp_path / "spool.db", int(cfg.pop("max_size", 10**9)))  # type: ignore[call-overload]
    await spool.open()
    pipeline = Pipeline(ledger, spool, PipelineConfig(**cfg))  # type: ignore[arg-type]
    await pipeline.start()
    return pipeline


async def close(p: Pipeline) -> None:
    await p.stop()
    await p.spool.close()
    await p.ledger.close()


async def test_batches_by_time_and_acknowledges_after_commit(tmp_path: Path) -> None:
    p = await make(tmp_path, f"sqlite:///{tmp_path}/l.db", batch_size=1000, flush_interval=0.2)
    try:
        await p.put([Reading("m", "t", T0, 1.0)])
        assert p.written == 0  # waits for the batch to fill or the interval to pass
        for _ in range(50):
            await asyncio.sleep(0.05)
            if p.written:
                break
        assert p.written == 1
        await p.put([Reading("m", "t", T0 + 1, 2.0)], wait=True)  # returns once committed
        assert p.written == 2
        assert len(await all_keys(p.ledger)) == 2
    finally:
        await close(p)


async def test_ledger_outage_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, throwaway_pg: ThrowawayPostgres
) -> None:
    p = await make(tmp_path, throwaway_pg.url, batch_size=200, flush_interval=0.05)
    sent: list[Reading] = []

    async def feed(n: int, start: int) -> None:
        for i in range(start, start + n):
            r = [Reading("press07", f"t{j}", T0 + i * S, float(i)) for j in range(5)]
            sent.extend(r)
            await p.put(r)
            await asyncio.sleep(0.002)

    try:
        await feed(200, 0)
        await p.flush()
        assert p.ledger_ok and p.written == 1000
        throwaway_pg.stop()  # the ledger becomes unwritable mid-stream
        await feed(400, 200)
        await p.flush()
        assert not p.ledger_ok
        assert p.spool.backlog > 0 and p.last_error
        throwaway_pg.start()
        await feed(200, 600)
        for _ in range(600):  # replay with backoff (≤ 30 s worst case)
            await asyncio.sleep(0.1)
            await p.flush()
            if p.spool.backlog == 0 and p.ledger_ok:
                break
        assert p.spool.backlog == 0 and p.ledger_ok
        keys = await all_keys(p.ledger)
        assert len(keys) == len(sent) == 4000
        assert sorted(keys) == sorted((r.tag, r.ts) for r in sent)
    finally:
        await close(p)


async def test_flood_keeps_memory_bounded_and_loses_nothing(tmp_path: Path) -> None:
    p = await make(tmp_path, f"sqlite:///{tmp_path}/l.db", queue_size=2000, batch_size=500,
                   flush_interval=0.05)
    try:
        total = 0
        for i in range(400):  # 200,000 readings as fast as the producer can make them
            await p.put([Reading("m", f"t{j % 50}", T0 + (i * 500 + j) * 10, float(j)) for j in range(500)])
            total += 500
            assert p.queued <= 2000
        assert p.spilled > 0  # the excess went to the spool, not to memory
        for _ in range(600):
            await p.flush()
            if p.spool.backlog == 0:
                break
            await asyncio.sleep(0.05)
        assert p.max_queued <= 2000
        assert len(await all_keys(p.ledger)) == total == p.written
    finally:
        await close(p)


async def test_spool_cap_drops_oldest_and_counts(tmp_path: Path) -> None:
    p = await make(tmp_path, "postgresql://postgres@127.0.0.1:1/none", max_size=64 * 1024,
                   batch_size=100, flush_interval=0.02)
    try:
        assert not p.ledger.ready
        for i in range(100):
            await p.put([Reading("m", f"tag{j}", T0 + i * S, float(j)) for j in range(100)])
        await p.flush()
        assert p.spool.dropped > 0
        assert p.stats()["dropped"] == p.spool.dropped
        assert p.spool.backlog + p.spool.dropped == 10_000
    finally:
        await close(p)
    # the dropped count survives a restart
    spool = Spool(tmp_path / "spool.db", 64 * 1024)
    await spool.open()
    assert spool.dropped > 0
    await spool.close()


async def test_shutdown_spools_what_the_ledger_cannot_take_and_restart_replays(tmp_path: Path) -> None:
    down = await make(tmp_path, "postgresql://postgres@127.0.0.1:1/none", flush_interval=0.05)
    await down.put([Reading("m", "t", T0 + i, float(i)) for i in range(300)])
    await close(down)  # graceful stop with the ledger unreachable: everything to the spool
    up = await make(tmp_path, f"sqlite:///{tmp_path}/l.db", flush_interval=0.05)
    try:
        assert up.spool.backlog == 300
        for _ in range(100):
            await asyncio.sleep(0.05)
            if up.spool.backlog == 0:
                break
        assert len(await all_keys(up.ledger)) == 300
    finally:
        await close(up)


async def test_a_replay_goes_in_transactions_of_replay_readings_not_of_the_batch_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog in the spool goes into the ledger `REPLAY_READINGS` at a time (or
    `batch_size` when larger), in whole spooled batches, all of it, oldest first: one
    transaction holds that many readings in memory, whatever the live batches' size."""
    monkeypatch.setattr(pipeline_module, "REPLAY_READINGS", 250)
    spool = Spool(tmp_path / "spool.db", 10**9)
    await spool.open()
    for i in range(10):  # an outage left ten batches of 100 behind
        await spool.append([Reading("m", f"t{j}", T0 + i * S, float(j)) for j in range(100)])
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db")
    await ledger.open()
    sizes: list[int] = []
    write = ledger.write

    async def counted(batch: list[Reading]) -> int:
        sizes.append(len(batch))
        return await write(batch)

    ledger.write = counted  # type: ignore[method-assign]
    p = Pipeline(ledger, spool, PipelineConfig(batch_size=100, flush_interval=0.02))
    await p.start()
    try:
        for _ in range(200):
            if spool.backlog == 0:
                break
            await asyncio.sleep(0.02)
        assert sizes == [200] * 5  # two spooled batches a time: a third would pass 250
        assert len(await all_keys(ledger)) == 1000
    finally:
        await close(p)
