"""The API as its clients meet it: the real app over a real ledger (SQLite or PostgreSQL),
reached through httpx, with no device behind it. `make_env` builds one with any keys, origins
or workers; the `api_env` fixture in tests/conftest.py is the plain one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from api.app import create_app
from collector.config import CollectorConfig, parse_config
from collector.ledger import Ledger, MachineInfo
from collector.model import SECONDS_BUCKETS, BucketCounts, SourceHealth
from collector.runtime import configured_series

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z in µs
S = 1_000_000

CONFIG = """
api:
  enabled: false
  api_keys: [{keys}]
  cors_origins: [{origins}]
{workers}machines:
  - id: press07
    name: Press 07
    area: stamping
    line: line2
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        tags:
          - {{name: motor_current, register: input, address: 2, type: float32, unit: A,
              description: main drive current}}
          - {{name: door_open, register: coil, address: 0, type: bool}}
          - {{name: idle_tag, register: input, address: 10, type: uint16, unit: rpm}}
  - id: lathe1
    sources: []
"""


class PipelineStats:
    """What the health endpoint reads from the pipeline: a ledger that is fine."""

    write_seconds = BucketCounts(SECONDS_BUCKETS)

    def stats(self) -> dict[str, object]:
        return {"ok": True, "backlog": 0, "queued": 0, "dropped": 0, "written": 0,
                "last_error": None}


@dataclass
class ApiRuntime:
    ledger: Ledger
    config: CollectorConfig
    pipeline: PipelineStats = field(default_factory=PipelineStats)
    health: list[SourceHealth] = field(default_factory=list)
    derivation: None = None  # nothing derives production data here


def config_text(keys: tuple[str, ...] = (), origins: tuple[str, ...] = (),
                workers: int | None = None) -> str:
    return CONFIG.format(keys=", ".join(keys), origins=", ".join(origins),
                         workers="" if workers is None else f"  workers: {workers}\n")


async def make_env(ledger: Ledger, keys: tuple[str, ...] = (), origins: tuple[str, ...] = (),
                   workers: int | None = None) -> tuple[ApiRuntime, httpx.AsyncClient]:
    """The runtime and a client of an app over `ledger`; `workers` is `api.workers` (None:
    the default, one worker process per CPU for large answers)."""
    config = parse_config(config_text(keys, origins, workers))
    await ledger.sync_config(
        [MachineInfo(m.id, m.name, m.area, m.line) for m in config.machines],
        configured_series(config))
    health = [SourceHealth("press07", "io", "modbus", connected=True)]
    rt = ApiRuntime(ledger=ledger, config=config, health=health)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(rt)),
                               base_url="http://t", timeout=30)
    return rt, client


def ms(ts_us: int) -> int:
    return ts_us // 1000


def detail(response: httpx.Response) -> str:
    body: Any = response.json()
    assert set(body) == {"detail"}, body
    return str(body["detail"])
