"""One ledger record per request: who asked, what the gateway decided, what it cost, how long it took.

The record's shape is :class:`gateway.ledger.schema.LedgerRecord`; this module fills it in from a
finished request. Besides what the report shows, it keeps the facts the what-if replay needs to decide
again under another policy: the prompt estimate and requested max tokens (routing, budgets), a hash of
the answer-changing fields without model and scope (``content_key``: cache), and the batch facts
(``task_tokens``, ``batch_group``). The prompt text itself is recorded only when
``ledger.include_prompts`` is on.

Records are built in the ledger's background task, never on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from gateway.batcher.eligibility import BatchFacts, shared_context
from gateway.budget.sprints import select
from gateway.cache.keys import cache_key, deterministic
from gateway.context import Outcome
from gateway.ledger.schema import LedgerRecord
from gateway.policy import Policy
from gateway.pricing import PriceBook
from gateway.protocols import BY_NAME, PROTOCOLS, Usage
from gateway.redact import everywhere
from gateway.router.rules import RuleSet
from gateway.tokens import max_output

MODEL_ENDPOINTS = tuple(BY_NAME)
_HASH_CHARS = 32
"""Replay keys are truncated SHA-256 hex (128 bits): plenty to tell requests apart, half the bytes."""


@dataclass(frozen=True, slots=True)
class Finished:
    """What the HTTP layer knows of every request, whether or not it got as far as a context."""

    request_id: str
    path: str
    status: int
    arrival: float
    """Unix seconds when the request arrived."""
    elapsed: float
    """Seconds from arrival to the last byte."""
    error: str | None = None
    """The error code the gateway answered with (``budget_exceeded``, ``invalid_api_key``, ...)."""


class Charge(NamedTuple):
    """What an answered request's tokens cost, and would have cost with no cache, batching or routing."""

    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_used: int | None
    tokens_saved: int | None
    saved_reason: str | None
    cost_usd: float | None
    baseline_model: str | None
    baseline_cost_usd: float | None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    provider_cache_saved_usd: float | None = None


NO_CHARGE = Charge(None, None, None, None, None, None, None, None)
"""A request with no answer: none of those fields apply."""


def routing_baseline(policy: Policy) -> str | None:
    """What alias requests are priced against: ``routing.baseline_model``, else the largest candidate."""
    if policy.routing.baseline_model:
        return policy.routing.baseline_model
    return RuleSet(policy.routing, policy.models).largest() if policy.routing.enabled else None


def endpoint_of(path: str) -> str:
    if path in PROTOCOLS:
        return PROTOCOLS[path].name
    return "models" if path.startswith("/v1/models") else "passthrough"


class RecordBuilder:
    """Turns a finished request into its record, with the policy's prices and sprints at hand."""

    def __init__(self, policy: Policy, prices: PriceBook) -> None:
        self.prices = prices
        self.include_prompts = policy.ledger.include_prompts
        self.sprints = policy.budgets.sprints
        self.aliases = frozenset(policy.routing.aliases)
        self.baseline = routing_baseline(policy)

    def build(self, done: Finished, outcome: Outcome | None) -> LedgerRecord:
        """One constructor call per record (``dataclasses.replace`` would cost three times as much)."""
        latency_ms = round(done.elapsed * 1000, 2)
        if outcome is None:
            return LedgerRecord(
                done.request_id,
                endpoint_of(done.path),
                done.status,
                done.arrival,
                latency_ms,
                error=done.error,
            )
        request, batch, cache = outcome.request, outcome.batch, outcome.cache
        body = request.body
        period = select(self.sprints, request.agent, request.sprint, done.arrival) if self.sprints else None
        facts = BatchFacts.of(request)
        charge = self._charge(outcome)
        budget_left = outcome.standing.budget_left
        fields = request.protocol.cache_fields(body, request.upstream_headers)
        return LedgerRecord(
            request_id=done.request_id,
            endpoint=request.endpoint,
            status=outcome.status if outcome.status != 200 else done.status,
            arrival=done.arrival,
            latency_ms=latency_ms,
            error=done.error,
            agent=request.agent,
            team=request.team,
            task_type=request.task_type,
            priority=request.priority,
            task_id=request.task_id,
            sprint=period.sprint.id if period else request.sprint,
            requested_model=request.requested_model,
            model=outcome.model,
            rule=outcome.route_reason,
            prompt_estimate=request.prompt_estimate,
            max_tokens=max_output(body, 0) or None,
            lines=request.lines_estimate,
            budget_left=round(budget_left, 4) if budget_left is not None else None,
            stream=request.stream or None,
            upstream_ms=round(outcome.upstream_seconds * 1000, 2),
            cache=cache.status,
            cache_key=cache.key,
            content_key=cache_key(request.endpoint, "", fields, "")[:_HASH_CHARS],
            cache_control=(request.cache_control or "")[:64] or None,
            deterministic=deterministic(body) or None,
            batchable=request.batchable,
            task_tokens=facts.task_tokens(),
            batch_group=(
                cache_key("batch", "", shared_context(body), "")[:_HASH_CHARS] if facts.fits else None
            ),
            batch_id=batch.batch_id if batch else None,
            batch_size=(batch.size or None) if batch else None,
            batch_wait_ms=round(batch.wait_s * 1000, 2) if batch and batch.wait_s else None,
            prompt_tokens=charge.prompt_tokens,
            completion_tokens=charge.completion_tokens,
            tokens_used=charge.tokens_used,
            tokens_saved=charge.tokens_saved,
            saved_reason=charge.saved_reason,
            cost_usd=charge.cost_usd,
            baseline_model=charge.baseline_model,
            baseline_cost_usd=charge.baseline_cost_usd,
            cache_read_tokens=charge.cache_read_tokens,
            cache_write_tokens=charge.cache_write_tokens,
            provider_cache_saved_usd=charge.provider_cache_saved_usd,
            prompt=request.protocol.prompt(body) if self.include_prompts else None,
        )

    def _charge(self, outcome: Outcome) -> Charge:
        usage, requested = outcome.usage, outcome.request.requested_model
        if usage is None:
            return NO_CHARGE
        hit = outcome.cache.status == "HIT"
        baseline = self.baseline if requested in self.aliases else requested
        # Alone and uncached, the request would have cost its own usage, plus what its batch saved
        # (all prompt tokens: a batch member's completion is the same as it would be alone).
        extra = outcome.tokens_saved if outcome.saved_reason == "batch" else 0
        cost = self.prices.cost(outcome.model, *_priced(usage))
        provider_saved = provider_cache_saving(self.prices, outcome.model, usage)
        if hit and cost is not None:
            cost = 0.0  # priced (so the saving is known) but free
        before = None
        if baseline:
            before = self.prices.cost(baseline, usage.prompt_tokens + extra, usage.completion_tokens)
        return Charge(
            usage.prompt_tokens,
            usage.completion_tokens,
            0 if hit else usage.total,
            outcome.tokens_saved or None,
            outcome.saved_reason,
            round(cost, 8) if cost is not None else None,
            baseline,
            round(before, 8) if before is not None else None,
            # A hit's stored usage was read and written by its first request, not by this one.
            None if hit else usage.cached_input_tokens or None,
            None if hit else usage.cache_write_tokens or None,
            round(provider_saved, 8) if provider_saved is not None and not hit else None,
        )


def _priced(usage: Usage) -> tuple[int, int, int, int]:
    return usage.prompt_tokens, usage.completion_tokens, usage.cached_input_tokens, usage.cache_write_tokens


def provider_cache_saving(prices: PriceBook, model: str, usage: Usage) -> float | None:
    """USD the provider's prompt cache saved on ``usage``: None when it read and wrote nothing or the
    model has no price."""
    if not usage.cached_input_tokens and not usage.cache_write_tokens:
        return None
    plain = prices.cost(model, usage.prompt_tokens, usage.completion_tokens)
    cached = prices.cost(model, *_priced(usage))
    return plain - cached if plain is not None and cached is not None else None


def written(record: LedgerRecord) -> dict[str, Any]:
    """The JSON object a record is written as: the one place every field a client or a provider filled
    in passes on its way to the ledger, where a provider secret is redacted."""
    row = record.to_record()
    clean = everywhere()
    if clean and clean.suspicious(orjson.dumps(row, default=str)):
        row = clean.value(row)  # no provider secret in any field, whatever a client sent
    return row
