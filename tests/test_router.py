"""The routing rules: the shipped (seed) rules and combinations as tables, the context guard as a property."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.errors import InvalidRequest
from gateway.policy import ConfigError, Policy, check_references, load_policy
from gateway.router import RuleSet
from tests.routing_helpers import CUSTOM, context, custom_policy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = load_policy(ROOT / "policies" / "default.yaml", env={})
SMALL, MEDIUM, LARGE = "gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1"
TASKS = [None, "refactor", "qa", "test", "creative", "architecture", "docs"]
PRIORITIES = [None, "P0", "P1", "P2", "P3"]


def decide(rules: RuleSet, output: int = 1024, concrete: bool = False, **fields: Any) -> tuple[str, str]:
    decision = rules.decide(*context(**fields), output, concrete)
    return decision.model, decision.reason


DEFAULT_RULES = RuleSet(DEFAULT.routing, DEFAULT.models)


@pytest.mark.parametrize(
    ("fields", "model", "reason"),
    [
        ({"prompt_estimate": 50}, SMALL, "default"),
        ({"prompt_estimate": 3000}, SMALL, "default"),
        ({"prompt_estimate": 3001}, LARGE, "rule:large-prompt"),
        ({"prompt_estimate": 50, "task_type": "refactor"}, MEDIUM, "rule:refactor-qa-test"),
        ({"prompt_estimate": 50, "task_type": "qa"}, MEDIUM, "rule:refactor-qa-test"),
        ({"prompt_estimate": 50, "task_type": "test"}, MEDIUM, "rule:refactor-qa-test"),
        ({"prompt_estimate": 50, "task_type": "creative"}, LARGE, "rule:creative-architecture"),
        ({"prompt_estimate": 50, "task_type": "architecture"}, LARGE, "rule:creative-architecture"),
        ({"prompt_estimate": 50, "task_type": "docs"}, SMALL, "default"),
        ({"prompt_estimate": 5000, "task_type": "refactor"}, LARGE, "rule:large-prompt"),
        # budget: below 0.2 left wins over every task rule; unknown (None) or 0.2 matches nothing
        (
            {"prompt_estimate": 5000, "task_type": "architecture", "budget_left": 0.1},
            SMALL,
            "rule:low-budget",
        ),
        (
            {"prompt_estimate": 50, "task_type": "refactor", "budget_left": 0.2},
            MEDIUM,
            "rule:refactor-qa-test",
        ),
        ({"prompt_estimate": 50, "budget_left": None}, SMALL, "default"),
        ({"prompt_estimate": 50, "budget_left": 0.0}, SMALL, "rule:low-budget"),
        # priority: P0 goes one tier up (capped at large); other priorities keep the rule's tier
        ({"prompt_estimate": 50, "priority": "P0"}, MEDIUM, "default"),
        ({"prompt_estimate": 50, "priority": "P0", "task_type": "refactor"}, LARGE, "rule:refactor-qa-test"),
        ({"prompt_estimate": 5000, "priority": "P0"}, LARGE, "rule:large-prompt"),
        ({"prompt_estimate": 50, "priority": "P0", "budget_left": 0.05}, MEDIUM, "rule:low-budget"),
        ({"prompt_estimate": 50, "priority": "P3", "task_type": "qa"}, MEDIUM, "rule:refactor-qa-test"),
        (
            {"prompt_estimate": 50, "priority": "P1", "task_type": "creative"},
            LARGE,
            "rule:creative-architecture",
        ),
        # lines are not part of the seed's rules: they change nothing
        ({"prompt_estimate": 50, "lines_estimate": 5000}, SMALL, "default"),
        # context guard: the small model's 128k window is too small, the next tier up fits
        ({"prompt_estimate": 130_000, "budget_left": 0.1}, MEDIUM, "rule:low-budget;context-guard"),
        ({"prompt_estimate": 400_000, "task_type": "refactor"}, LARGE, "rule:large-prompt"),
    ],
)
def test_default_rules(fields: dict[str, Any], model: str, reason: str) -> None:
    assert decide(DEFAULT_RULES, **fields) == (model, reason)


@pytest.mark.parametrize(
    ("fields", "model", "reason"),
    [
        # past alert_at (80 % used) with the low-budget rule matching too: P0 keeps medium, others small
        ({"priority": "P0", "budget_left": 0.15}, MEDIUM, "rule:low-budget"),
        ({"priority": "P0", "task_type": "architecture", "budget_left": 0.0}, MEDIUM, "rule:low-budget"),
        ({"priority": "P2", "budget_left": 0.15}, SMALL, "rule:low-budget"),
        ({"budget_left": 0.15}, SMALL, "rule:low-budget"),  # no X-Priority: the default P2
        ({"priority": "P1", "task_type": "refactor", "budget_left": 0.1}, SMALL, "rule:low-budget"),
        # past an earlier alert_at, before the low-budget rule: one tier down, P0 never below medium
        (
            {"priority": "P0", "task_type": "refactor", "budget_left": 0.3},
            MEDIUM,
            "rule:refactor-qa-test;budget-downgrade",
        ),
        ({"priority": "P0", "budget_left": 0.3}, MEDIUM, "default"),
        (
            {"priority": "P2", "task_type": "refactor", "budget_left": 0.3},
            SMALL,
            "rule:refactor-qa-test;budget-downgrade",
        ),
        (
            {"priority": "P3", "task_type": "creative", "budget_left": 0.3},
            MEDIUM,
            "rule:creative-architecture;budget-downgrade",
        ),
    ],
)
def test_default_rules_past_the_budget_alert(fields: dict[str, Any], model: str, reason: str) -> None:
    assert decide(DEFAULT_RULES, downgrade=True, **fields) == (model, reason)


def test_downgrade_floor_bounds_the_downgrade_and_never_raises() -> None:
    policy = custom_policy({**CUSTOM, "downgrade_floor": {"P1": "medium", "P2": "large"}})
    rules = RuleSet(policy.routing, policy.models)
    assert decide(rules, priority="P1", downgrade=True) == ("mid", "default"), "medium is P1's floor"
    assert decide(rules, priority="P0", downgrade=True) == ("mini", "default;budget-downgrade"), "no floor"
    assert decide(rules, priority="P1", task_type="bugfix", downgrade=True) == (
        "mid",
        "rule:urgent;budget-downgrade",
    ), "one tier down, onto the floor"
    assert decide(rules, lines_estimate=900, priority="P2", downgrade=True) == ("big", "rule:big-change")
    assert decide(rules, requested_model="cheap", priority="P2", downgrade=True) == (
        "mini",
        "rule:cheap-alias",
    ), "a decision already below the floor stays where it is"
    assert decide(rules, prompt_estimate=12_000, priority="P0", downgrade=True) == (
        "mini-long",
        "default;budget-downgrade",
    ), "the first cheaper candidate whose window fits"


def test_requested_max_tokens_count_for_the_guard() -> None:
    assert decide(DEFAULT_RULES, output=1024, prompt_estimate=120_000, budget_left=0.1)[0] == SMALL
    assert decide(DEFAULT_RULES, output=20_000, prompt_estimate=120_000, budget_left=0.1) == (
        MEDIUM,
        "rule:low-budget;context-guard",
    )


def test_nothing_fits_is_a_400_with_a_clear_message() -> None:
    with pytest.raises(InvalidRequest) as info:
        decide(DEFAULT_RULES, prompt_estimate=1_100_000)
    error = info.value
    assert error.status == 400 and error.code == "context_length_exceeded"
    assert "1100000" in error.message and "gpt-4.1-mini" in error.message


CUSTOM_RULES = RuleSet(custom_policy(CUSTOM).routing, custom_policy(CUSTOM).models)


@pytest.mark.parametrize(
    ("fields", "model", "reason"),
    [
        ({"requested_model": "cheap", "lines_estimate": 900}, "mini", "rule:cheap-alias"),
        (
            {"requested_model": "cheap", "prompt_estimate": 20_000},
            "mini-long",
            "rule:cheap-alias;context-guard",
        ),
        ({"priority": "P1", "task_type": "bugfix"}, "big", "rule:urgent"),
        ({"priority": "P2", "task_type": "bugfix"}, "mid", "default"),
        ({"task_type": "bugfix"}, "mid", "default"),  # no X-Priority counts as the default, P2
        ({"lines_estimate": 501}, "big", "rule:big-change"),
        ({"lines_estimate": 500}, "mid", "default"),
        ({"lines_estimate": 501, "priority": "P3"}, "mid", "rule:big-change"),  # shifted one tier down
        ({"lines_estimate": 10, "prompt_estimate": 100}, "mini", "rule:tiny-change"),
        ({"lines_estimate": 10, "prompt_estimate": 100, "priority": "P3"}, "mini", "rule:tiny-change"),
        ({"lines_estimate": 10, "prompt_estimate": 600}, "mid", "default"),
        ({"prompt_estimate": 100}, "mid", "default"),  # no X-Lines-Estimate: no lines rule matches
        ({"budget_left": 0.95, "priority": "P3"}, "mini", "rule:rich"),
        ({"prompt_estimate": 20_000}, "big", "default;context-guard"),
        ({"prompt_estimate": 40_000, "priority": "P3"}, "big", "default;context-guard"),
    ],
)
def test_custom_rules(fields: dict[str, Any], model: str, reason: str) -> None:
    assert decide(CUSTOM_RULES, **fields) == (model, reason)


def test_guard_walks_down_only_when_nothing_larger_fits() -> None:
    policy = custom_policy(
        {**CUSTOM, "rules": []}, big={"provider": "p", "tier": "large", "context_window": 4_000}
    )
    rules = RuleSet(policy.routing, policy.models)
    assert decide(rules, prompt_estimate=20_000, priority="P0") == ("mini-long", "default;context-guard")


def test_concrete_models_kept_unless_a_rule_rewrites_them() -> None:
    routing = {**CUSTOM, "rewrite_concrete_models": True}
    rules = RuleSet(custom_policy(routing).routing, custom_policy(routing).models)
    assert decide(rules, concrete=True, requested_model="mini", prompt_estimate=100) == ("mini", "requested")
    assert decide(rules, concrete=True, requested_model="mini", lines_estimate=900) == (
        "big",
        "rule:big-change",
    )
    assert decide(rules, concrete=True, requested_model="mini", prompt_estimate=9_000) == (
        "mini-long",
        "requested;context-guard",
    )


# -- property: every decision names a configured model that fits, or is a 400 -------------------------

MODELS = {
    "s1": ("small", 4_000),
    "s2": ("small", 16_000),
    "m1": ("medium", 8_000),
    "m2": ("medium", 128_000),
    "l1": ("large", 32_000),
}
conditions = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens_above": st.integers(0, 50_000),
        "task_types": st.lists(st.sampled_from(TASKS[1:]), min_size=1, max_size=3),
        "priorities": st.lists(st.sampled_from(PRIORITIES[1:]), min_size=1, max_size=2),
        "lines_below": st.integers(1, 1000),
        "budget_left_below": st.floats(0.01, 1.0),
        "requested": st.just(["auto"]),
    },
)
TIER_NAMES = ["small", "medium", "large"]
choice = st.one_of(
    st.builds(lambda m: {"model": m}, st.sampled_from(sorted(MODELS))),
    st.builds(lambda t: {"tier": t}, st.sampled_from(TIER_NAMES)),
)
routing_sections = st.builds(
    lambda rules, default, shift, candidates, floor: {
        "aliases": ["auto"],
        "candidates": candidates,
        "rules": [{"name": f"r{i}", "when": when, "use": use} for i, (when, use) in enumerate(rules)],
        "default": default,
        "priority_shift": shift,
        "downgrade_floor": floor,
    },
    st.lists(st.tuples(conditions, choice), max_size=5),
    choice,
    st.dictionaries(st.sampled_from(PRIORITIES[1:]), st.integers(-2, 2), max_size=2),
    st.lists(st.sampled_from(sorted(MODELS)), min_size=1, unique=True),
    st.dictionaries(st.sampled_from(PRIORITIES[1:]), st.sampled_from(TIER_NAMES), max_size=2),
)
requests = st.fixed_dictionaries(
    {
        "prompt_estimate": st.integers(0, 200_000),
        "task_type": st.sampled_from(TASKS),
        "priority": st.sampled_from(PRIORITIES),
        "lines_estimate": st.one_of(st.none(), st.integers(0, 5000)),
        "budget_left": st.one_of(st.none(), st.floats(0, 1)),
    }
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(routing=routing_sections, request=requests, output=st.integers(1, 20_000))
def test_every_decision_is_a_configured_model_that_fits(
    routing: dict[str, Any], request: dict[str, Any], output: int
) -> None:
    models = {
        name: {"provider": "p", "tier": tier, "context_window": w} for name, (tier, w) in MODELS.items()
    }
    try:
        policy = Policy.model_validate({"providers": {"p": {}}, "models": models, "routing": routing})
        check_references(policy, "generated")
    except (ValidationError, ConfigError):
        assume(False)
        return
    rules = RuleSet(policy.routing, policy.models)
    need = request["prompt_estimate"] + output
    candidates = routing["candidates"]
    try:
        decision = rules.decide(*context(**request), output, concrete=False)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.code == "context_length_exceeded"
        assert all(MODELS[name][1] < need for name in candidates), "a 400 only when no candidate fits"
        return
    assert decision.model in MODELS
    assert MODELS[decision.model][1] >= need
    assert decision.rule == "default" or decision.rule.startswith("r")
    cheaper = rules.decide(*context(**request, downgrade=True), output, concrete=False)
    tier_of = {name: TIER_NAMES.index(tier) for name, (tier, _) in MODELS.items()}
    floor = TIER_NAMES.index(policy.routing.downgrade_floor.get(request["priority"] or "P2", "small"))
    assert MODELS[cheaper.model][1] >= need
    assert tier_of[cheaper.model] <= tier_of[decision.model], "a downgrade never costs more"
    assert tier_of[cheaper.model] >= min(floor, tier_of[decision.model]), "nor goes below the floor"
    assert cheaper.downgraded == (cheaper.model != decision.model)


@given(request=requests, output=st.integers(1, 100_000))
@settings(max_examples=300, deadline=None)
def test_default_policy_never_overflows(request: dict[str, Any], output: int) -> None:
    try:
        model, _ = decide(DEFAULT_RULES, output=output, **request)
    except InvalidRequest:
        assert request["prompt_estimate"] + output > 1_047_576
        return
    assert model in DEFAULT.routing.candidates
    assert DEFAULT.models[model].context_window >= request["prompt_estimate"] + output
