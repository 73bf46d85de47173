"""Providers: how the gateway talks to one upstream. The rest of the gateway sees only ``base.Provider``."""

from __future__ import annotations

import importlib.util

from gateway.policy.core import ProviderConfig
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider, ProviderRequest, UpstreamReply
from gateway.providers.openai import OpenAIProvider
from gateway.redact import remember

__all__ = ["Provider", "ProviderRequest", "UpstreamReply", "build_provider", "missing_package"]


def build_provider(name: str, config: ProviderConfig) -> Provider:
    """The provider for a policy entry; litellm is imported only when the policy declares such a provider."""
    provider: Provider
    if config.type == "litellm":
        from gateway.providers.litellm import LiteLLMProvider

        provider = LiteLLMProvider(name, config)
    elif config.type == "anthropic":
        provider = AnthropicProvider(name, config)
    else:
        provider = OpenAIProvider(name, config)
    remember(provider.secrets)  # logs, ledger and the gateway's own errors never show them
    return provider


def missing_package(config: ProviderConfig) -> str | None:
    """Why a provider of this type cannot run in this installation, or None; checked without importing."""
    if config.type == "litellm" and importlib.util.find_spec("litellm") is None:
        return "type litellm needs litellm, which is not installed (pip install 'llm-gateway[litellm]')"
    return None
