"""The ``routing`` policy section: every wrong or conflicting name is an error at start naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.policy import ConfigError, Policy, load_policy
from gateway.policy.routing import RoutingConfig


def load(tmp_path: Path, routing: dict[str, Any], models: dict[str, Any] | None = None) -> Policy:
    policy = {
        "providers": {"p": {}},
        "models": models
        or {
            "small-m": {"provider": "p", "tier": "small"},
            "large-m": {"provider": "p", "tier": "large"},
            "*": {"provider": "p"},
        },
        "routing": routing,
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return load_policy(path, env={})


RULE = {"name": "r", "use": {"tier": "small"}}


@pytest.mark.parametrize(
    ("routing", "key", "words"),
    [
        ({"aliases": ["small-m"]}, "routing.aliases[0]", "also a model name"),
        ({"aliases": ["*"]}, "routing.aliases[0]", "also a model name"),
        ({"aliases": ["auto", "auto"]}, "routing.aliases[1]", "appears twice"),
        ({"candidates": ["gpt-9"]}, "routing.candidates[0]", "unknown model 'gpt-9'"),
        ({"candidates": ["*"]}, "routing.candidates[0]", "unknown model"),
        (
            {"rules": [{"name": "r", "use": {"model": "gpt-9"}}]},
            "routing.rules[0].use.model",
            "unknown model",
        ),
        ({"rules": [RULE, RULE]}, "routing.rules[1].name", "appears twice"),
        ({"rules": [{**RULE, "name": "default"}]}, "routing.rules[0].name", "reserved"),
        ({"rules": [RULE, {**RULE, "name": "s"}]}, "routing.rules[0].when", "never apply"),
        (
            {"aliases": ["auto"], "rules": [{**RULE, "when": {"requested": ["nope"]}}]},
            "routing.rules[0].when.requested[0]",
            "neither an alias nor a model",
        ),
        ({"aliases": ["auto"], "default": {"tier": "medium"}}, "routing.default.tier", "no candidate model"),
        (
            {"aliases": ["auto"], "rules": [{"name": "r", "use": {"tier": "medium"}}]},
            "routing.rules[0].use.tier",
            "tier 'medium'",
        ),
        ({"default": {"model": "nope"}}, "routing.default.model", "unknown model"),
        ({"baseline_model": "nope"}, "routing.baseline_model", "unknown model"),
        ({"default": {"model": "small-m", "tier": "small"}}, "routing.default", "exactly one"),
        ({"rules": [{"name": "r", "use": {"tier": "huge"}}]}, "routing.rules.0.use.tier", "small"),
        (
            {"rules": [{**RULE, "when": {"prompt_tokens_above": 10, "prompt_tokens_below": 5}}]},
            "routing.rules.0.when",
            "never matches",
        ),
        ({"rules": [{**RULE, "when": {"task_types": []}}]}, "routing.rules.0.when", "never matches"),
        ({"rules": [{**RULE, "when": {"priority": ["P0"]}}]}, "routing.rules.0.when.priority", "unknown key"),
        ({"rules": [{**RULE, "when": {"priorities": ["P5"]}}]}, "routing.rules.0.when.priorities.0", "P0"),
        ({"priority_shift": {"P0": 3}}, "routing", "between -2 and 2"),
        ({"downgrade_floor": {"P0": "mid"}}, "routing.downgrade_floor.P0", "medium"),
        ({"downgrade_floor": {"P9": "medium"}}, "routing.downgrade_floor.P9.[key]", "P0"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, routing: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, routing)
    assert info.value.path == key
    assert words in info.value.message


def test_routing_off_does_not_need_every_tier(tmp_path: Path) -> None:
    assert load(tmp_path, {"default": {"tier": "medium"}}).routing.enabled is False


def test_routing_config_defaults_are_off() -> None:
    config = RoutingConfig()
    assert not config.enabled and config.log_stream == "model_routing_log"
    assert config.default.tier == "small" and config.default_priority == "P2"
