"""The report's figures over time, for the HTML report's charts: the same KPIs per time bucket (each bucket
goes through :func:`gateway.reporting.kpis.summarize`, so a bucket's hit rate means what the report's
does), the budget used since each sprint's start, and the most repeated prompts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.budget.sprints import period_of
from gateway.ledger.record import MODEL_ENDPOINTS
from gateway.ledger.schema import LedgerRecord
from gateway.policy.budget import SprintConfig
from gateway.reporting.kpis import Summary, summarize
from gateway.reporting.outcome import recorded

BUCKETS = ((300, "5 minutes"), (3600, "hour"), (86400, "day"))
"""Bucket lengths, shortest first: the shortest that gives at most ``MAX_BUCKETS`` buckets is used."""
MAX_BUCKETS = 48
MAX_POINTS = 400
"""A burn-down keeps at most this many points (the last of each equal time slice)."""
TOP_PROMPTS = 10


@dataclass(slots=True)
class Timeline:
    seconds: int
    unit: str
    """``day``, ``hour`` or ``5 minutes``: what one bucket is."""
    starts: list[float] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)


@dataclass(slots=True)
class BurnDown:
    sprint: SprintConfig
    start: float | None
    end: float | None
    """The period charted (None: open-ended); its records' tokens are summed from ``start``."""
    points: list[tuple[float, int]] = field(default_factory=list)
    """(time, tokens used since the period's start), oldest first."""

    @property
    def used(self) -> int:
        return self.points[-1][1] if self.points else 0


@dataclass(frozen=True, slots=True)
class Prompt:
    key: str
    requests: int
    hits: int
    tokens_used: int
    tokens_saved: int
    agents: int


def bucket_size(span: float) -> tuple[int, str]:
    for seconds, unit in BUCKETS:
        if span / seconds <= MAX_BUCKETS:
            return seconds, unit
    return BUCKETS[-1]


def timeline(records: Sequence[LedgerRecord]) -> Timeline:
    """Per-bucket summaries from the first record's bucket to the last one's (empty buckets included)."""
    if not records:
        return Timeline(*BUCKETS[-1])
    first, last = records[0].arrival, records[-1].arrival
    seconds, unit = bucket_size(last - first)
    groups: dict[int, list[LedgerRecord]] = defaultdict(list)
    for record in records:
        groups[int(record.arrival // seconds)].append(record)
    line = Timeline(seconds, unit)
    for index in range(int(first // seconds), int(last // seconds) + 1):
        line.starts.append(float(index * seconds))
        line.summaries.append(summarize(recorded(r) for r in groups.get(index, ())))
    return line


def burn_downs(records: Sequence[LedgerRecord], sprints: Sequence[SprintConfig]) -> list[BurnDown]:
    """For each sprint with records, the tokens charged to it since its period's start, in the period of
    its latest record (a recurring sprint's current period)."""
    charts = []
    for sprint in sprints:
        mine = [r for r in records if r.sprint == sprint.id and r.endpoint in MODEL_ENDPOINTS]
        if not mine:
            continue
        period = period_of(sprint, mine[-1].arrival)
        start, end = (period.start, period.end) if period else (None, None)
        chart = BurnDown(sprint, start, end)
        used = 0
        if start is not None:
            chart.points.append((start, 0))
        for record in mine:
            if (start is None or record.arrival >= start) and (end is None or record.arrival < end):
                used += record.tokens_used or 0
                chart.points.append((record.arrival, used))
        chart.points = thin(chart.points)
        charts.append(chart)
    return charts


def thin(points: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """At most ``MAX_POINTS`` points: the last one of each equal slice of time, first and last kept."""
    if len(points) <= MAX_POINTS:
        return points
    first, last = points[0][0], points[-1][0]
    width = (last - first) / (MAX_POINTS - 2) or 1.0
    kept: dict[int, tuple[float, int]] = {}
    for point in points[1:-1]:
        kept[int((point[0] - first) // width)] = point
    return [points[0], *kept.values(), points[-1]]


def top_prompts(records: Sequence[LedgerRecord], limit: int = TOP_PROMPTS) -> list[Prompt]:
    """The prompts asked more than once, most asked first, by their hash (the answer-changing fields
    without model and scope; the cache key when a record has no such hash)."""
    groups: dict[str, list[LedgerRecord]] = defaultdict(list)
    for record in records:
        key = record.content_key or record.cache_key
        if key and record.endpoint in MODEL_ENDPOINTS:
            groups[key].append(record)
    counts = Counter({key: len(rows) for key, rows in groups.items() if len(rows) > 1})
    return [
        Prompt(
            key,
            n,
            sum(1 for r in groups[key] if r.cache == "HIT"),
            sum(r.tokens_used or 0 for r in groups[key]),
            sum(r.tokens_saved or 0 for r in groups[key]),
            len({r.agent for r in groups[key] if r.agent is not None}),
        )
        for key, n in counts.most_common(limit)
    ]
