"""Large answers built in worker processes (`api.offload`), on SQLite and PostgreSQL: the same
bytes as the collector process builds, and what happens when a worker dies, keeps dying,
fails, or outlives a collector killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.offload import (
    BREAKS_ALLOWED,
    DEFAULT_MOST,
    Offload,
    WorkerError,
    default_workers,
    shareable,
)
from collector.config import ConfigError, parse_config
from collector.ledger import Ledger
from collector.model import Quality, Reading
from tests.kit.api import T0, S, make_env, ms

ROOT = Path(__file__).resolve().parent.parent
URL = "/api/v1/readings"


async def seed(ledger: Ledger) -> None:
    """Floats of every shape, bools, texts, bad readings: what a page or a bucket can hold."""
    await ledger.write(
        [Reading("press07", "motor_current", T0 + i * S // 2, (i * 0.1) ** 1.5 - 7.3,
                 Quality.BAD if i % 97 == 0 else Quality.GOOD) for i in range(6_000)]
        + [Reading("press07", "door_open", T0 + i * S, i % 3 == 0) for i in range(2_000)]
        + [Reading("press07", "idle_tag", T0 + i * 7 * S, "text, with \"quotes\"" if i % 5
                   else float(i)) for i in range(400)])


QUERIES = [
    (URL, {"machine": "press07", "start": ms(T0), "end": ms(T0 + 3_600 * S), "limit": 5_000}),
    (URL, {"machine": "press07", "tag": "motor_current", "start": ms(T0),
           "end": ms(T0 + 86_400 * S), "limit": 2_500}),
    (URL, {"machine": "press07", "tag": ["door_open", "idle_tag"], "start": ms(T0),
           "end": ms(T0 + 86_400 * S), "limit": 1_000}),
    (URL + "/aggregate", {"machine": "press07", "start": ms(T0), "end": ms(T0 + 3_600 * S),
                          "bucket": "1s"}),
    (URL + "/aggregate", {"machine": "press07", "tag": "motor_current", "start": ms(T0),
                          "end": ms(T0 + 86_400 * S), "bucket": "1m", "tz": "Europe/Berlin"}),
]


@pytest.fixture
async def apps(ledger: Ledger) -> AsyncIterator[tuple[Ledger, httpx.AsyncClient, httpx.AsyncClient, Offload]]:
    """(ledger, client of an app with no workers, client of an app with one, its Offload),
    the ledger seeded."""
    _, local = await make_env(ledger, workers=0)
    _, client = await make_env(ledger, workers=1)
    await seed(ledger)
    offload = client._transport.app.state.offload  # type: ignore[attr-defined]
    async with local, client:
        try:
            yield ledger, local, client, offload
        finally:
            await offload.close()


async def pages(client: httpx.AsyncClient, url: str, params: dict) -> list[bytes]:
    """Every page of a query, following `next`, as the bytes the API sent."""
    bodies = []
    cursor = None
    while True:
        r = await client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        bodies.append(r.content)
        cursor = r.json().get("next")
        if not cursor:
            return bodies


async def test_workers_answer_the_same_bytes(apps) -> None:
    _, local, offloaded, offload = apps
    assert offload.enabled and not local._transport.app.state.offload.enabled  # type: ignore[attr-defined]
    await offload.start()
    assert len(offload.pids()) == 1 and os.getpid() not in offload.pids()
    for url, params in QUERIES:
        here = await pages(local, url, params)
        there = await pages(offloaded, url, params)
        assert there == here and len(here[0]) > 5_000, (url, params)
    items = [i for body in await pages(offloaded, *QUERIES[0])
             for i in httpx.Response(200, content=body).json()["items"]]
    assert len(items) == 6_000 + 2_000 + 400 - sum(
        1 for i in range(400) if i * 7 * S >= 3_600 * S)


async def test_workers_start_with_the_first_large_answer_and_stop_when_idle(apps) -> None:
    """No worker process until a large answer is asked for; they stop after `idle_stop`
    seconds without one, and the next large answer starts them again."""
    _, local, offloaded, offload = apps
    offload.idle_stop = 0.5
    assert offload.pids() == []
    url, params = QUERIES[0]
    expected = await pages(local, url, params)
    assert await pages(offloaded, url, params) == expected
    (pid,) = offload.pids()
    answers = offload.answers
    assert answers > 0
    for _ in range(100):
        if not offload.pids() and not process_alive(pid):
            break
        await asyncio.sleep(0.1)
    assert offload.pids() == [] and not process_alive(pid)
    assert await pages(offloaded, url, params) == expected
    assert offload.answers > answers and len(offload.pids()) == 1 and offload.pids() != [pid]


async def test_tags_from_workers_are_the_same(apps) -> None:
    """`/tags` of 1,000 series or more: the newest readings come from a worker."""
    ledger, local, offloaded, offload = apps
    await ledger.write([Reading("lathe1", f"t{i:04d}", T0 + i * S,
                                i % 2 == 0 if i % 3 == 0 else f"v{i}" if i % 3 == 1 else i / 7,
                                Quality.UNCERTAIN if i % 11 == 0 else Quality.GOOD)
                        for i in range(1_200)])
    for params in ({}, {"machine": "lathe1"}):
        before = offload.answers
        here = await local.get("/api/v1/tags", params=params)
        there = await offloaded.get("/api/v1/tags", params=params)
        assert here.status_code == there.status_code == 200
        assert there.content == here.content and offload.answers == before + 1
        items = {(i["machine"], i["tag"]): i for i in there.json()["items"]}
        assert len(items) == 1_200 + 3 * ("machine" not in params)
        assert items[("lathe1", "t0007")]["latest"]["value"] == "v7"
        assert items[("lathe1", "t0011")]["latest"]["quality"] == "uncertain"
        assert items[("lathe1", "t0005")]["latest"]["value"] == 5 / 7


async def test_csv_exports_from_workers_are_the_same(apps, monkeypatch) -> None:
    """Readings as CSV, written by the workers a part at a time (parts of 700 rows here):
    the same text and the same X-Next-Cursor as from the collector process."""
    _, local, offloaded, offload = apps
    monkeypatch.setattr("api.readings.CSV_PART", 700)
    base = {"machine": "press07", "start": ms(T0), "end": ms(T0 + 86_400 * S), "format": "csv"}
    for params in ({**base, "limit": 5_000},  # more readings than that: a next cursor
                   {**base, "limit": 100_000},  # all of them
                   {**base, "tag": ["door_open", "idle_tag"], "limit": 1_000}):
        before = offload.answers
        pages_here, pages_there = [], []
        for client, out in ((local, pages_here), (offloaded, pages_there)):
            cursor = None
            while True:
                r = await client.get(URL, params={**params, **({"cursor": cursor} if cursor else {})})
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
                out.append((r.text, r.headers.get("x-next-cursor")))
                cursor = r.headers.get("x-next-cursor")
                if not cursor:
                    break
        assert pages_there == pages_here, params
        lines = [line for text, _ in pages_there for line in text.splitlines()[1:]]
        assert len(lines) == (8_400 if "tag" not in params else 2_400)
        assert offload.answers > before + 2  # several parts per page, from the workers
    assert '"text, with ""quotes"""' in pages_there[0][0] and ",true," in pages_there[0][0]


async def test_aggregate_csv_from_workers_is_the_same(apps, monkeypatch) -> None:
    """UTC aggregates as CSV, written by the workers a time range at a time (ranges of ~700
    buckets here, cut at bucket boundaries from an unaligned start): the same text as from
    the collector process. Zoned ones stay in the collector process."""
    _, local, offloaded, offload = apps
    monkeypatch.setattr("api.readings.CSV_PART", 700)
    base = {"machine": "press07", "start": ms(T0) + 1_234, "end": ms(T0 + 7_200 * S) - 567,
            "format": "csv"}
    for params in ({**base, "bucket": "1s"}, {**base, "bucket": "7s", "tag": "motor_current"},
                   {**base, "bucket": "1m", "tz": "Europe/Berlin"}):
        before = offload.answers
        here = await local.get(URL + "/aggregate", params=params)
        there = await offloaded.get(URL + "/aggregate", params=params)
        assert here.status_code == there.status_code == 200
        assert there.text == here.text and len(here.text.splitlines()) > 100, params
        if "tz" in params:
            assert offload.answers == before
        else:
            assert offload.answers >= before + 2  # parts
    assert there.text.splitlines()[0] == "machine,tag,start,count,min,max,avg,last"


async def test_a_killed_worker_is_replaced_and_no_answer_is_lost(apps) -> None:
    _, local, client, offload = apps
    if True:
        url, params = QUERIES[0]
        expected = await pages(local, url, params)
        await offload.start()
        for round_ in range(BREAKS_ALLOWED):
            (pid,) = offload.pids()
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.2)
            # the answer the dead worker owed comes from the collector process
            assert await pages(client, url, params) == expected
            assert offload.replaced == round_ + 1 and offload.enabled
            assert await pages(client, url, params) == expected  # from a new worker
            assert offload.pids() and offload.pids() != [pid]
        # a worker that keeps dying: answers stay in the collector process from then on
        os.kill(offload.pids()[0], signal.SIGKILL)
        await asyncio.sleep(0.2)
        assert await pages(client, url, params) == expected
        assert not offload.enabled and offload.pids() == []
        assert await pages(client, *QUERIES[3]) == await pages(local, *QUERIES[3])


async def test_an_error_in_a_worker_is_a_503_naming_it(apps) -> None:
    ledger, _, client, offload = apps
    if True:
        await offload.start()
        with pytest.raises(WorkerError) as caught:
            await offload.run(_fails, "on purpose")
        assert caught.value.kind == "ZeroDivisionError" and "on purpose" in str(caught.value)
        # the readings' view gone: the worker's query fails, the client hears why
        async with ledger.engine.begin() as conn:
            await conn.exec_driver_sql("DROP VIEW readings_all")
        # as a server would answer (the ASGI test transport re-raises what the app handled)
        transport = httpx.ASGITransport(app=client._transport.app,  # type: ignore[attr-defined]
                                        raise_app_exceptions=False)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as served:
                for url, params in (QUERIES[0], QUERIES[4]):
                    r = await served.get(url, params=params)
                    assert r.status_code == 503, r.text
                    assert r.json()["detail"].startswith("the ledger could not answer: ")
                    assert r.json()["detail"].endswith("Error")  # OperationalError, ...
            assert offload.enabled and offload.replaced == 0  # the worker lives on
        finally:
            async with ledger.engine.begin() as conn:
                await conn.exec_driver_sql(
                    f"CREATE VIEW readings_all AS SELECT {COLUMNS} FROM readings "
                    f"UNION ALL SELECT {COLUMNS} FROM readings_recent")
        r = await client.get(QUERIES[1][0], params=QUERIES[1][1])
        assert r.status_code == 200 and len(r.json()["items"]) == 2_500


COLUMNS = "series_id, ts, value, text, quality, value_int, status"


async def _fails(_ledger: Ledger, why: str) -> bytes:
    raise ZeroDivisionError(why)


def test_workers_exit_with_a_collector_killed_by_sigkill(tmp_path: Path) -> None:
    """A worker's queue never closes when the collector is SIGKILLed; it must exit anyway."""
    db = tmp_path / "ledger.db"
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from api.offload import Offload
        from collector.ledger import Ledger

        async def main():
            ledger = Ledger("sqlite:///{db}")
            await ledger.open()
            offload = Offload(ledger, 2)
            await offload.start()
            print(*offload.pids(), flush=True)
            await asyncio.sleep(60)

        if __name__ == "__main__":
            asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(process_alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(process_alive(p) for p in pids)


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_workers_by_default_one_per_cpu(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/x.db")
    assert shareable(ledger) and not shareable(None)
    assert default_workers() == min(len(os.sched_getaffinity(0)), DEFAULT_MOST)
    assert Offload(ledger).workers == default_workers() and Offload(ledger, 3).workers == 3
    assert not Offload(ledger, 0).enabled
    assert not Offload(None).enabled  # an app without a ledger (the status page alone)


def test_workers_setting_is_checked() -> None:
    base = "api: {{workers: {}}}\nmachines: []\n"
    assert parse_config(base.format(3)).api.workers == 3
    assert parse_config("machines: []\n").api.workers is None
    for bad in ("-1", "many", "65"):
        with pytest.raises(ConfigError) as caught:
            parse_config(base.format(bad))
        assert "api.workers" in str(caught.value) or "workers" in str(caught.value)



async def test_workers_survive_postgresql_going_away_and_coming_back(throwaway_pg) -> None:
    """PostgreSQL stopped under the workers: their answers are 503s naming the error, and once
    it is back the same workers answer again (their pools reconnect)."""
    ledger = Ledger(throwaway_pg.url)
    await ledger.open()
    try:
        _, client = await make_env(ledger, workers=1)
        await seed(ledger)
        offload = client._transport.app.state.offload  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=client._transport.app,  # type: ignore[attr-defined]
                                        raise_app_exceptions=False)
        url, params = QUERIES[0]
        async with client, httpx.AsyncClient(transport=transport, base_url="http://t") as served:
            expected = await pages(client, url, params)
            (pid,) = offload.pids()
            throwaway_pg.stop()
            for query in (QUERIES[0], QUERIES[4]):
                r = await served.get(query[0], params=query[1])
                assert r.status_code == 503, r.text
                assert r.json()["detail"].startswith("the ledger could not answer: ")
            throwaway_pg.start()
            for _ in range(50):  # the first answer may still meet a connection of before
                r = await served.get(url, params=params)
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert await pages(client, url, params) == expected
            assert offload.pids() == [pid] and offload.replaced == 0
            await offload.close()
    finally:
        await ledger.close()


async def test_workers_that_cannot_start_leave_answers_to_the_collector(caplog) -> None:
    """A worker whose start fails (here: a ledger URL it cannot use) breaks the pool: every
    answer is still built, in the collector process, and after BREAKS_ALLOWED tries the
    workers are switched off with an error in the log."""
    class Unusable:
        url, schema = "no-such-driver://nowhere/x", None

        def __init__(self) -> None:
            self.built = 0

    ledger = Unusable()
    offload = Offload(ledger, 1)
    assert offload.enabled
    await offload.start()
    assert "API workers did not start" in caplog.text
    for _ in range(BREAKS_ALLOWED + 1):
        assert await offload.answer(5_000, _count, "x") == b"x"
    assert ledger.built == BREAKS_ALLOWED + 1
    assert not offload.enabled and offload.replaced == BREAKS_ALLOWED
    assert "from now on" in caplog.text
    await offload.close()


async def _count(ledger, text: str) -> bytes:
    ledger.built += 1
    return text.encode()
