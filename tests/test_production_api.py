"""The production endpoints over HTTP on SQLite and PostgreSQL: shapes, write keys, the daily
ledger as CSV (BOM, Chinese headers), UMH codes, the networking rate, and clear 4xx answers."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import httpx

from api.app import create_app
from collector.config import CollectorConfig, parse_config
from collector.ledger import Ledger, MachineInfo
from collector.ledger.production import ProductionBatch
from collector.model import SECONDS_BUCKETS, BucketCounts, Reading, SourceHealth, us_from_datetime
from collector.runtime import configured_series

MIN = 60_000_000

CONFIG = """
api:
  api_keys: [reader]
  write_keys: [writer]
plant:
  timezone: Asia/Shanghai
  shifts:
    - {name: early, start: "08:00", end: "16:00"}
    - {name: night, start: "20:00", end: "08:00"}
  downtime_reasons:
    - {code: tool_change, label: Tool change, planned: true}
    - {code: no_material, label: 缺料}
machines:
  - id: press07
    name: 冲床 07
    line: line2
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: 5020
        tags:
          - {name: current, address: 0, type: float32}
          - {name: parts, address: 2, type: uint32}
    production:
      states:
        - {state: running, when: "current > 8"}
        - {state: stopped, when: "true"}
      counters: {total: parts}
      ideal_cycle: 2s
      micro_stop: 2m
  - id: fan01
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: 5020
        tags: [{name: speed, address: 0}]
"""

READ = {"X-API-Key": "reader"}
WRITE = {"X-API-Key": "writer"}


@dataclass
class Pipeline:
    write_seconds = BucketCounts(SECONDS_BUCKETS)

    def stats(self) -> dict[str, object]:
        return {"ok": True, "backlog": 0, "queued": 0, "dropped": 0, "written": 0,
                "last_error": None}


@dataclass
class Runtime:
    ledger: Ledger
    config: CollectorConfig
    pipeline: Pipeline = field(default_factory=Pipeline)
    health: list[SourceHealth] = field(default_factory=list)
    derivation: None = None  # nothing derives production data here


def at(text: str) -> int:
    return us_from_datetime(__import__("datetime").datetime.fromisoformat(text))


async def client_for(ledger: Ledger, now: str) -> httpx.AsyncClient:
    config = parse_config(CONFIG)
    await ledger.sync_config([MachineInfo(m.id, m.name, m.area, m.line) for m in config.machines],
                             configured_series(config))
    app = create_app(Runtime(ledger, config))
    frozen = at(now)
    app.state.production.clock = lambda: frozen
    # a shift of 2026-11-23 (Shanghai, UTC+8): early 00:00-08:00 UTC, running with a 30 min stop
    start = at("2026-11-23T00:00:00+00:00")
    batch = ProductionBatch(intervals=[
        ("press07", start, start + 120 * MIN, "running"),
        ("press07", start + 120 * MIN, start + 150 * MIN, "stopped"),
        ("press07", start + 150 * MIN, start + 480 * MIN, "running")])
    batch.counts = [("press07", start + 10 * MIN, 3000, 0, 0),
                    ("press07", start + 300 * MIN, 4000, 0, 0)]
    await ledger.production.commit(batch)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


WINDOW = {"start": "2026-11-23T00:00:00Z", "end": "2026-11-23T08:00:00Z"}


async def test_states_production_oee_and_downtimes(ledger) -> None:
    async with await client_for(ledger, "2026-11-24T00:00:00+00:00") as client:
        states = (await client.get("/api/v1/machines/press07/states", params=WINDOW,
                                   headers=READ)).json()["items"]
        assert [(s["state"], s["duration_s"]) for s in states] == [
            ("running", 7200.0), ("stopped", 1800.0), ("running", 19800.0)]
        assert states[0]["start"] == "2026-11-23T00:00:00.000Z" and "code" not in states[0]
        umh = (await client.get("/api/v1/machines/press07/states",
                                params={**WINDOW, "codes": "umh"}, headers=READ)).json()
        assert [s["code"] for s in umh["items"]] == [10000, 40000, 10000]
        prod = (await client.get("/api/v1/machines/press07/production",
                                 params={**WINDOW, "bucket": "shift"}, headers=READ)).json()
        assert (prod["total"], prod["good"], prod["reject"]) == (7000, 7000, 0)
        assert [(i["start"], i["total"]) for i in prod["items"]] == [
            ("2026-11-23T00:00:00.000Z", 7000)]
        oee = (await client.get("/api/v1/machines/press07/oee", params=WINDOW,
                                headers=READ)).json()
        assert oee["planned_s"] == 28800 and oee["running_s"] == 27000
        assert oee["availability"] == 0.9375 and oee["performance"] == round(14000 / 27000, 6)
        line = (await client.get("/api/v1/lines/line2/oee", params=WINDOW,
                                 headers=READ)).json()
        assert (line["total"], line["availability"], line["machines"]) == (7000, 0.9375,
                                                                           ["press07"])
        downs = (await client.get("/api/v1/machines/press07/downtimes", params=WINDOW,
                                  headers=READ)).json()
        assert downs["micro_stops"] == 0
        [down] = downs["items"]
        assert (down["start"], down["duration_s"], down["states"], down["reason"]) == (
            "2026-11-23T02:00:00.000Z", 1800.0, ["stopped"], None)

        # reasons: a read key cannot write, an unknown reason is a 400, a write key can
        url = f"/api/v1/downtimes/{down['id']}"
        r = await client.patch(url, json={"reason": "tool_change"}, headers=READ)
        assert r.status_code == 403 and "write_keys" in r.json()["detail"]
        r = await client.patch(url, json={"reason": "coffee"}, headers=WRITE)
        assert r.status_code == 400 and "tool_change" in r.json()["detail"]
        r = await client.patch("/api/v1/downtimes/press07@1", json={"reason": None},
                               headers=WRITE)
        assert r.status_code == 404
        r = await client.patch(url, json={"reason": "tool_change", "comment": "die 4"},
                               headers=WRITE)
        assert r.status_code == 200 and r.json()["planned"] is True
        oee = (await client.get("/api/v1/machines/press07/oee", params=WINDOW,
                                headers=WRITE)).json()
        assert oee["planned_s"] == 27000 and oee["availability"] == 1.0


async def test_the_daily_ledger_as_json_and_csv(ledger) -> None:
    async with await client_for(ledger, "2026-11-24T00:00:00+00:00") as client:
        day = (await client.get("/api/v1/ledger/daily", params={"date": "2026-11-23"},
                                headers=READ)).json()
        assert day["timezone"] == "Asia/Shanghai"
        assert [s["name"] for s in day["shifts"]] == ["early", "night"]
        rows = {(r["machine"], r["shift"]): r for r in day["items"]}
        assert set(rows) == {("press07", "early"), ("press07", "night")}
        early = rows[("press07", "early")]
        assert (early["name"], early["total"], early["downtimes"]) == ("冲床 07", 7000, 1)
        assert early["running_s"] + early["stopped_s"] + early["offline_s"] == 8 * 3600
        night = rows[("press07", "night")]  # 12:00-24:00 UTC, nothing observed
        assert night["offline_s"] == 12 * 3600 and night["total"] == 0
        [total] = day["totals"]
        assert (total["shift"], total["total"], total["planned_s"]) == ("total", 7000, 20 * 3600)
        r = await client.get("/api/v1/ledger/daily",
                             params={"date": "2026-11-23", "format": "csv", "lang": "zh-CN"},
                             headers=READ)
        assert r.headers["content-type"].startswith("text/csv")
        assert r.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for UTF-8
        table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert table[0][:4] == ["日期", "设备", "班次", "计划时间(秒)"]
        assert [row[2] for row in table[1:]] == ["early", "night", "合计"]
        r = await client.get("/api/v1/ledger/daily", params={"date": "2026-11-23",
                                                             "format": "csv"}, headers=READ)
        header = r.content.decode("utf-8-sig").splitlines()[0]
        assert header.startswith("date,machine,shift,planned_s,running_s,idle_s,stopped_s")
        assert header.endswith("availability,performance,quality,oee,energy_kwh")


async def test_networking_rate(ledger) -> None:
    async with await client_for(ledger, "2026-11-24T00:00:00+00:00") as client:
        got = (await client.get("/api/v1/connectivity", params=WINDOW, headers=READ)).json()
        shares = {m["machine"]: m["share"] for m in got["machines"]}
        assert shares == {"press07": 1.0, "fan01": 0.0}  # fan01 has no readings at all
        assert got["rate"] == 0.5 and got["threshold"] == 0.95
        # fan01 has no state rules: the minutes with readings count, 48 of the window's 480
        start = at("2026-11-23T00:00:00+00:00")
        await ledger.write([Reading("fan01", "speed", start + i * 10 * MIN + 1, 1.0)
                            for i in range(48)])
        got = (await client.get("/api/v1/connectivity", params=WINDOW, headers=READ)).json()
        assert {m["machine"]: m["share"] for m in got["machines"]}["fan01"] == 0.1


async def test_bad_requests_name_what_to_change(ledger) -> None:
    async with await client_for(ledger, "2026-11-24T00:00:00+00:00") as client:
        async def detail(url: str, status: int, **params: Any) -> str:
            r = await client.get(url, params=params, headers=READ)
            assert r.status_code == status, r.text
            return str(r.json()["detail"])

        assert "no production rules" in await detail("/api/v1/machines/fan01/oee", 404)
        assert "'nope' not found" in await detail("/api/v1/machines/nope/states", 404)
        assert "YYYY-MM-DD" in await detail("/api/v1/ledger/daily", 400, date="23.11.2026")
        assert "json or csv" in await detail("/api/v1/ledger/daily", 400, format="xlsx")
        assert "umh" in await detail("/api/v1/machines/press07/states", 400, codes="isa")
        assert "bucket" in await detail("/api/v1/machines/press07/production", 400,
                                        bucket="5 parsecs")
        assert "line9" in await detail("/api/v1/lines/line9/oee", 404)
        r = await client.get("/api/v1/machines/press07/oee")
        assert r.status_code == 401
