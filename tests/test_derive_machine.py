"""Machine state and part counts reading by reading, against hand-computed results."""

from __future__ import annotations

from collector.config import parse_config
from collector.derive.counters import CounterTracker, PulseTracker
from collector.derive.machine import MachineDerivation, Output, project
from collector.derive.rules import MachineRules, compile_rules

S = 1_000_000  # µs per second
T0 = 1_800_000_000 * S

BASE = """
machines:
  - id: press07
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: 5020
        interval: 1s
        tags:
          - {{name: current, address: 0, type: float32}}
          - {{name: green, address: 2, type: bool, bit: 0}}
          - {{name: parts, address: 3, type: uint16}}
          - {{name: parts32, address: 4, type: uint32}}
          - {{name: cycle, address: 6, type: bool, bit: 1}}
    production:
{production}
"""


def rules_of(production: str) -> MachineRules:
    config = parse_config(BASE.format(production=production))
    rules = compile_rules(config.machines[0])
    assert rules is not None
    return rules


CLAMP = rules_of("""
      states:
        - {state: running, when: "state == 'running' and current > 6 or current > 8"}
        - {state: idle, when: "current > 1"}
        - {state: stopped, when: "true"}
      min_duration: 3s
      offline_after: 60s
      counters: {total: parts}
""")
QUICK = rules_of("""
      states:
        - {state: running, when: "current > 8"}
        - {state: stopped, when: "true"}
      min_duration: 3s
      offline_after: 5s
""")


def feed(md: MachineDerivation, steps: list[tuple[float, dict[str, object]]],
         bad: tuple[str, ...] = ()) -> Output:
    out = Output()
    for seconds, values in steps:
        items = [(tag, value, 2 if tag in bad else 0) for tag, value in values.items()]
        md.step(T0 + int(seconds * S), items, out)
    return out


def intervals(out: Output) -> list[tuple[float, float, str]]:
    return [((a - T0) / S, (b - T0) / S, state) for _, a, b, state in out.intervals]


def test_hysteresis_keeps_running_between_the_two_thresholds() -> None:
    md = MachineDerivation(CLAMP)
    out = feed(md, [(0, {"current": 9.0}), (10, {"current": 7.0}), (20, {"current": 5.0}),
                    (30, {"current": 7.0}), (40, {"current": 8.5})])
    # running from 0; 7 A keeps it running (above 6); 5 A is idle from 20 (lasted >= 3 s at
    # 30); 7 A from idle is below 8: still idle; 8.5 A pending at 40, not yet 3 s
    assert intervals(out) == [(0, 20, "running")]
    assert (md.state, (md.since - T0) / S) == ("idle", 20)
    assert md.pending == ("running", T0 + 40 * S, T0 + 40 * S)


def test_a_state_shorter_than_min_duration_is_absorbed_by_the_one_before() -> None:
    md = MachineDerivation(CLAMP)
    out = feed(md, [(0, {"current": 9.0}), (1, {"current": 0.0}), (2, {"current": 0.0}),
                    (3, {"current": 9.0}), (10, {"current": 0.0}), (11, {"current": 2.0}),
                    (15, {"current": 2.0})])
    # stopped for 2 s (1..3) < 3 s: absorbed; at 10 stopped, at 11 idle (stopped absorbed:
    # the pending state becomes idle from 11), idle has lasted 4 s at 15: committed from 11
    assert intervals(out) == [(0, 11, "running")]
    assert (md.state, (md.since - T0) / S) == ("idle", 11)


def test_back_from_offline_the_first_state_that_holds_starts_when_data_came_back() -> None:
    md = MachineDerivation(QUICK)
    feed(md, [(0, {"current": 9.0}), (4, {"current": 9.0}), (8, {"current": 9.0}),
              (10, {"current": 9.0})])
    feed(md, [(11, {"current": None})], bad=("current",))  # offline from 11
    # data back at 20 (a 0 A blip from one block of the scan), running from 20.1 on
    out = feed(md, [(20, {"current": 0.0}), (20.1, {"current": 9.0}), (25, {"current": 9.0})])
    assert intervals(out) == [(11, 20, "offline")]
    assert (md.state, (md.since - T0) / S) == ("running", 20)


def test_offline_after_silence_and_after_a_failed_poll() -> None:
    md = MachineDerivation(QUICK)
    out = feed(md, [(0, {"current": 9.0}), (4, {"current": 9.0}), (20, {"current": 0.0}),
                    (30, {"current": 0.0}), (31, {"current": None})], bad=())
    # silent from 4: offline at 4 + 5 = 9 until the next good reading at 20
    assert intervals(out)[:2] == [(0, 9, "running"), (9, 20, "offline")]
    md2 = MachineDerivation(QUICK)
    feed(md2, [(0, {"current": 9.0}), (1, {"current": 9.0}), (4, {"current": 9.0})])
    out2 = feed(md2, [(6, {"current": None})], bad=("current",))
    # every rule tag bad: offline at once (not debounced), from the failed poll
    assert intervals(out2) == [(0, 6, "running")]
    assert md2.state == "offline"


def test_the_open_state_is_carried_to_now_as_time_would_decide_it() -> None:
    # running since 0, last good reading at 10, offline_after 5: offline from 15
    assert project("running", T0, None, T0 + 10 * S, 3 * S, 5 * S, T0 + 60 * S) == [
        (T0, T0 + 15 * S, "running"), (T0 + 15 * S, T0 + 60 * S, "offline")]
    # a pending idle since 8 that has lasted 3 s by 11: idle from 8
    assert project("running", T0, ("idle", T0 + 8 * S), T0 + 12 * S, 3 * S, 5 * S,
                   T0 + 12 * S) == [(T0, T0 + 8 * S, "running"), (T0 + 8 * S, T0 + 12 * S, "idle")]


def test_a_counter_wraps_at_16_bits_and_counts_each_part_at_its_reading() -> None:
    md = MachineDerivation(CLAMP)
    out = feed(md, [(0, {"parts": 65533}), (1, {"parts": 65535}), (2, {"parts": 1}),
                    (3, {"parts": 1}), (4, {"parts": 4})])
    assert [((ts - T0) // S, t) for _, ts, t, _, _ in out.counts] == [(1, 2), (2, 2), (4, 3)]
    assert out.events["counter_wrap"] == 1


def test_a_counter_wraps_at_32_bits() -> None:
    tracker = CounterTracker(width=32)
    assert tracker.update(4_294_967_290.0) == (0, None)
    assert tracker.update(3.0) == (9, "wrap")  # 5 to the top, 1 to zero, 3 after


def test_a_drop_not_explained_by_the_width_is_a_reset_counted_from_zero() -> None:
    tracker = CounterTracker(width=16)
    tracker.update(40_000)
    assert tracker.update(5) == (5, "reset")  # 40000 is not near the top: a reset to 0, then 5
    assert tracker.update(7) == (2, None)


def test_a_small_drop_above_reset_below_is_noise_and_counts_nothing_twice() -> None:
    tracker = CounterTracker(width=32, reset_below=10)
    tracker.update(1000)
    assert tracker.update(999) == (0, "noise")
    assert tracker.update(1001) == (1, None)  # measured from 1000, not from 999
    assert tracker.update(3) == (3, "reset")


def test_a_pulse_counts_rising_edges_only() -> None:
    pulse = PulseTracker()
    seen = [pulse.update(v)[0] for v in (True, False, True, True, False, True)]
    assert seen == [0, 0, 1, 0, 0, 1]  # the first reading is no edge: nothing before it


def test_a_bool_counter_tag_is_a_pulse() -> None:
    rules = rules_of("""
      counters: {total: cycle}
""")
    md = MachineDerivation(rules)
    out = feed(md, [(0, {"cycle": False}), (1, {"cycle": True}), (2, {"cycle": False}),
                    (3, {"cycle": True})])
    assert sum(t for _, _, t, _, _ in out.counts) == 2


def test_a_checkpoint_restores_everything_a_restart_needs() -> None:
    md = MachineDerivation(CLAMP)
    feed(md, [(0, {"current": 9.0, "parts": 10}), (1, {"current": 0.5, "parts": 12})])
    again = MachineDerivation(CLAMP, md.checkpoint())
    assert (again.state, again.since, again.pending, again.upto, again.values) == (
        md.state, md.since, md.pending, md.upto, md.values)
    out = feed(again, [(2, {"parts": 15})])
    assert [t for _, _, t, _, _ in out.counts] == [3]  # from 12, not from 0 or 10
