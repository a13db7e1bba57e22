"""Production figures from stored intervals and counts, against hand-computed results, on
SQLite and PostgreSQL: the ISO 22400 worked example, downtimes and micro-stops, planned
reasons, shifts across midnight and both DST days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from collector.config import parse_config
from collector.derive.report import ProductionReport
from collector.ledger.production import ProductionBatch
from collector.model import us_from_datetime

S = 1_000_000
MIN = 60 * S

CONFIG = """
plant:
  timezone: {tz}
  shifts: {shifts}
  breaks: {breaks}
  downtime_reasons:
    - {{code: tool_change, label: Tool change, planned: true}}
    - {{code: no_material, label: No material}}
machines:
  - id: press07
    line: line2
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: 5020
        tags:
          - {{name: current, address: 0, type: float32}}
          - {{name: total, address: 2, type: uint32}}
          - {{name: reject, address: 4, type: uint32}}
    production:
      states:
        - {{state: running, when: "current > 8"}}
        - {{state: stopped, when: "true"}}
      counters: {{total: total, reject: reject}}
      ideal_cycle: 1s
      micro_stop: {micro}
"""


def at(text: str) -> int:
    return us_from_datetime(datetime.fromisoformat(text))


def report(ledger, clock: str, tz: str = "UTC", shifts: str = "[]", breaks: str = "[]",
           micro: str = "2m") -> ProductionReport:
    config = parse_config(CONFIG.format(tz=tz, shifts=shifts, breaks=breaks, micro=micro))
    now = at(clock)
    return ProductionReport(config, ledger.production, clock=lambda: now)


def timeline(start: str, pieces: list[tuple[int, str]]) -> list[tuple[str, int, int, str]]:
    """Intervals from `start`, each (minutes, state)."""
    out, t = [], at(start)
    for minutes, state in pieces:
        out.append(("press07", t, t + minutes * MIN, state))
        t += minutes * MIN
    return out


ISO_SHIFT = '[{name: day, start: "06:00", end: "14:00"}]'
ISO_BREAKS = ('[{start: "08:00", end: "08:15"}, {start: "10:00", end: "10:30"}, '
              '{start: "12:00", end: "12:15"}]')
ISO_DAY = [(120, "running"), (15, "stopped"), (45, "running"), (47, "stopped"), (13, "running"),
           (30, "stopped"), (90, "running"), (15, "stopped"), (105, "running")]


async def store_iso_example(ledger) -> None:
    """A shift of 480 min with 60 min of breaks and a 47 min stop; 19,271 parts, 423 rejects."""
    batch = ProductionBatch(intervals=timeline("2026-11-23T06:00:00+00:00", ISO_DAY))
    batch.counts = [("press07", at("2026-11-23T06:30:00+00:00"), 10_000, 0, 200),
                    ("press07", at("2026-11-23T11:00:00.500+00:00"), 9_271, 0, 223)]
    await ledger.production.commit(batch)


async def test_iso_22400_worked_example(ledger) -> None:
    await store_iso_example(ledger)
    rep = report(ledger, "2026-11-23T15:00:00+00:00", shifts=ISO_SHIFT, breaks=ISO_BREAKS)
    oee = await rep.oee("press07", at("2026-11-23T06:00:00+00:00"), at("2026-11-23T14:00:00+00:00"))
    assert oee["planned_s"] == 420 * 60
    assert (oee["running_s"], oee["stopped_s"], oee["idle_s"], oee["offline_s"]) == (
        373 * 60, 107 * 60, 0, 0)
    assert (oee["total"], oee["good"], oee["reject"]) == (19_271, 18_848, 423)
    assert oee["availability"] == pytest.approx(373 / 420, abs=1e-6)  # 0.8881
    assert oee["performance"] == pytest.approx(19_271 / (373 * 60), abs=1e-6)  # 0.8611
    assert oee["quality"] == pytest.approx(18_848 / 19_271, abs=1e-6)  # 0.9780
    assert oee["oee"] == pytest.approx(373 / 420 * 19_271 / 22_380 * 18_848 / 19_271, abs=1e-5)
    micro, downs = await rep.downtimes("press07", at("2026-11-23T06:00:00+00:00"),
                                       at("2026-11-23T14:00:00+00:00"))
    # the stops in breaks are not in planned time: one downtime, 09:00-09:47
    assert micro == 0
    assert [(d.start, d.end, d.states) for d in downs] == [
        (at("2026-11-23T09:00:00+00:00"), at("2026-11-23T09:47:00+00:00"), ["stopped"])]


async def test_a_planned_reason_takes_the_downtime_out_of_planned_time(ledger) -> None:
    await store_iso_example(ledger)
    rep = report(ledger, "2026-11-23T15:00:00+00:00", shifts=ISO_SHIFT, breaks=ISO_BREAKS)
    start, end = at("2026-11-23T06:00:00+00:00"), at("2026-11-23T14:00:00+00:00")
    _, downs = await rep.downtimes("press07", start, end)
    with pytest.raises(ValueError, match="unknown reason 'coffee'"):
        await rep.set_reason(downs[0].id, "coffee", None)
    await rep.set_reason(downs[0].id, "tool_change", "die 4")
    oee = await rep.oee("press07", start, end)
    assert oee["planned_s"] == 373 * 60 and oee["availability"] == 1.0
    await rep.set_reason(downs[0].id, "no_material", "coil late")  # unplanned again
    oee = await rep.oee("press07", start, end)
    assert oee["planned_s"] == 420 * 60
    _, downs = await rep.downtimes("press07", start, end)
    assert (downs[0].reason, downs[0].comment) == ("no_material", "coil late")


async def test_stops_shorter_than_micro_stop_are_micro_stops_not_downtimes(ledger) -> None:
    batch = ProductionBatch(intervals=timeline("2026-11-23T06:00:00+00:00", [
        (10, "running"), (1, "stopped"), (10, "running"), (3, "idle"), (10, "running"),
        (1, "stopped"), (1, "offline"), (10, "running")]))
    await ledger.production.commit(batch)
    rep = report(ledger, "2026-11-23T12:00:00+00:00", micro="2m")
    micro, downs = await rep.downtimes("press07", at("2026-11-23T06:00:00+00:00"),
                                       at("2026-11-23T07:00:00+00:00"))
    # 1 min stopped: micro; 3 min idle: downtime; stopped + offline together 2 min: downtime;
    # nothing observed after 06:46: offline, a downtime that goes on
    assert micro == 1
    assert [((d.end - d.start) // MIN, d.states, d.ongoing) for d in downs] == [
        (3, ["idle"], False), (2, ["stopped", "offline"], False), (314, ["offline"], True)]


async def test_a_night_shift_belongs_to_the_date_it_starts_on(ledger) -> None:
    shifts = ('[{name: early, start: "06:00", end: "14:00"}, '
              '{name: night, start: "22:00", end: "06:00"}]')
    batch = ProductionBatch(intervals=timeline("2026-11-23T21:00:00+00:00", [
        (180, "running"), (300, "stopped"), (60, "running")]))
    batch.counts = [("press07", at("2026-11-24T00:30:00+00:00"), 50, 0, 1)]
    await ledger.production.commit(batch)
    rep = report(ledger, "2026-11-25T00:00:00+00:00", shifts=shifts)
    rows = {row["shift"]: row for row in (await rep.daily(date(2026, 11, 23)))[0]}
    night = rows["night"]
    # 22:00-06:00: running 22:00-00:00 (2 h), stopped 00:00-05:00, running 05:00-06:00
    assert (night["running_s"], night["stopped_s"], night["offline_s"]) == (3 * 3600, 5 * 3600, 0)
    assert (night["total"], night["reject"], night["good"]) == (50, 1, 49)
    assert night["downtimes"] == 1 and night["longest_downtime_s"] == 5 * 3600
    early = rows["early"]  # nothing was observed: offline the whole shift
    assert early["offline_s"] == 8 * 3600 and early["total"] == 0


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25)])
async def test_dst_days_have_23_and_25_hours(ledger, day: date, hours: int) -> None:
    rep = report(ledger, "2027-01-01T00:00:00+00:00", tz="Europe/Berlin")
    rows, totals = await rep.daily(day)
    assert [r["shift"] for r in rows] == ["day"]
    assert totals[0]["planned_s"] == hours * 3600
    row = rows[0]
    assert row["planned_s"] == hours * 3600
    assert row["running_s"] + row["idle_s"] + row["stopped_s"] + row["offline_s"] == hours * 3600


@pytest.mark.parametrize(("day", "hours"), [(date(2026, 3, 28), 7), (date(2026, 10, 24), 9)])
async def test_a_night_shift_across_a_dst_change(ledger, day: date, hours: int) -> None:
    rep = report(ledger, "2027-01-01T00:00:00+00:00", tz="Europe/Berlin",
                 shifts='[{name: night, start: "22:00", end: "06:00"}]')
    [row], _ = await rep.daily(day)
    start = datetime.fromisoformat(f"{day.isoformat()}T22:00:00").replace(
        tzinfo=ZoneInfo("Europe/Berlin"))
    assert row["start"] == us_from_datetime(start.astimezone(UTC))
    assert row["planned_s"] == hours * 3600 and row["offline_s"] == hours * 3600


async def test_parts_per_shift_and_per_bucket_are_exact_at_any_edge(ledger) -> None:
    batch = ProductionBatch()
    batch.counts = [("press07", at("2026-11-23T06:00:10+00:00"), 3, 0, 0),
                    ("press07", at("2026-11-23T06:00:50+00:00"), 4, 0, 1),
                    ("press07", at("2026-11-23T06:01:30+00:00"), 5, 0, 0)]
    await ledger.production.commit(batch)
    rep = report(ledger, "2026-11-24T00:00:00+00:00")
    got = await rep.production("press07", at("2026-11-23T06:00:30+00:00"),
                               at("2026-11-23T06:01:31+00:00"), 30 * S)
    assert (got["total"], got["reject"]) == (9, 1)  # the event at 06:00:10 is outside
    assert [(i["total"], i["reject"]) for i in got["items"]] == [(4, 1), (0, 0), (5, 0)]
    line = await rep.line_oee("line2", at("2026-11-23T06:00:00+00:00"),
                              at("2026-11-23T07:00:00+00:00"))
    assert (line["total"], line["good"], line["machines"]) == (12, 11, ["press07"])


async def test_a_downtime_longer_than_a_day_keeps_its_start_and_id(ledger) -> None:
    batch = ProductionBatch(intervals=timeline("2026-11-20T06:00:00+00:00", [
        (60, "running"), (60 * 60, "stopped"), (60, "running")]))
    await ledger.production.commit(batch)
    rep = report(ledger, "2026-11-25T00:00:00+00:00")
    stop_start = at("2026-11-20T07:00:00+00:00")
    # a window two days into the stop still sees where it began
    _, downs = await rep.downtimes("press07", at("2026-11-22T12:00:00+00:00"),
                                   at("2026-11-22T13:00:00+00:00"))
    assert [(d.start, d.end) for d in downs] == [(stop_start, stop_start + 60 * 60 * MIN)]
    await rep.set_reason(downs[0].id, "no_material", None)
    await rep.set_reason(downs[0].id, None, "waiting for coil", keep=("reason",))
    _, downs = await rep.downtimes("press07", at("2026-11-21T00:00:00+00:00"),
                                   at("2026-11-21T01:00:00+00:00"))
    assert (downs[0].reason, downs[0].comment) == ("no_material", "waiting for coil")
    states = await rep.states("press07", at("2026-11-22T12:00:00+00:00"),
                              at("2026-11-22T13:00:00+00:00"), codes="umh")
    assert [s["code"] for s in states] == [40000]  # a long stop, not a micro-stop


async def test_counters_without_state_rules_give_parts_but_no_availability(ledger) -> None:
    config = parse_config(CONFIG.format(tz="UTC", shifts="[]", breaks="[]", micro="2m")
                          .replace('''      states:
        - {state: running, when: "current > 8"}
        - {state: stopped, when: "true"}
''', ""))
    now = at("2026-11-24T00:00:00+00:00")
    rep = ProductionReport(config, ledger.production, clock=lambda: now)
    await ledger.production.commit(ProductionBatch(
        counts=[("press07", at("2026-11-23T06:30:00+00:00"), 100, 0, 3)]))
    oee = await rep.oee("press07", at("2026-11-23T06:00:00+00:00"),
                        at("2026-11-23T07:00:00+00:00"))
    assert (oee["total"], oee["good"], oee["availability"], oee["performance"], oee["oee"]) == (
        100, 97, None, None, None)
    assert oee["quality"] == 0.97 and oee["offline_s"] == 0
    assert await rep.states("press07", at("2026-11-23T06:00:00+00:00"),
                            at("2026-11-23T07:00:00+00:00")) == []


def test_a_slice_of_a_timeline_is_the_same_as_filling_it_again() -> None:
    import random

    from collector.derive.report import _slice, fill

    rng = random.Random(7)
    for _ in range(500):
        segments, t = [], rng.randrange(0, 50)
        for _ in range(rng.randrange(0, 12)):
            t += rng.randrange(0, 4)  # gaps now and then
            length = rng.randrange(1, 9)
            segments.append((t, t + length, rng.choice(["running", "idle", "stopped", "offline"])))
            t += length
        lo, hi = rng.randrange(0, 40), rng.randrange(40, 140)
        line = fill(segments, lo, hi)
        a = rng.randrange(-10, 150)
        b = a + rng.randrange(0, 60)
        assert _slice(line, a, b) == fill(line, a, b), (line, a, b)


async def test_reads_of_many_machines_at_once_equal_the_reads_one_machine_at_a_time(ledger) -> None:
    """What the daily ledger reads for all machines together (their stop extents, intervals,
    downtime notes, minute sums between edges) is what the per-machine reads give."""
    store = ledger.production
    batch = ProductionBatch()
    t0 = at("2026-11-23T00:00:00+00:00")
    for k, machine in enumerate(["m1", "m2", "m3", "m4"]):
        t = t0 + k * MIN
        for i in range(40 if machine != "m4" else 0):  # m4 has nothing stored
            state = ("running", "idle", "stopped")[(i + k) % 3]
            batch.intervals.append((machine, t, t + (7 + i % 5) * MIN, state))
            batch.counts.append((machine, t + 30 * S, 1 + i % 3, 1, 0))
            t += (7 + i % 5) * MIN
    await store.commit(batch)
    for machine, start in [("m1", t0 + 40 * MIN), ("m2", t0 + 100 * MIN), ("m3", t0 + 7 * MIN)]:
        await store.set_note(machine, start, "no_material", f"note {machine}")
    machines = ["m1", "m2", "m3", "m4"]
    start, stop = t0 + 60 * MIN, t0 + 200 * MIN
    extents = await store.extents(machines, start, stop)
    for machine in machines:
        assert extents[machine] == (await store.first_interval_start(machine),
                                    await store.last_running_end(machine, start),
                                    await store.next_running_start(machine, stop))
    assert extents["m4"] == (None, None, None) and extents["m1"][0] == t0
    windows = {"m1": (t0 + 30 * MIN, t0 + 200 * MIN), "m2": (t0 + 61 * MIN, t0 + 62 * MIN),
               "m3": (t0, t0 + 400 * MIN), "m4": (t0, t0 + 10 * MIN)}
    intervals = await store.intervals_of(windows)
    notes = await store.notes_of(windows)
    for machine, (a, b) in windows.items():
        assert intervals[machine] == await store.intervals(machine, a, b)
        assert notes[machine] == await store.notes(machine, a, b)
    assert len(intervals["m3"]) == 40 and not intervals["m4"]
    assert notes["m1"] == {t0 + 40 * MIN: ("no_material", "note m1")}
    edges = [t0, t0 + 60 * MIN, t0 + 61 * MIN, t0 + 300 * MIN]
    by_edges = await store.sums_by_edges(machines, edges)
    for machine in machines:
        for i in range(len(edges) - 1):
            want = await store.sums(machine, edges[i], edges[i + 1])
            got = by_edges.get((machine, i))
            assert ((got.total, got.good) if got else (0, 0)) == (want.total, want.good)
    many = [t0 + i * MIN for i in range(0, 121)]  # 120 spans: more than one statement
    by_minute = await store.sums_by_edges(["m1"], many)
    whole = await store.sums("m1", t0, t0 + 120 * MIN)
    assert whole.total > 0 and sum(s.total for s in by_minute.values()) == whole.total


async def test_hour_sums_stay_equal_to_the_minute_sums_through_a_rewind(ledger) -> None:
    """production_1h is what the minutes add up to, also after derivation writes a span
    again (a late reading, a rebuild) from the middle of an hour."""
    store = ledger.production
    t0 = at("2026-11-23T05:00:00+00:00")
    first = ProductionBatch(counts=[("press07", t0 + i * 37 * S, 1 + i % 2, 1, 0)
                                    for i in range(400)],  # 4 h 6 min of parts
                            energy=[("press07", t0 + i * MIN, 0.25) for i in range(246)])
    await store.commit(first)
    until = t0 + 200 * MIN
    again = ProductionBatch(rewind={"press07": (t0 + 90 * MIN, t0 + 90 * MIN, until)},
                            counts=[("press07", t0 + 90 * MIN + i * 60 * S, 5, 5, 0)
                                    for i in range(110)])

    async def rows(sql: str) -> list[tuple]:
        return sorted(tuple(r) for r in await store.fetch(sql, {}, 1000))

    for batch in (first, again):
        if batch is again:
            await store.commit(batch)
        hours = await rows("SELECT hour, total, good, reject, energy_kwh FROM production_1h")
        minutes = await rows(
            "SELECT minute - minute % 3600000000, sum(total), sum(good), sum(reject), "
            "sum(energy_kwh) FROM production_1m GROUP BY 1")
        assert [h[:4] for h in hours] == [m[:4] for m in minutes] and len(hours) == 5
        assert [round(h[4], 9) for h in hours] == [round(m[4], 9) for m in minutes]
    # figures over whole hours and ragged edges agree with the per-event counts
    for a, b in [(t0, t0 + 5 * 60 * MIN), (t0 + 17 * MIN, t0 + 181 * MIN),
                 (t0 + 61 * MIN, t0 + 119 * MIN)]:
        events = await store.count_times("press07", a, b)
        assert (await store.sums("press07", a, b)).total == sum(e[1] for e in events)


async def test_a_large_commit_stores_every_row_once_and_a_later_row_wins(ledger) -> None:
    """A rebuild commits hundreds of thousands of parts at once (PostgreSQL: through a staging
    table); the rows and upserts come out as with a small commit."""
    store = ledger.production
    t0 = at("2026-11-23T00:00:00+00:00")
    batch = ProductionBatch(counts=[("press07", t0 + i * S, 1, 1, 0) for i in range(5000)])
    await store.commit(batch)
    again = ProductionBatch(counts=[("press07", t0 + i * S, 2, 2, 0) for i in range(2500)])
    again.counts += [("press07", t0, 7, 7, 0)]  # the same part twice in one batch: the later
    await store.commit(again)
    rows = await store.fetch("SELECT count(*), sum(total) FROM part_counts", {}, 1)
    assert (int(rows[0][0]), int(rows[0][1])) == (5000, 7 + 2 * 2499 + 2500)
    minutes = await store.fetch("SELECT sum(total) FROM production_1m", {}, 1)
    assert int(minutes[0][0]) == 5000 + 2 * 2500 + 7  # the minute sums add every commit


def test_interval_intersections_and_the_states_of_spans_match_a_plain_count() -> None:
    import random

    from collector.derive.report import _intersect, _states_during, fill

    def disjoint(rng: random.Random, n: int) -> list[tuple[int, int]]:
        out, t = [], rng.randrange(0, 5)
        for _ in range(n):
            t += rng.randrange(0, 5)
            length = rng.randrange(1, 8)
            out.append((t, t + length))
            t += length
        return out

    rng = random.Random(11)
    for _ in range(500):
        a, b = disjoint(rng, rng.randrange(0, 15)), disjoint(rng, rng.randrange(0, 7))
        points = {x for x in range(0, 200) if any(p <= x < q for p, q in a)
                  and any(p <= x < q for p, q in b)}
        got = _intersect(a, b)
        assert {x for p, q in got for x in range(p, q)} == points
        assert sum(q - p for p, q in got) == len(points)
        assert all(p < q for p, q in got) and got == sorted(got)
        line = fill([(p, q, rng.choice(["running", "idle", "stopped"])) for p, q in a], 0, 120)
        spans = [(p, q) for p, q in b if q <= 120]
        want = []
        for p, q in spans:
            states: list[str] = []
            for s, e, state in line:
                if e > p and s < q and state not in states:
                    states.append(state)
            want.append(states)
        assert _states_during(line, spans) == want


async def test_the_shift_going_on_now_counts_to_the_microsecond_as_a_single_window_does(
        ledger) -> None:
    """The daily ledger reads the whole minutes of a shift going on now together for every
    machine and the minute now is in once for all; it equals what one window gives."""
    shifts = ('[{name: early, start: "06:00", end: "14:00"}, '
              '{name: late, start: "14:00", end: "22:00"}]')
    batch = ProductionBatch(intervals=timeline("2026-11-23T06:00:00+00:00", [(600, "running")]))
    batch.counts = [("press07", at(f"2026-11-23T{t}+00:00"), n, 0, r) for t, n, r in [
        ("07:00:00", 5, 1), ("13:59:59", 2, 0), ("14:00:00", 3, 0), ("15:41:59", 4, 1),
        ("15:42:00", 6, 0), ("15:42:29", 7, 2), ("15:42:31", 100, 0), ("15:43:00", 100, 0)]]
    batch.energy = [("press07", at("2026-11-23T15:41:00+00:00"), 1.5),
                    ("press07", at("2026-11-23T15:42:00+00:00"), 0.6),
                    ("press07", at("2026-11-23T07:00:00+00:00"), 2.0)]
    await ledger.production.commit(batch)
    one_window = ledger.production.sums

    async def not_per_machine(*args: object) -> None:
        raise AssertionError("the daily ledger read a machine's parts by itself")

    for clock in ("2026-11-23T15:42:30+00:00", "2026-11-23T15:42:00+00:00",
                  "2026-11-23T14:00:00.5+00:00"):
        rep = report(ledger, clock, shifts=shifts)
        ledger.production.sums = not_per_machine
        try:
            rows = {row["shift"]: row for row in (await rep.daily(date(2026, 11, 23)))[0]}
        finally:
            ledger.production.sums = one_window
        for name, start, end in (("early", "06:00", "14:00"), ("late", "14:00", "22:00")):
            fig = await rep.figures("press07", at(f"2026-11-23T{start}:00+00:00"),
                                    at(f"2026-11-23T{end}:00+00:00"))
            row = rows[name]
            assert (row["total"], row["good"], row["reject"]) == (fig.total, fig.good,
                                                                   fig.reject), (clock, name)
            assert row["energy_kwh"] == pytest.approx(fig.energy_kwh), (clock, name)
    # at 15:42:30 the late shift holds 3 + 4 + 6 + 7 parts and half of 15:42's 0.6 kWh
    rep = report(ledger, "2026-11-23T15:42:30+00:00", shifts=shifts)
    late = {row["shift"]: row for row in (await rep.daily(date(2026, 11, 23)))[0]}["late"]
    assert (late["total"], late["reject"]) == (20, 3)
    assert late["energy_kwh"] == pytest.approx(1.5 + 0.3)
