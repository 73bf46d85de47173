"""The KPIs and the breakdowns behind them, computed from request outcomes.

Definitions (also in docs/ledger.md, "KPIs"):

- cache hit rate = hits / (hits + misses); bypassed requests (cache off, ``no-store``...) count in neither.
- token reduction = 1 - tokens used / baseline tokens. Baseline: the same requests with no cache (a hit
  at the tokens of the answer it served) and no batching (a batch member at its estimated cost alone).
  Routing changes the price of tokens, not their number, so it shows in the cost reduction instead.
- batch efficiency = 1 - tokens used by batch members / what they would have used one by one.
- uptime = the lowest share of the period covered by heartbeats among the components that beat
  (gateway, autoscaler); gaps count as downtime.
- P95 latency = nearest-rank 95th percentile of the total latency (arrival to last byte) of model
  requests (chat, completions, embeddings) that were not refused with a 4xx; P95 added latency the
  same over the gateway's own share (latency minus the provider's time, a batch's wait included).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.ledger.record import MODEL_ENDPOINTS
from gateway.reporting.outcome import Outcome


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    label: str
    goal: float
    higher_is_better: bool
    unit: str
    """``%`` (a 0..1 fraction) or ``ms``."""

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value > self.goal if self.higher_is_better else value < self.goal


TARGETS = (
    Target("hit_rate", "Cache hit rate", 0.40, True, "%"),
    Target("token_reduction", "Token reduction", 0.30, True, "%"),
    Target("batch_efficiency", "Batch efficiency", 0.50, True, "%"),
    Target("uptime", "Orchestrator uptime", 0.995, True, "%"),
    Target("p95_latency_ms", "P95 latency", 500.0, False, "ms"),
    Target("p95_added_ms", "P95 added by the gateway", 5.0, False, "ms"),
)


@dataclass(slots=True)
class AgentLine:
    """What one agent (or one model) used."""

    requests: int = 0
    tokens_used: int = 0
    tokens_saved: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True)
class Summary:
    start: float | None = None
    end: float | None = None
    requests: int = 0
    model_requests: int = 0
    answered: int = 0
    failed: int = 0
    """Model requests that got a 5xx (or were cut off)."""
    rejected: int = 0
    """Model requests refused with a 4xx other than the budget's."""
    refused_budget: int = 0
    unknown: int = 0
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    tokens_used: int = 0
    saved_cache: int = 0
    saved_batch: int = 0
    batches: int = 0
    batch_members: int = 0
    batch_used: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    cache_read_tokens: int = 0
    """Prompt tokens read from the provider's own prompt cache."""
    provider_cache_saved_usd: float = 0.0
    priced: int = 0
    latencies: list[float] = field(default_factory=list)
    added: list[float] = field(default_factory=list)
    uptime: dict[str, float] = field(default_factory=dict)
    agents: dict[str, AgentLine] = field(default_factory=dict)
    models: dict[str, AgentLine] = field(default_factory=dict)
    """Model used -> its requests, tokens and cost (the HTML report's per-model charts)."""
    routing: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(requested model, model used, reason) -> requests."""

    @property
    def baseline_tokens(self) -> int:
        return self.tokens_used + self.saved_cache + self.saved_batch

    def kpis(self) -> dict[str, float | None]:
        lookups = self.hits + self.misses
        batch_alone = self.batch_used + self.saved_batch
        return {
            "hit_rate": self.hits / lookups if lookups else None,
            "token_reduction": 1 - self.tokens_used / self.baseline_tokens if self.baseline_tokens else None,
            "batch_efficiency": 1 - self.batch_used / batch_alone if batch_alone else None,
            "uptime": min(self.uptime.values()) if self.uptime else None,
            "p95_latency_ms": percentile(self.latencies, 0.95),
            "p95_added_ms": percentile(self.added, 0.95),
        }

    @property
    def cost_reduction(self) -> float | None:
        if not self.baseline_cost_usd:
            return None
        return 1 - self.cost_usd / self.baseline_cost_usd


def percentile(values: list[float], share: float) -> float | None:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarize(outcomes: Iterable[Outcome], uptime: dict[str, float] | None = None) -> Summary:
    summary = Summary(uptime=dict(uptime or {}))
    batch_ids: set[str] = set()
    alone: dict[str, int] = {}
    """Cache key -> what the answer stored under it cost alone (its tokens plus what its batch saved)."""
    for o in outcomes:
        o = _credited(o, alone)
        summary.requests += 1
        summary.start = o.ts if summary.start is None else min(summary.start, o.ts)
        finished = o.ts + o.latency_ms / 1000
        summary.end = finished if summary.end is None else max(summary.end, finished)
        if o.endpoint not in MODEL_ENDPOINTS:
            continue
        summary.model_requests += 1
        if o.unknown:
            summary.unknown += 1
            continue
        _count_status(summary, o)
        if o.cache == "HIT":
            summary.hits += 1
        elif o.cache == "MISS":
            summary.misses += 1
        elif o.cache == "BYPASS":
            summary.bypassed += 1
        summary.tokens_used += o.tokens_used
        summary.saved_cache += o.saved_cache
        summary.saved_batch += o.saved_batch
        summary.cache_read_tokens += o.cache_read_tokens
        summary.provider_cache_saved_usd += o.provider_cache_saved_usd
        if o.batch_id is not None:
            batch_ids.add(o.batch_id)
            summary.batch_members += 1
            summary.batch_used += o.tokens_used
        if o.cost_usd is not None and o.baseline_cost_usd is not None:
            summary.priced += 1
            summary.cost_usd += o.cost_usd
            summary.baseline_cost_usd += o.baseline_cost_usd
        if not 400 <= o.status < 500:
            summary.latencies.append(o.latency_ms)
            if o.added_ms is not None:
                summary.added.append(o.added_ms)
        if o.agent is not None:
            _charge(summary.agents.setdefault(o.agent, AgentLine()), o)
        if o.model:
            _charge(summary.models.setdefault(o.model, AgentLine()), o)
        if o.model and o.status == 200:
            summary.routing[(o.requested_model or "", o.model, o.rule or "")] += 1
    summary.batches = len(batch_ids)
    return summary


def _credited(o: Outcome, alone: dict[str, int]) -> Outcome:
    """A hit saved what its answer cost alone when first answered (a batch member's share plus what its
    batch saved), not just the share it was billed."""
    if o.cache_key is None:
        return o
    if o.cache == "MISS" and o.tokens_used:
        alone[o.cache_key] = o.tokens_used + o.saved_batch
    elif o.cache == "HIT" and alone.get(o.cache_key, 0) > o.saved_cache:
        o.saved_cache = alone[o.cache_key]
    return o


def _charge(line: AgentLine, o: Outcome) -> None:
    line.requests += 1
    line.tokens_used += o.tokens_used
    line.tokens_saved += o.saved_cache + o.saved_batch
    line.cost_usd += o.cost_usd or 0.0


def _count_status(summary: Summary, o: Outcome) -> None:
    if o.status == 200:
        summary.answered += 1
    elif o.refused_by_budget:
        summary.refused_budget += 1
    elif 400 <= o.status < 500 and o.status != 499:
        summary.rejected += 1
    else:
        summary.failed += 1
