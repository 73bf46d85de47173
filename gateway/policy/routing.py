"""Schema of the ``routing`` policy section: aliases, ordered rules with a default, and their checks.

Agents ask for an alias (``auto``) and the first rule whose conditions all hold picks a model or a tier.
Everything a rule names is checked at load time (:func:`check_routing`), so a typo is a start-up error
naming the key, never a request-time surprise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, model_validator

from gateway.policy.core import ModelConfig, Section
from gateway.policy.loader import ConfigError

Tier = Literal["small", "medium", "large"]
Priority = Literal["P0", "P1", "P2", "P3"]
TIERS: tuple[Tier, ...] = ("small", "medium", "large")
_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"


class Conditions(Section):
    """All given conditions must hold (AND); an empty ``when`` matches every request."""

    requested: list[str] | None = None
    """The alias or model name the agent asked for."""
    prompt_tokens_above: int | None = Field(None, ge=0)
    """The prompt estimate is above this many tokens (bounds are strict)."""
    prompt_tokens_below: int | None = Field(None, ge=1)
    """The prompt estimate is below this many tokens."""
    task_types: list[str] | None = None
    """``X-Task-Type`` values; a request without the header does not match."""
    priorities: list[Priority] | None = None
    """``X-Priority``; a request without it counts as ``routing.default_priority``."""
    lines_above: int | None = Field(None, ge=0)
    """``X-Lines-Estimate`` is above this; a request without the header matches no lines condition."""
    lines_below: int | None = Field(None, ge=1)
    """``X-Lines-Estimate`` is below this; a request without the header matches no lines condition."""
    budget_left_below: float | None = Field(None, gt=0, le=1)
    """Fraction (0..1) of the agent's or sprint's budget left is below this; unknown (no sprint applies)
    matches neither budget condition."""
    budget_left_above: float | None = Field(None, ge=0, lt=1)
    """Fraction (0..1) of the agent's or sprint's budget left is above this."""

    @model_validator(mode="after")
    def _satisfiable(self) -> Conditions:
        for low, high in (
            ("prompt_tokens_above", "prompt_tokens_below"),
            ("lines_above", "lines_below"),
            ("budget_left_above", "budget_left_below"),
        ):
            above, below = getattr(self, low), getattr(self, high)
            if above is not None and below is not None and above >= below:
                raise ValueError(
                    f"{low} ({above}) must be less than {high} ({below}): the rule never matches"
                )
        for name in ("requested", "task_types", "priorities"):
            if getattr(self, name) == []:
                raise ValueError(f"'{name}' is empty, so the rule never matches; remove the key instead")
        return self

    @property
    def unconditional(self) -> bool:
        return all(value is None for value in self.__dict__.values())


class Choice(Section):
    """What a rule picks: one named model, or a tier (its first listed candidate that fits)."""

    model: str | None = None
    """A declared model, used as named."""
    tier: Tier | None = None
    """A tier: its first ``routing.candidates`` entry whose context window fits the request."""

    @model_validator(mode="after")
    def _one(self) -> Choice:
        if (self.model is None) == (self.tier is None):
            raise ValueError("give exactly one of 'model' or 'tier'")
        return self


class Rule(Section):
    """One routing rule: if every condition in ``when`` holds, ``use`` picks the model."""

    name: str = Field(pattern=_NAME)
    """Shown in ``X-Gateway-Route-Reason`` as ``rule:NAME``, in metrics and the decision log. ``default``,
    ``requested`` and ``fallback`` are reserved."""
    when: Conditions = Conditions()
    """The conditions; missing facts (no header, no budget) never match."""
    use: Choice
    """What the rule picks."""


class RoutingConfig(Section):
    """Model routing: agents ask for an alias and the gateway picks the cheapest adequate model."""

    aliases: list[str] = []
    """Model names agents may send to let the gateway choose (e.g. ``auto``); empty: routing is off."""
    rewrite_concrete_models: bool = False
    """Also apply the rules to requests naming a real model (the default then does not apply)."""
    candidates: list[str] = []
    """Models a tier may pick, in order of preference; empty: every declared model, in policy order."""
    rules: list[Rule] = []
    """Ordered; the first rule whose conditions all hold wins."""
    default: Choice = Choice(tier="small")
    """What an alias gets when no rule matches."""
    default_priority: Priority = "P2"
    """The priority of requests without ``X-Priority``."""
    priority_shift: dict[Priority, int] = {}
    """Tiers to move a tier choice up (+) or down (-) by priority, e.g. ``{P0: 1}``."""
    downgrade_floor: dict[Priority, Tier] = {}
    """The cheapest tier the budget's downgrade may move a request of this priority to, e.g.
    ``{P0: medium}``; a decision already below it is not moved. Priorities not named: no floor."""
    assumed_output_tokens: int = Field(1024, ge=1)
    """Completion tokens assumed when a request sets no max tokens (context guard and cost estimate)."""
    baseline_model: str | None = None
    """What an alias request is priced against for the savings metric; empty: the first large candidate."""
    log_stream: str = Field("model_routing_log", min_length=1)
    """Redis stream of routing decisions (used as given, without ``store.prefix``)."""
    log_maxlen: int = Field(10_000, ge=10)
    """Approximate cap of the decision log (Redis ``XADD MAXLEN ~``; the memory store keeps exactly this)."""

    @model_validator(mode="after")
    def _shifts(self) -> RoutingConfig:
        for priority, shift in self.priority_shift.items():
            if not -2 <= shift <= 2:
                raise ValueError(f"priority_shift.{priority} must be between -2 and 2, got {shift}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.aliases) or self.rewrite_concrete_models


def candidate_models(config: RoutingConfig, models: Mapping[str, ModelConfig], wildcard: str) -> list[str]:
    """The models tier choices may land on, in preference order."""
    return list(config.candidates) or [name for name in models if name != wildcard]


def check_routing(config: RoutingConfig, models: Mapping[str, ModelConfig], wildcard: str, file: str) -> None:
    """Every name the section uses must exist and mean one thing; raises :class:`ConfigError`."""
    declared = {name for name in models if name != wildcard}

    def need_model(path: str, name: str) -> None:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none declared"
            raise ConfigError(file, path, f"unknown model '{name}' (declared models: {known})")

    _unique(config.aliases, "routing.aliases[{}]", file)
    for i, alias in enumerate(config.aliases):
        if alias == wildcard or alias in models:
            raise ConfigError(file, f"routing.aliases[{i}]", f"'{alias}' is also a model name; pick another")
    _unique(config.candidates, "routing.candidates[{}]", file)
    for i, name in enumerate(config.candidates):
        need_model(f"routing.candidates[{i}]", name)
    _unique([rule.name for rule in config.rules], "routing.rules[{}].name", file)
    requestable = declared | set(config.aliases)
    for i, rule in enumerate(config.rules):
        path = f"routing.rules[{i}]"
        if rule.use.model is not None:
            need_model(f"{path}.use.model", rule.use.model)
        for j, name in enumerate(rule.when.requested or ()):
            if name not in requestable:
                raise ConfigError(
                    file, f"{path}.when.requested[{j}]", f"'{name}' is neither an alias nor a model"
                )
        if rule.when.unconditional and i + 1 < len(config.rules):
            raise ConfigError(
                file,
                f"{path}.when",
                f"rule '{rule.name}' matches every request, so the rules after it never apply",
            )
        if rule.name in ("default", "requested", "fallback"):
            raise ConfigError(file, f"{path}.name", f"'{rule.name}' is reserved for the router's own reasons")
    if config.default.model is not None:
        need_model("routing.default.model", config.default.model)
    if config.baseline_model is not None:
        need_model("routing.baseline_model", config.baseline_model)
    if config.enabled:
        _check_tiers(config, models, wildcard, file)


def _check_tiers(config: RoutingConfig, models: Mapping[str, ModelConfig], wildcard: str, file: str) -> None:
    """A tier a rule or the default names must have at least one candidate model."""
    candidates = candidate_models(config, models, wildcard)
    if not candidates:
        raise ConfigError(file, "routing", "routing is enabled but no model is declared to route to")
    offered = {models[name].tier for name in candidates}
    uses = [(f"routing.rules[{i}].use.tier", rule.use.tier) for i, rule in enumerate(config.rules)]
    for path, tier in [*uses, ("routing.default.tier", config.default.tier)]:
        if tier is not None and tier not in offered:
            raise ConfigError(
                file,
                path,
                f"no candidate model has tier '{tier}' (tiers offered: {', '.join(sorted(offered))})",
            )


def _unique(names: list[str], path: str, file: str) -> None:
    """``path`` has a ``{}`` for the index of the second occurrence."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(file, path.format(i), f"'{name}' appears twice")
        seen.add(name)
