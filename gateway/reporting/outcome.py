"""What happened to one request, in the terms the KPIs use: read from a ledger record, or decided again
by the what-if replay. Both feed the same :func:`gateway.reporting.kpis.summarize`, so a recorded and a
replayed figure always mean the same thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.context import Usage

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
    tokens_used: int = 0
    """Provider tokens charged to this request (0 for a cache hit)."""
    saved_cache: int = 0
    saved_batch: int = 0
    cost_usd: float | None = None
    baseline_cost_usd: float | None = None
    unknown: bool = False
    """Replay only: refused when recorded but admitted by the other policy, so its answer is unknown."""

    @property
    def refused_by_budget(self) -> bool:
        return self.error in BUDGET_REFUSALS

    @property
    def baseline_tokens(self) -> int:
        """Tokens with no cache and no batching: what was used plus what was saved."""
        return self.tokens_used + self.saved_cache + self.saved_batch


def ts_of(record: dict[str, Any]) -> float:
    return float(record["ts"])


def answer_usage(record: dict[str, Any]) -> Usage | None:
    """The usage of the answer the caller got (for a hit: the stored answer's)."""
    if "prompt_tokens" not in record:
        return None
    return Usage(int(record["prompt_tokens"]), int(record.get("completion_tokens", 0)))


def alone_usage(record: dict[str, Any]) -> Usage | None:
    """What the request would have cost sent on its own: its answer's usage plus what a batch saved
    (prompt tokens only: a batch member's completion is what it would be alone)."""
    usage = answer_usage(record)
    if usage is None:
        return None
    if record.get("saved_reason") == "batch":
        usage.prompt_tokens += int(record.get("tokens_saved", 0))
    return usage


def recorded(record: dict[str, Any]) -> Outcome:
    """The outcome a ledger record reports, as it happened."""
    saved = int(record.get("tokens_saved", 0))
    reason = record.get("saved_reason")
    return Outcome(
        ts=ts_of(record),
        endpoint=str(record.get("endpoint", "other")),
        status=int(record.get("status", 0)),
        latency_ms=float(record.get("latency_ms", 0.0)),
        agent=record.get("agent"),
        team=record.get("team"),
        sprint=record.get("sprint"),
        requested_model=record.get("requested_model"),
        model=record.get("model"),
        rule=record.get("rule"),
        error=record.get("error"),
        cache=record.get("cache"),
        batch_id=record.get("batch_id"),
        tokens_used=int(record.get("tokens_used", 0)),
        saved_cache=saved if reason == "cache" else 0,
        saved_batch=saved if reason == "batch" else 0,
        cost_usd=record.get("cost_usd"),
        baseline_cost_usd=record.get("baseline_cost_usd"),
    )
