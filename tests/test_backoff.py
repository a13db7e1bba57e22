"""The one reconnect wait every loop uses: doubling to a cap, starting over after a success."""

from __future__ import annotations

import pytest

from collector.config import SourceConfig
from collector.sources.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_doubles_up_to_the_cap_and_starts_over_after_a_success() -> None:
    backoff = Backoff(1.0, 30.0)
    assert [backoff.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.current == 30.0
    backoff.reset()
    assert backoff.current == 0.0
    assert [backoff.next() for _ in range(3)] == [1.0, 2.0, 4.0]


def test_retry_in_counts_down_the_last_wait() -> None:
    clock = Clock()
    backoff = Backoff(0.5, 4.0, clock=clock)
    assert backoff.retry_in == 0.0  # nothing failed yet: try now
    assert backoff.next() == 0.5
    assert backoff.retry_in == 0.5
    clock.now += 0.2
    assert backoff.retry_in == pytest.approx(0.3)
    clock.now += 1.0
    assert backoff.retry_in == 0.0
    assert backoff.next() == 1.0 and backoff.retry_in == 1.0
    backoff.reset()
    assert backoff.retry_in == 0.0


def test_jitter_shortens_a_wait_by_at_most_its_fraction() -> None:
    fractions = iter([1.0, 0.0, 0.5])
    backoff = Backoff(2.0, 8.0, jitter=0.25, random_fraction=lambda: next(fractions))
    assert backoff.next() == 1.5  # 2 s less 25 %
    assert backoff.next() == 4.0  # no jitter drawn: the full wait
    assert backoff.next() == 7.0  # 8 s less 12.5 %; the doubling follows the unjittered wait
    assert backoff.current == 7.0


@pytest.mark.parametrize(("delay", "cap", "jitter"), [(-1.0, 5.0, 0.0), (5.0, 1.0, 0.0),
                                                      (1.0, 5.0, 1.5)])
def test_impossible_settings_are_refused(delay: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(delay, cap, jitter=jitter)


def test_a_source_gives_its_backoff_from_its_config() -> None:
    source = SourceConfig(id="s", protocol="x", reconnect_delay="200ms", reconnect_delay_max="1s")
    backoff = source.reconnect_backoff()
    assert [backoff.next() for _ in range(4)] == [0.2, 0.4, 0.8, 1.0]
    default = SourceConfig(id="s", protocol="x").reconnect_backoff()
    assert (default.delay, default.delay_max) == (1.0, 30.0)
    # only a cap below the default first wait: the first wait is the cap
    short = SourceConfig(id="s", protocol="x", reconnect_delay_max="500ms").reconnect_backoff()
    assert [short.next() for _ in range(2)] == [0.5, 0.5]
