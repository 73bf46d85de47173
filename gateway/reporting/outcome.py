"""What happened to one request, in the terms the KPIs use: read from a ledger record, or decided again
by the what-if replay. Both feed the same :func:`gateway.reporting.kpis.summarize`, so a recorded and a
replayed figure always mean the same thing."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger.schema import LedgerRecord

BUDGET_REFUSALS = frozenset({"budget_exceeded", "budget_paused", "agent_not_in_budget"})


@dataclass(slots=True)
class Outcome:
    ts: float
    endpoint: str
    status: int
    latency_ms: float
    agent: str | None = None
    team: str | None = None
    sprint: str | None = None
    requested_model: str | None = None
    model: str | None = None
    rule: str | None = None
    error: str | None = None
    cache: str | None = None
    """HIT, MISS or BYPASS (None: the request never got that far)."""
    batch_id: str | None = None
    cache_key: str | None = None
    tokens_used: int = 0
    """Provider tokens charged to this request (0 for a cache hit)."""
    saved_cache: int = 0
    saved_batch: int = 0
    cost_usd: float | None = None
    baseline_cost_usd: float | None = None
    added_ms: float | None = None
    """The gateway's own share of the latency: all of it but the provider's time (a batch's wait for
    partners counts as the gateway's)."""
    cache_read_tokens: int = 0
    """Prompt tokens the provider read from its own prompt cache."""
    provider_cache_saved_usd: float = 0.0
    unknown: bool = False
    """Replay only: refused when recorded but admitted by the other policy, so its answer is unknown."""

    @property
    def refused_by_budget(self) -> bool:
        return self.error in BUDGET_REFUSALS

    @property
    def baseline_tokens(self) -> int:
        """Tokens with no cache and no batching: what was used plus what was saved."""
        return self.tokens_used + self.saved_cache + self.saved_batch


def recorded(record: LedgerRecord) -> Outcome:
    """The outcome a ledger record reports, as it happened."""
    saved = record.tokens_saved or 0
    reason = record.saved_reason
    return Outcome(
        ts=record.arrival,
        endpoint=record.endpoint,
        status=record.status,
        latency_ms=record.latency_ms,
        agent=record.agent,
        team=record.team,
        sprint=record.sprint,
        requested_model=record.requested_model,
        model=record.model,
        rule=record.rule,
        error=record.error,
        cache=record.cache,
        batch_id=record.batch_id,
        cache_key=record.cache_key,
        tokens_used=record.tokens_used or 0,
        saved_cache=saved if reason == "cache" else 0,
        saved_batch=saved if reason == "batch" else 0,
        cost_usd=record.cost_usd,
        baseline_cost_usd=record.baseline_cost_usd,
        added_ms=added_ms(record),
        cache_read_tokens=record.cache_read_tokens or 0,
        provider_cache_saved_usd=record.provider_cache_saved_usd or 0.0,
    )


def added_ms(record: LedgerRecord) -> float | None:
    """Latency minus the provider's time (``upstream_ms`` includes the batch window, which is ours)."""
    if record.upstream_ms is None:
        return record.latency_ms if record.cache == "HIT" else None
    return max(0.0, record.latency_ms - record.upstream_ms + (record.batch_wait_ms or 0.0))
