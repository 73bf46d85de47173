"""The routing stage: turns the requested model (an alias, or any model when rewriting is on) into a target.

Requests for a plain model cost one set lookup here. Routed requests are decided by :class:`RuleSet`,
counted, priced against the model they would otherwise have used, and logged (structlog and the
``model_routing_log`` stream, in the background).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gateway import metrics
from gateway.context import Request, Route, Standing
from gateway.errors import InvalidRequest, NotFound
from gateway.policy.routing import RoutingConfig
from gateway.router.log import RoutingLog, Value, log
from gateway.router.rules import Decision, RuleSet
from gateway.tokens import max_output
from gateway.upstream import ModelCatalog, Target

PriceFn = Callable[[str, int, int], float | None]
"""(model, prompt tokens, completion tokens) → USD, or None when the model's price is unknown."""
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

    def applies(self, request: Request) -> bool:
        """Whether the router decides this request (an alias, or any model when rewriting is on)."""
        return request.requested_model in self._aliases or (self._rewrite and request.protocol.routable)

    def route(self, request: Request, standing: Standing) -> Route:
        """The model for ``request`` and why, given where its budget stands."""
        name = request.requested_model
        if not self.applies(request):
            return Route(self.catalog.resolve(name), name)
        alias = name in self._aliases
        if alias and not request.protocol.routable:
            raise NotFound(  # a 404 like OpenAI's for a model it does not have
                f"'{name}' is a routing alias for chat and completions; name an embeddings model instead.",
                param="model",
                code="model_not_found",
            )
        requested = None if alias else self.catalog.resolve(name)  # unknown names stay a 404
        output = max_output(request.body, self.config.assumed_output_tokens)
        try:
            decision = self._rules.decide(request, standing, output, concrete=not alias)
        except InvalidRequest as exc:
            log.warning(
                "route_rejected", request_id=request.request_id, requested_model=name, error=exc.message
            )
            raise
        self._record(request, standing, decision, output)
        keep = requested is not None and decision.model == name
        target = requested if keep and requested is not None else self.catalog.resolve(decision.model)
        return Route(target, decision.model, decision.reason)

    def answered(self, request: Request, route: Route, target: Target) -> None:
        """Record in the decision log that a fallback model answered instead of the routed one."""
        if target.name == route.model or not self.applies(request):
            return
        log.info(
            "route_fallback", request_id=request.request_id, from_model=route.model, to_model=target.name
        )
        self.log.record(
            {
                **self._common(request),
                "kind": "fallback",
                "from_model": route.model,
                "chosen_model": target.name,
                "rule": "fallback",
            }
        )

    def _record(self, request: Request, standing: Standing, decision: Decision, output: int) -> None:
        requested = request.requested_model if request.requested_model in self._labels else OTHER
        chosen = decision.model if decision.model in self._labels else OTHER
        metrics.ROUTING_DECISIONS.labels(requested, chosen, decision.rule).inc()
        saved = self._saved(request, decision.model, output)
        if saved:
            metrics.ROUTING_COST_SAVED.inc(saved)
        entry: dict[str, Value] = {
            **self._common(request),
            "kind": "decision",
            "task_type": request.task_type,
            "priority": request.priority,
            "chosen_model": decision.model,
            "rule": decision.rule,
            "reason": decision.reason,
            "prompt_tokens_estimate": request.prompt_estimate,
            "max_output_tokens": output,
            "budget_left": standing.budget_left,
            "saved_usd": round(saved, 8) if saved is not None else None,
        }
        log.info("route", **{k: v for k, v in entry.items() if k != "time"})
        self.log.record(entry)

    def _saved(self, request: Request, chosen: str, output: int) -> float | None:
        """USD the choice saves against the requested model (or the largest, for an alias); None: unknown."""
        baseline = self._baseline if request.requested_model in self._aliases else request.requested_model
        if self._price_of is None or baseline is None:
            return None
        before = self._price_of(baseline, request.prompt_estimate, output)
        after = self._price_of(chosen, request.prompt_estimate, output)
        if before is None or after is None:
            return None
        return max(0.0, before - after)

    @staticmethod
    def _common(request: Request) -> dict[str, Value]:
        return {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": request.request_id,
            "agent": request.agent,
            "requested_model": request.requested_model,
        }


__all__ = ["OTHER", "PriceFn", "Router"]
