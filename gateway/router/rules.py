"""The routing rules as a pure function of the request: first matching rule, tier pick, context guard.

No I/O and no metrics here, so every rule and every edge of the context guard is testable as a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.context import Request, Standing
from gateway.errors import InvalidRequest
from gateway.policy.core import ModelConfig
from gateway.policy.routing import TIERS, Choice, Conditions, RoutingConfig, candidate_models


@dataclass(frozen=True, slots=True)
class Decision:
    model: str
    rule: str
    """The rule's name, ``default``, or ``requested`` (a concrete model kept as asked)."""
    guarded: bool = False
    """The context guard moved the request off the model the rule would have picked."""
    downgraded: bool = False
    """The budget stage asked for a cheaper tier (``Standing.downgrade``) and one was taken."""

    @property
    def reason(self) -> str:
        """The ``X-Gateway-Route-Reason`` value, e.g. ``rule:large-prompt`` or ``default;context-guard``."""
        base = self.rule if self.rule in ("default", "requested") else f"rule:{self.rule}"
        base = f"{base};context-guard" if self.guarded else base
        return f"{base};budget-downgrade" if self.downgraded else base


def matches(when: Conditions, request: Request, standing: Standing, priority: str) -> bool:
    """Whether every condition of ``when`` holds; unknown facts (no header, no budget) never match."""
    if when.requested is not None and request.requested_model not in when.requested:
        return False
    if when.task_types is not None and request.task_type not in when.task_types:
        return False
    if when.priorities is not None and priority not in when.priorities:
        return False
    return (
        _within(request.prompt_estimate, when.prompt_tokens_above, when.prompt_tokens_below)
        and _within(request.lines_estimate, when.lines_above, when.lines_below)
        and _within(standing.budget_left, when.budget_left_above, when.budget_left_below)
    )


def _within(value: float | None, above: float | None, below: float | None) -> bool:
    """Strict bounds; a figure the request did not give matches no bound."""
    if above is None and below is None:
        return True
    if value is None:
        return False
    return (above is None or value > above) and (below is None or value < below)


class RuleSet:
    """The ``routing`` section compiled against the declared models."""

    def __init__(self, config: RoutingConfig, models: Mapping[str, ModelConfig], wildcard: str = "*") -> None:
        self._config = config
        self._shift: dict[str, int] = dict(config.priority_shift.items())  # looked up by any header value
        self._floor: dict[str, int] = {
            priority: TIERS.index(tier) for priority, tier in config.downgrade_floor.items()
        }
        self._windows = {name: m.context_window for name, m in models.items() if name != wildcard}
        self._tier_of = {name: TIERS.index(m.tier) for name, m in models.items() if name != wildcard}
        candidates = candidate_models(config, models, wildcard)
        self.by_tier: list[list[str]] = [[n for n in candidates if self._tier_of[n] == t] for t in range(3)]

    def largest(self) -> str | None:
        """The first candidate of the highest tier offered: what an alias request is priced against."""
        return next((tier[0] for tier in reversed(self.by_tier) if tier), None)

    def decide(self, request: Request, standing: Standing, output_tokens: int, concrete: bool) -> Decision:
        """The model for ``request``; ``concrete``: the agent named a real model, kept when no rule matches.
        When the budget asks (``standing.downgrade``), one tier cheaper (:meth:`downgrade`).

        Raises a 400 when the prompt plus ``output_tokens`` fits no candidate's context window."""
        priority = request.priority or self._config.default_priority
        need = request.prompt_estimate + output_tokens
        decision = self._rule_or_default(request, standing, priority, need, concrete)
        return self.downgrade(decision, need, priority) if standing.downgrade else decision

    def _rule_or_default(
        self, request: Request, standing: Standing, priority: str, need: int, concrete: bool
    ) -> Decision:
        for rule in self._config.rules:
            if matches(rule.when, request, standing, priority):
                return self._choose(rule.use, rule.name, priority, need, request)
        if concrete:
            return self._keep(request.requested_model, need, request)
        return self._choose(self._config.default, "default", priority, need, request)

    def downgrade(self, decision: Decision, need: int, priority: str | None = None) -> Decision:
        """The first fitting candidate of a cheaper tier than ``decision``'s (nearest tier first), never
        below ``priority``'s ``downgrade_floor``; the decision itself when nothing cheaper is allowed or fits.

        The budget asks for this past ``alert_at`` (``Standing.downgrade``); the floor keeps critical work on
        an adequate model however low the budget runs (the low-budget rule already chose a cheap tier)."""
        floor = self._floor.get(priority or self._config.default_priority, 0)
        for tier in range(self._tier_of.get(decision.model, 0) - 1, floor - 1, -1):
            for name in self.by_tier[tier]:
                if self.fits(name, need):
                    return Decision(name, decision.rule, decision.guarded, downgraded=True)
        return decision

    def fits(self, model: str, need: int) -> bool:
        return self._windows.get(model, 0) >= need

    def _choose(self, choice: Choice, rule: str, priority: str, need: int, request: Request) -> Decision:
        if choice.model is not None:
            if self.fits(choice.model, need):
                return Decision(choice.model, rule)
            return Decision(self._walk(self._tier_of[choice.model], need, request), rule, guarded=True)
        assert choice.tier is not None
        tier = min(2, max(0, TIERS.index(choice.tier) + self._shift.get(priority, 0)))
        intended = next(iter(self._order(tier)), None)
        model = self._walk(tier, need, request)
        return Decision(model, rule, guarded=model != intended)

    def _keep(self, model: str, need: int, request: Request) -> Decision:
        """A concrete model no rule rewrote: kept, unless the guard knows its window is too small."""
        if model not in self._windows or self.fits(model, need):
            return Decision(model, "requested")
        return Decision(self._walk(self._tier_of[model], need, request), "requested", guarded=True)

    def _order(self, tier: int) -> list[str]:
        """Candidates to try from ``tier``: that tier, larger tiers, then smaller ones (largest first)."""
        tiers = [*range(tier, 3), *range(tier - 1, -1, -1)]
        return [name for t in tiers for name in self.by_tier[t]]

    def _walk(self, tier: int, need: int, request: Request) -> str:
        for name in self._order(tier):
            if self.fits(name, need):
                return name
        raise _too_large(request.prompt_estimate, need - request.prompt_estimate, self._windows, self.by_tier)


def _too_large(
    prompt: int, output: int, windows: Mapping[str, int], by_tier: list[list[str]]
) -> InvalidRequest:
    names = [name for tier in by_tier for name in tier]
    widest = max(names, key=lambda n: windows[n]) if names else "none"
    return InvalidRequest(
        f"The prompt (about {prompt} tokens) plus {output} completion tokens does not fit the context "
        f"window of any model this gateway routes to (the largest is {widest} with "
        f"{windows.get(widest, 0)} tokens). Shorten the prompt or lower max_tokens.",
        param="messages",
        code="context_length_exceeded",
    )
