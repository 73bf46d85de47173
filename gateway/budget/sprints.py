"""Which sprint and which period a request is charged to, and what the agent may spend in it.

Each period of a sprint has its own ledger bucket (the period index is part of the key), so a recurring
sprint rolls over to a whole budget without anyone resetting counters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.policy.budget import SprintConfig


@dataclass(frozen=True, slots=True)
class Period:
    sprint: SprintConfig
    index: int
    start: float | None
    """Unix seconds; None: open-ended."""
    end: float | None

    @property
    def bucket(self) -> str:
        """The ledger bucket of this period: keys of one sprint share the ``{sprint:ID}`` hash tag."""
        return f"{{sprint:{self.sprint.id}}}:{self.index}"

    def resets_at(self) -> str | None:
        if self.end is None:
            return None
        return datetime.fromtimestamp(self.end, UTC).isoformat().replace("+00:00", "Z")

    def seconds_left(self, now: float) -> int | None:
        return None if self.end is None else max(1, math.ceil(self.end - now))

    def expire_at(self, retain_s: float) -> float | None:
        """When the period's keys may go (its end plus ``retain_s`` for reports); None: never."""
        return None if self.end is None else self.end + retain_s


def period_of(sprint: SprintConfig, now: float) -> Period | None:
    """The sprint's period containing ``now``, or None when the sprint is not running."""
    start = sprint.start.timestamp() if sprint.start else None
    if start is not None and now < start:
        return None
    if sprint.every is not None:
        assert start is not None
        length = sprint.every.total_seconds()
        index = int((now - start) // length)
        return Period(sprint, index, start + index * length, start + (index + 1) * length)
    end = sprint.end.timestamp() if sprint.end else None
    if end is not None and now >= end:
        return None
    return Period(sprint, 0, start, end)


def select(sprints: Sequence[SprintConfig], agent: str, asked: str | None, now: float) -> Period | None:
    """The running sprint for a request: the one ``X-Sprint`` names, else the first that lists the
    agent, else the first running one (which decides what to do with agents it does not know)."""
    running = [p for p in (period_of(s, now) for s in sprints) if p is not None]
    if not running:
        return None
    if asked is not None:
        for period in running:
            if period.sprint.id == asked:
                return period
    for period in running:
        if period.sprint.share(agent) is not None and isinstance(period.sprint.agents, list):
            return period
    return running[0]
