"""Shared by the routing tests: request contexts and a small policy with every kind of rule."""

from __future__ import annotations

from typing import Any

from gateway.context import Request, Standing
from gateway.policy import Policy
from gateway.protocols import CHAT


def context(
    downgrade: bool = False, budget_left: float | None = None, **fields: Any
) -> tuple[Request, Standing]:
    """A request (for ``auto`` unless told) and where its budget stands, as the router gets them."""
    base: dict[str, Any] = {"request_id": "req-1", "protocol": CHAT, "agent": "a", "team": "t"}
    request = Request(**{**base, "requested_model": "auto", **fields})
    return request, Standing(downgrade, budget_left)


def custom_policy(routing: dict[str, Any], **models: dict[str, Any]) -> Policy:
    declared = {
        "mini": {"provider": "p", "tier": "small", "context_window": 8_000},
        "mini-long": {"provider": "p", "tier": "small", "context_window": 32_000},
        "mid": {"provider": "p", "tier": "medium", "context_window": 16_000, "fallbacks": ["mini"]},
        "big": {"provider": "p", "tier": "large", "context_window": 64_000, "fallbacks": ["mid"]},
        "embed": {"provider": "p", "tier": "small", "context_window": 8_000},
        **models,
    }
    return Policy.model_validate({"providers": {"p": {}}, "models": declared, "routing": routing})


CUSTOM = {
    "aliases": ["auto", "cheap"],
    "candidates": ["mini", "mini-long", "mid", "big"],
    "rules": [
        {"name": "cheap-alias", "when": {"requested": ["cheap"]}, "use": {"model": "mini"}},
        {
            "name": "urgent",
            "when": {"priorities": ["P0", "P1"], "task_types": ["bugfix"]},
            "use": {"model": "big"},
        },
        {"name": "big-change", "when": {"lines_above": 500}, "use": {"tier": "large"}},
        {
            "name": "tiny-change",
            "when": {"lines_below": 20, "prompt_tokens_below": 500},
            "use": {"tier": "small"},
        },
        {"name": "rich", "when": {"budget_left_above": 0.9}, "use": {"tier": "medium"}},
    ],
    "default": {"tier": "medium"},
    "priority_shift": {"P3": -1},
}
