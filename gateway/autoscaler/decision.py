"""The scaling policy as pure functions: backlog, replicas and timestamps in, desired replicas and why out.

Nothing here reads a clock or does I/O, so every rule is a row in a table test. Bounds come first
(a target is brought back inside ``[min, max]`` whatever else holds), then the seed's thresholds:
above ``queue_high`` add ``step``, below ``queue_low`` remove ``step``; scale-down additionally waits
until the backlog has stayed low for the stabilization window, and any action waits out the cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down", "none"]


@dataclass(frozen=True)
class Rules:
    """One target's thresholds and timings (from its policy section and the shared timings)."""

    queue_high: int
    queue_low: int
    step: int
    min_replicas: int
    max_replicas: int
    cooldown_s: float
    stabilization_s: float


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    reason: str
    """Short machine-readable cause: ``above_high``, ``below_low``, ``cooldown``, ``stabilizing``, ..."""

    @property
    def direction(self) -> Direction:
        if self.desired > self.current:
            return "up"
        return "down" if self.desired < self.current else "none"


def low_since(previous: float | None, backlog: int, rules: Rules, now: float) -> float | None:
    """When the current run of low readings began; ``None`` once a reading is not low.

    Callers pass ``previous=None`` after a missed or failed reading: a gap is not proof it stayed low.
    """
    if backlog >= rules.queue_low:
        return None
    return now if previous is None else previous


def decide(
    rules: Rules, backlog: int, current: int, now: float, last_scale_at: float | None, low_from: float | None
) -> Decision:
    """The replica count ``current`` should become, and the reason (``desired == current`` holds)."""
    if current < rules.min_replicas:
        return Decision(current, rules.min_replicas, "below_min")
    if current > rules.max_replicas:
        return Decision(current, rules.max_replicas, "above_max")
    cooling = last_scale_at is not None and now - last_scale_at < rules.cooldown_s
    if backlog > rules.queue_high:
        if current >= rules.max_replicas:
            return Decision(current, current, "at_max")
        if cooling:
            return Decision(current, current, "cooldown")
        return Decision(current, min(current + rules.step, rules.max_replicas), "above_high")
    if backlog < rules.queue_low:
        if current <= rules.min_replicas:
            return Decision(current, current, "at_min")
        if low_from is None or now - low_from < rules.stabilization_s:
            return Decision(current, current, "stabilizing")
        if cooling:
            return Decision(current, current, "cooldown")
        return Decision(current, max(current - rules.step, rules.min_replicas), "below_low")
    return Decision(current, current, "in_band")
