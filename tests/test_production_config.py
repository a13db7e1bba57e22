"""`collector check` on production rules and the plant calendar: one line per problem, naming
the rule and the column, all problems at once."""

from __future__ import annotations

import pytest

from collector.config import ConfigError, parse_config

MACHINE = """
plant:
{plant}
machines:
  - id: press07
    sources:
      - id: io
        protocol: modbus
        host: 127.0.0.1
        port: 5020
        interval: 1s
        tags:
          - {{name: motor_current, address: 0, type: float32}}
          - {{name: mode, address: 2, type: string, length: 2}}
          - {{name: parts, address: 4, type: uint16, heartbeat: 30s, deadband: 1}}
    production:
{production}
"""


def problems(production: str, plant: str = "  timezone: UTC") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(MACHINE.format(production=production, plant=plant))
    return [str(p) for p in info.value.problems]


def test_a_good_production_section_passes() -> None:
    config = parse_config(MACHINE.format(plant="  timezone: Europe/Berlin", production="""
      states:
        - {state: running, when: "motor_current > 8"}
        - {state: idle, when: "mode == 'IDLE'"}
        - {state: stopped, when: "true"}
      counters: {total: {tag: parts, width: 16, reset_below: 10}}
      min_duration: 2s
"""))
    prod = config.machines[0].production
    assert prod is not None and prod.counters is not None and prod.counters.total is not None
    assert prod.counters.total.reset_below == 10


def test_unknown_tag_names_the_rule_and_column() -> None:
    found = problems("""
      states:
        - {state: running, when: "motor_current > 8"}
        - {state: idle, when: "motr_current > 1"}
        - {state: stopped, when: "true"}
""")
    assert len(found) == 1
    assert found[0].startswith("machines[0].production.states[1].when: unknown tag "
                               "'motr_current'")
    assert "did you mean 'motor_current'?" in found[0] and "at column 1" in found[0]


def test_text_compared_with_a_number_and_rules_that_never_apply() -> None:
    found = problems("""
      states:
        - {state: running, when: "mode > 3"}
        - {state: idle, when: "1 > 2"}
        - {state: stopped, when: "true"}
        - {state: idle, when: "motor_current > 1"}
""")
    assert found[0].startswith("machines[0].production.states[0].when: ")
    assert "text" in found[0] and "column" in found[0]
    assert found[1].startswith("machines[0].production.states[2].when: '1 > 2' can never hold") \
        or found[1].startswith("machines[0].production.states[1].when: '1 > 2' can never hold")
    assert any(p.startswith("machines[0].production.states[3].when: never reached") for p in found)


def test_a_rule_list_without_a_catch_all() -> None:
    found = problems("""
      states:
        - {state: running, when: "motor_current > 8"}
""")
    assert found == [
        'machines[0].production.states: no state applies when none of these conditions holds '
        '(a tag without a good reading makes its rule fail): end the list with a rule that '
        'always holds, e.g. {state: stopped, when: "true"} (line 18)']


def test_counters_energy_and_offline_after() -> None:
    found = problems("""
      states:
        - {state: stopped, when: "true"}
      counters: {reject: parts}
      energy: kwh
      offline_after: 10s
""")
    assert "machines[0].production.counters: a reject counter alone cannot count parts" in found[0]
    assert any(p.startswith("machines[0].production.energy: unknown tag 'kwh'") for p in found)
    found = problems("""
      counters: {total: mode, good: parts, reject: parts}
""")
    assert any("give any two of total, good and reject" in p for p in found)
    assert any(p.startswith("machines[0].production.counters.total: tag 'mode' is text")
               for p in found)


def test_plant_calendar_problems() -> None:
    found = problems("      states: []", plant="""
  timezone: Europe/Berln
  shifts:
    - {name: early, start: "06:00", end: "14:00"}
    - {name: late, start: "13:00", end: "22:00"}
  days_off: [sundy]
  downtime_reasons:
    - {code: tool_change}
    - {code: tool_change}
""")
    text = "\n".join(found)
    assert "plant.timezone" in text and "Europe/Berlin" in text
    assert "plant.shifts[1]" in text and "overlaps" in text
    assert "plant.days_off[0]" in text
    assert "plant.downtime_reasons[1].code: duplicate reason code 'tool_change'" in text


def test_unquoted_shift_times_are_read_as_times() -> None:
    config = parse_config(MACHINE.format(production="      states: []", plant="""
  shifts:
    - {name: early, start: 06:00, end: 14:00}
"""))
    assert (config.plant.shifts[0].start, config.plant.shifts[0].end) == ("06:00", "14:00")


@pytest.mark.parametrize("path", ["config/demo.yaml", "config/collector.yaml"])
def test_shipped_configs_with_production_rules_pass(path: str) -> None:
    from collector.config import load_config

    load_config(path)
