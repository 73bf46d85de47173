"""The pure scaling rules, one table row per case."""

from __future__ import annotations

import pytest

from gateway.autoscaler.decision import Decision, Rules, decide, low_since

RULES = Rules(
    queue_high=100, queue_low=20, step=2, min_replicas=2, max_replicas=9, cooldown_s=60, stabilization_s=120
)
NOW = 1000.0
LONG_LOW = NOW - 500  # low for longer than the stabilization window
RECENT = NOW - 30  # inside the cooldown


@pytest.mark.parametrize(
    ("backlog", "current", "last_scale_at", "low_from", "desired", "reason"),
    [
        (150, 4, None, None, 6, "above_high"),
        (101, 4, NOW - 60, None, 6, "above_high"),  # cooldown over exactly at its end
        (100, 4, None, None, 4, "in_band"),  # "above 100" is strict
        (150, 8, None, None, 9, "above_high"),  # the step stops at max
        (150, 9, None, None, 9, "at_max"),
        (150, 4, RECENT, None, 4, "cooldown"),
        (10, 6, None, LONG_LOW, 4, "below_low"),
        (10, 3, None, LONG_LOW, 2, "below_low"),  # the step stops at min
        (10, 2, None, LONG_LOW, 2, "at_min"),
        (20, 6, None, None, 6, "in_band"),  # "below 20" is strict
        (10, 6, None, NOW - 119, 6, "stabilizing"),
        (10, 6, None, None, 6, "stabilizing"),
        (10, 6, RECENT, LONG_LOW, 6, "cooldown"),
        (50, 6, None, None, 6, "in_band"),
        (500, 1, RECENT, None, 2, "below_min"),  # bounds win over the cooldown
        (0, 12, RECENT, None, 9, "above_max"),
    ],
)
def test_decide(
    backlog: int, current: int, last_scale_at: float | None, low_from: float | None, desired: int, reason: str
) -> None:
    assert decide(RULES, backlog, current, NOW, last_scale_at, low_from) == Decision(current, desired, reason)


@pytest.mark.parametrize(("current", "desired", "direction"), [(2, 4, "up"), (4, 2, "down"), (3, 3, "none")])
def test_direction(current: int, desired: int, direction: str) -> None:
    assert Decision(current, desired, "x").direction == direction


def test_low_since_starts_at_the_first_low_reading_and_ends_at_the_first_other() -> None:
    assert low_since(None, 10, RULES, 5.0) == 5.0
    assert low_since(5.0, 10, RULES, 9.0) == 5.0
    assert low_since(5.0, 20, RULES, 9.0) is None
    assert low_since(None, 50, RULES, 9.0) is None
