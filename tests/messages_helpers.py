"""Shared by the Messages API tests: a gateway in front of the strict fake Anthropic API (and the fake
OpenAI one), with Claude models of three tiers and an ``auto`` alias routing among them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.fakes.upstream_anthropic import AnthropicUpstream, serve_anthropic

ANTHROPIC_KEY = "sk-ant-provider-key-0123456789"
CLAUDE_MODELS = {
    "claude-haiku-4-5": {"provider": "claude", "tier": "small"},
    "claude-sonnet-4-5": {"provider": "claude", "tier": "medium", "fallbacks": ["claude-haiku-4-5"]},
    "claude-opus-5-5": {"provider": "claude", "tier": "large"},
}


def messages_policy(openai_url: str, anthropic_url: str, **sections: Any) -> dict[str, Any]:
    """The test policy plus a ``type: anthropic`` provider and its models; sections override."""
    policy = base_policy(openai_url, **sections)
    policy["providers"]["claude"] = {
        "type": "anthropic",
        "base_url": anthropic_url,
        "api_key": ANTHROPIC_KEY,
        "timeout_s": 5,
        "retry": {"attempts": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "deadline_s": 5},
        **policy["providers"].get("claude", {}),  # a test's own settings for it
    }
    policy["models"] = {**policy["models"], **CLAUDE_MODELS, **sections.get("extra_models", {})}
    policy.pop("extra_models", None)
    return policy


@pytest.fixture
def fake_anthropic() -> Iterator[AnthropicUpstream]:
    with serve_anthropic(ANTHROPIC_KEY) as (fake, url):
        fake.url = url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def messages_gateway(
    fake_upstream: FakeUpstream, fake_anthropic: AnthropicUpstream, start_gateway: Callable[..., str]
) -> Callable[..., str]:
    """Start a gateway before both fakes, with policy sections overridden."""

    def start(**sections: Any) -> str:
        url = fake_anthropic.url  # type: ignore[attr-defined]
        return start_gateway(messages_policy(fake_upstream.url, url, **sections))  # type: ignore[attr-defined]

    return start


def sdk(base_url: str, key: str = GATEWAY_KEY, **options: Any) -> anthropic.Anthropic:
    """The official SDK pointed at the gateway, without its own retries unless asked."""
    return anthropic.Anthropic(
        base_url=base_url, api_key=key, max_retries=options.pop("max_retries", 0), **options
    )
