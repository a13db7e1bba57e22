"""Live derivation on a real ledger (SQLite and PostgreSQL): a restart from the checkpoint,
a late reading and a rebuild all give exactly what one uninterrupted live run gives."""

from __future__ import annotations

import random

from collector.config import parse_config
from collector.derive.engine import Derivation
from collector.derive.rebuild import rebuild
from collector.derive.report import ProductionReport
from collector.derive.rules import compile_rules
from collector.ledger import Ledger
from collector.model import BAD, GOOD, Reading

S = 1_000_000
T0 = 1_760_000_000 * S  # 2025-10-09T08:53:20Z

CONFIG = """
machines:
  - id: press07
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: 5020
        tags:
          - {name: current, address: 0, type: float32}
          - {name: amber, address: 2, type: bool, bit: 0}
          - {name: parts, address: 3, type: uint16}
          - {name: scrap, address: 4, type: uint16}
          - {name: kwh, address: 5, type: float32}
    production:
      states:
        - {state: running, when: "state == 'running' and current > 6 or current > 8"}
        - {state: idle, when: "current > 1 or amber"}
        - {state: stopped, when: "true"}
      min_duration: 3s
      offline_after: 5s
      counters: {total: parts, reject: scrap}
      ideal_cycle: 1s
      energy: kwh
      micro_stop: 30s
"""


def machine_day(seconds: int, seed: int = 7) -> list[list[Reading]]:
    """One batch per second of a press that runs, idles, stops, blips, drops out and wraps
    its 16-bit counter."""
    rng = random.Random(seed)
    state, left, parts, scrap, kwh = "running", 40, 65_400, 0, 1000.0
    out = []
    for i in range(seconds):
        ts = T0 + i * S
        left -= 1
        if left <= 0:
            state = rng.choice(["running", "running", "idle", "stopped", "blip", "gone"])
            left = {"blip": 2, "gone": 12}.get(state, rng.randint(20, 90))
        if state == "gone":
            if left == 11:
                out.append([Reading("press07", t, ts, None, BAD)
                            for t in ("current", "amber", "parts", "scrap", "kwh")])
            else:
                out.append([])
            continue
        current = {"running": 12.0, "idle": 3.0, "stopped": 0.2, "blip": 0.0}[state]
        current += rng.uniform(-0.5, 0.5)
        if state == "running" and rng.random() < 0.6:
            parts = (parts + 1) % 65_536
            scrap += rng.random() < 0.05
        kwh += 0.004 if state == "running" else 0.001
        out.append([Reading("press07", "current", ts, current, GOOD),
                    Reading("press07", "amber", ts, state == "idle", GOOD),
                    Reading("press07", "parts", ts, parts, GOOD),
                    Reading("press07", "scrap", ts, scrap, GOOD),
                    Reading("press07", "kwh", ts, kwh, GOOD)])
    return out


async def live(ledger: Ledger, batches: list[list[Reading]], clock: list[int],
               derivation: Derivation | None = None, upto: int | None = None) -> Derivation:
    rules = [compile_rules(m) for m in parse_config(CONFIG).machines]
    if derivation is None:
        derivation = Derivation([r for r in rules if r], ledger, clock=lambda: clock[0])
        await derivation.resume()
        derivation.machines["press07"].upto = derivation.machines["press07"].begin = T0 - 1
    for i, batch in enumerate(batches[:upto]):
        if batch:
            await ledger.write(batch)
            derivation.committed(batch)
        clock[0] = batch[0].ts + S if batch else clock[0] + S
        if i % 5 == 4:
            await derivation.cycle()
    return derivation


async def snapshot(ledger: Ledger, end: int) -> tuple[object, ...]:
    config = parse_config(CONFIG)
    report = ProductionReport(config, ledger.production, clock=lambda: end)
    states = await report.states("press07", T0, end)
    counts = await report.production("press07", T0, end, 60 * S)
    oee = await report.oee("press07", T0, end)
    downtimes = await report.downtimes("press07", T0, end)
    return ([(s["state"], s["start"], s["end"]) for s in states], counts, oee,
            [(d.start, d.end, d.states) for d in downtimes[1]], downtimes[0])


async def test_restart_late_readings_and_rebuild_equal_one_live_run(ledger_target, tmp_path) -> None:
    url, schema = ledger_target
    batches = machine_day(1800)
    end = T0 + 1800 * S - 30 * S

    async def fresh(name: str) -> Ledger:
        if url.startswith("sqlite"):
            led = Ledger(f"sqlite:///{tmp_path}/{name}.db")
        else:
            led = Ledger(url, schema=schema)
            await led.open()
            await led.engine.dispose()
            led = Ledger(url, schema=schema)
        await led.open()
        return led

    # one uninterrupted live run
    one = await fresh("one")
    clock = [T0]
    derivation = await live(one, batches, clock)
    await derivation.cycle()
    want = await snapshot(one, end)
    await one.close()
    assert any(s == "offline" for s, _, _ in want[0]) and want[1]["total"] > 200
    assert want[1]["reject"] > 0 and want[2]["energy_kwh"] > 0

    # a run killed half way: what was committed to readings but not derived is taken in
    # from the ledger by the next start, from the checkpoint
    if url.startswith("sqlite"):
        two = await fresh("two")
    else:  # a clean schema for the second run on PostgreSQL
        from tests.kit.postgres import psql

        psql(f"DROP SCHEMA {schema} CASCADE; CREATE SCHEMA {schema}")
        two = await fresh("two")
    clock = [T0]
    first = await live(two, batches, clock, upto=900)
    await first.cycle()
    for batch in batches[900:960]:  # committed, never derived: the process died
        if batch:
            await two.write(batch)
    clock[0] = T0 + 960 * S
    second = Derivation(list(first.rules.values()), two, clock=lambda: clock[0])
    await second.resume()
    await live(two, batches[960:], clock, derivation=second)
    # a reading that arrives late (a spool replay): derived again from its minute
    late = [Reading("press07", "current", T0 + 100 * S + 500_000, 12.0, GOOD)]
    await two.write(late)
    second.committed(late)
    await second.cycle()
    await second._maybe_rederive("press07", clock[0])
    assert second.stats["rederived"] == 1
    got = await snapshot(two, end)
    # the late reading lies inside a running period of >= 3 s (or is absorbed): same states
    assert got[0] == want[0]
    assert got[1:] == want[1:]

    # rebuilding the whole range from the stored readings gives the same again
    config = parse_config(CONFIG)
    result = await rebuild(config, "press07", T0, end, ledger=two)
    assert result.spliced
    again = await snapshot(two, end)
    await two.close()
    assert again[2] == want[2], (again[2], want[2])
    assert again == want


async def test_a_dropped_postgresql_connection_costs_one_commit_and_loses_nothing(pg_schema) -> None:
    """Production commits keep their PostgreSQL connection between commits; when the server
    ends it (a restart, an idle timeout) that commit fails, the batch stays pending, and the
    next tick commits it on a new connection."""
    from tests.kit.postgres import PG_URL, psql

    ledger = Ledger(PG_URL, schema=pg_schema)
    await ledger.open()
    try:
        rules = [r for r in map(compile_rules, parse_config(CONFIG).machines) if r is not None]
        clock = [T0]
        derivation = Derivation(rules, ledger, clock=lambda: clock[0])
        await derivation.resume()
        sent = 0
        failures = 0
        for second in range(40):
            batch = [Reading("press07", "current", T0 + second * S, 12.0, GOOD),
                     Reading("press07", "parts", T0 + second * S, second, GOOD)]
            await ledger.write(batch)
            derivation.committed(batch)
            sent = second
            clock[0] = T0 + (second + 3) * S
            if second == 20:  # the server ends the session production commits go through
                pid = ledger.production._driver.get_server_pid()
                psql(f"SELECT pg_terminate_backend({int(pid)})")
            try:
                await derivation.cycle()
            except Exception:
                failures += 1
        clock[0] += 10 * S
        await derivation.cycle(final=True)
        rows = await ledger.production.fetch(
            "SELECT coalesce(sum(total), 0) FROM part_counts WHERE machine_id = 'press07'", {}, 1)
        assert failures == 1
        assert int(rows[0][0]) == sent  # parts 1..39 from a counter that began at 0
    finally:
        await ledger.close()


BIG_COUNTER = """
machines:
  - id: meter
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: 5020
        tags:
          - {name: current, address: 0, type: float32}
          - {name: made, address: 2, type: uint64}
    production:
      states:
        - {state: running, when: "current > 8"}
        - {state: stopped, when: "true"}
      counters: {total: made}
"""


async def test_a_64_bit_counter_past_2_53_counts_every_part_live_and_rebuilt(ledger) -> None:
    """A uint64 totaliser near 2^64 (doubles there are 4,096 apart): each increase of one is
    one part, live and when rebuilt from the stored readings."""
    config = parse_config(BIG_COUNTER)
    rules = [r for r in map(compile_rules, config.machines) if r is not None]
    clock = [T0]
    derivation = Derivation(rules, ledger, clock=lambda: clock[0])
    await derivation.resume()
    base = 2**64 - 1000
    for second in range(60):
        # one part a second (two in second 31) while running, for 50 s; then stopped
        made = base + min(second, 49) + (second > 30)
        batch = [Reading("meter", "current", T0 + second * S, 12.0 if second < 50 else 0.0, GOOD),
                 Reading("meter", "made", T0 + second * S, made, GOOD)]
        await ledger.write(batch)
        derivation.committed(batch)
        clock[0] = T0 + (second + 3) * S
        await derivation.cycle()
    clock[0] += 10 * S
    await derivation.cycle(final=True)

    async def parts() -> int:
        rows = await ledger.production.fetch(
            "SELECT coalesce(sum(total), 0) FROM part_counts WHERE machine_id = 'meter'", {}, 1)
        return int(rows[0][0])

    assert await parts() == 50
    result = await rebuild(config, "meter", T0, T0 + 70 * S, ledger=ledger)
    assert result.spliced
    assert await parts() == 50
