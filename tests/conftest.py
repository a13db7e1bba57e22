"""Shared fixtures: ledgers on SQLite and on the machine's PostgreSQL, a throw-away PostgreSQL
cluster that tests may stop and start, and the API over a real ledger. The peers themselves
live in tests/kit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from adapters.base import registry
from collector.ledger import Ledger
from tests.kit.api import ApiRuntime, make_env
from tests.kit.postgres import PG_URL, ThrowawayPostgres, fresh_schema, throwaway_postgres

registry()  # every adapter's source model, for the configs the tests parse


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema in the shared `test` database, dropped afterwards."""
    with fresh_schema() as name:
        yield name


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) for each backend: the same test code runs on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db", None
    else:
        with fresh_schema() as name:
            yield PG_URL, name


@pytest.fixture
async def ledger(ledger_target: tuple[str, str | None]) -> AsyncIterator[Ledger]:
    url, schema = ledger_target
    led = Ledger(url, schema=schema)
    await led.open()
    yield led
    await led.close()


@pytest.fixture
def throwaway_pg() -> Iterator[ThrowawayPostgres]:
    with throwaway_postgres() as pg:
        yield pg


@pytest.fixture
async def api_env(ledger: Ledger) -> AsyncIterator[tuple[ApiRuntime, httpx.AsyncClient]]:
    """(runtime, client) of the real app over `ledger`, without API keys, on each backend."""
    rt, client = await make_env(ledger)
    async with client:
        yield rt, client
