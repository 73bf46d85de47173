"""The routing stage: turns the requested model (an alias, or any model when rewriting is on) into a target.

Requests for a plain model cost one set lookup here. Routed requests are decided by :class:`RuleSet`,
counted, priced against the model they would otherwise have used, and logged (structlog and the
``model_routing_log`` stream, in the background).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gateway import metrics
from gateway.context import RequestContext
from gateway.errors import InvalidRequest, NotFound
from gateway.policy.routing import RoutingConfig
from gateway.router.log import RoutingLog, Value, log
from gateway.router.rules import Decision, RuleSet
from gateway.tokens import max_output
from gateway.upstream import ModelCatalog, Target
from gateway.validation import CHAT, COMPLETIONS

PriceFn = Callable[[str, int, int], float | None]
"""(model, prompt tokens, completion tokens) → USD, or None when the model's price is unknown."""
ROUTED_ENDPOINTS = frozenset({CHAT, COMPLETIONS})
OTHER = "_other"


class Router:
    """Chooses the model for each request from the policy's ``routing`` rules."""

    def __init__(
        self, config: RoutingConfig, catalog: ModelCatalog, log: RoutingLog, price_of: PriceFn | None = None
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.log = log
        self.aliases = tuple(config.aliases)
        self._aliases = frozenset(config.aliases)
        self._rewrite = config.rewrite_concrete_models
        models = {name: model for name in catalog.names() if (model := catalog.get(name)) is not None}
        self._rules = RuleSet(config, models)
        self._baseline = config.baseline_model or self._rules.largest()
        self._price_of = price_of
        self._labels = self._aliases | set(catalog.names())

    def applies(self, ctx: RequestContext) -> bool:
        """Whether the router decides this request (an alias, or any model when rewriting is on)."""
        return ctx.requested_model in self._aliases or (self._rewrite and ctx.endpoint in ROUTED_ENDPOINTS)

    def route(self, ctx: RequestContext) -> Target:
        """The target for ``ctx``; sets ``ctx.model`` and ``ctx.route_reason`` when a rule decided."""
        name = ctx.requested_model
        if not self.applies(ctx):
            return self.catalog.resolve(name)
        alias = name in self._aliases
        if alias and ctx.endpoint not in ROUTED_ENDPOINTS:
            raise NotFound(  # a 404 like OpenAI's for a model it does not have
                f"'{name}' is a routing alias for chat and completions; name an embeddings model instead.",
                param="model",
                code="model_not_found",
            )
        requested = None if alias else self.catalog.resolve(name)  # unknown names stay a 404
        output = max_output(ctx.body, self.config.assumed_output_tokens)
        try:
            decision = self._rules.decide(ctx, output, concrete=not alias)
        except InvalidRequest as exc:
            log.warning("route_rejected", request_id=ctx.request_id, requested_model=name, error=exc.message)
            raise
        ctx.model, ctx.route_reason = decision.model, decision.reason
        self._record(ctx, decision, output)
        if requested is not None and decision.model == name:
            return requested
        return self.catalog.resolve(decision.model)

    def answered(self, ctx: RequestContext, target: Target) -> None:
        """Record in the decision log that a fallback model answered instead of the routed one."""
        if target.name == ctx.model or not self.applies(ctx):
            return
        log.info("route_fallback", request_id=ctx.request_id, from_model=ctx.model, to_model=target.name)
        self.log.record(
            {
                **self._common(ctx),
                "kind": "fallback",
                "from_model": ctx.model,
                "chosen_model": target.name,
                "rule": "fallback",
            }
        )

    def _record(self, ctx: RequestContext, decision: Decision, output: int) -> None:
        requested = ctx.requested_model if ctx.requested_model in self._labels else OTHER
        chosen = decision.model if decision.model in self._labels else OTHER
        metrics.ROUTING_DECISIONS.labels(requested, chosen, decision.rule).inc()
        saved = self._saved(ctx, decision.model, output)
        if saved:
            metrics.ROUTING_COST_SAVED.inc(saved)
        entry: dict[str, Value] = {
            **self._common(ctx),
            "kind": "decision",
            "task_type": ctx.task_type,
            "priority": ctx.priority,
            "chosen_model": decision.model,
            "rule": decision.rule,
            "reason": decision.reason,
            "prompt_tokens_estimate": ctx.prompt_estimate,
            "max_output_tokens": output,
            "budget_left": ctx.budget_left,
            "saved_usd": round(saved, 8) if saved is not None else None,
        }
        log.info("route", **{k: v for k, v in entry.items() if k != "time"})
        self.log.record(entry)

    def _saved(self, ctx: RequestContext, chosen: str, output: int) -> float | None:
        """USD the choice saves against the requested model (or the largest, for an alias); None: unknown."""
        baseline = self._baseline if ctx.requested_model in self._aliases else ctx.requested_model
        if self._price_of is None or baseline is None:
            return None
        before = self._price_of(baseline, ctx.prompt_estimate, output)
        after = self._price_of(chosen, ctx.prompt_estimate, output)
        if before is None or after is None:
            return None
        return max(0.0, before - after)

    @staticmethod
    def _common(ctx: RequestContext) -> dict[str, Value]:
        return {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": ctx.request_id,
            "agent": ctx.agent,
            "requested_model": ctx.requested_model,
        }


__all__ = ["OTHER", "ROUTED_ENDPOINTS", "PriceFn", "Router"]
