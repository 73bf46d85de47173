"""What tokens cost, to report savings in dollars (cache, routing, ledger, report).

A model's price is the policy's ``models.NAME.price`` if given, else the maintained price data of the
``genai-prices`` package (input, output, cached-input and cache-write rates; tiered prices at their base
rate). Every configured model is priced once at start; a name only the wildcard model serves is looked up
the first time it is seen and remembered, so requests never search the price data. Models that neither
source knows have no price: savings are then counted in tokens only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.policy import WILDCARD, Policy
from gateway.policy.core import ModelConfig, Price, ProviderConfig

POLICY_SOURCE = "policy"
_LAZY_NAMES = 4096
"""Distinct wildcard model names whose price lookup is remembered."""


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """USD per token, and where the figures come from (``policy`` or ``genai-prices VERSION``)."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    source: str

    def cost(self, prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> float:
        """``prompt`` counts every input token, of which ``cached`` were read from and ``cache_write``
        written to the provider's prompt cache (OpenAI's ``prompt_tokens`` includes its cached ones)."""
        fresh = max(prompt - cached - cache_write, 0)
        return (
            fresh * self.input
            + cached * self.cached_input
            + cache_write * self.cache_write
            + completion * self.output
        )


def from_policy_price(price: Price) -> TokenPrice:
    """A policy ``price``: cached input and cache writes default to the input rate (no saving claimed)."""
    cached = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    write = price.input_per_mtok if price.cache_write_per_mtok is None else price.cache_write_per_mtok
    return TokenPrice(
        price.input_per_mtok / 1e6, price.output_per_mtok / 1e6, cached / 1e6, write / 1e6, POLICY_SOURCE
    )


class PriceBook:
    """Prices per model name (the configured name a request is routed to)."""

    def __init__(
        self, prices: Mapping[str, TokenPrice], lookup: Callable[[str], TokenPrice | None] | None = None
    ) -> None:
        self.prices = dict(prices)
        self._lookup = functools.lru_cache(maxsize=_LAZY_NAMES)(lookup) if lookup else None

    @classmethod
    def from_policy(cls, policy: Policy) -> PriceBook:
        prices: dict[str, TokenPrice] = {}
        for name, model in policy.models.items():
            if name == WILDCARD:
                continue
            price = _resolve(name, model, policy.providers[model.provider])
            if price is not None:
                prices[name] = price
        wildcard = policy.models.get(WILDCARD)
        lookup = None
        if wildcard is not None:
            provider = policy.providers[wildcard.provider]

            def lookup(name: str) -> TokenPrice | None:
                return _resolve(name, wildcard, provider)

        return cls(prices, lookup)

    def price(self, model: str) -> TokenPrice | None:
        found = self.prices.get(model)
        if found is None and self._lookup is not None:
            found = self._lookup(model)
        return found

    def cost(
        self, model: str, prompt_tokens: int, completion_tokens: int, cached: int = 0, cache_write: int = 0
    ) -> float | None:
        """USD for that usage of ``model``, or None when its price is unknown."""
        price = self.price(model)
        if price is None:
            return None
        return price.cost(prompt_tokens, completion_tokens, cached, cache_write)


def _resolve(name: str, model: ModelConfig, provider: ProviderConfig) -> TokenPrice | None:
    if model.price is not None:
        return from_policy_price(model.price)
    upstream = model.upstream_model or name
    if provider.type == "litellm":
        ref = provider.litellm_prefix + upstream
        return _genai_price(ref, provider_id="litellm" if "/" in ref else None)
    # A known API (OpenAI, OpenRouter, Groq, ...) by its URL; any other server at the list price of
    # the API it speaks: Anthropic's for ``type: anthropic``, else OpenAI's (set ``price`` for a
    # self-hosted model).
    listed = "anthropic" if provider.type == "anthropic" else "openai"
    return _genai_price(upstream, api_url=provider.base_url) or _genai_price(upstream, provider_id=listed)


def _genai_price(ref: str, provider_id: str | None = None, api_url: str | None = None) -> TokenPrice | None:
    """Today's rates of ``ref`` in genai-prices' bundled data (imported here: 0.5 s and 30 MB, at start)."""
    import genai_prices
    from genai_prices import data_snapshot

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(ref, None, provider_id, api_url)
    except LookupError:
        return None
    rates = info.get_prices(datetime.now(UTC))
    if _per_token(rates.input_mtok) is None:
        return None
    source = f"genai-prices {genai_prices.__version__}"
    fresh = _per_token(rates.input_mtok) or 0.0
    cached, write = _per_token(rates.cache_read_mtok), _per_token(rates.cache_write_mtok)
    return TokenPrice(
        fresh,
        _per_token(rates.output_mtok) or 0.0,
        fresh if cached is None else cached,
        fresh if write is None else write,
        source,
    )


def _per_token(rate: Any) -> float | None:
    """genai-prices gives USD per million tokens, a Decimal or tiers (their base rate is taken)."""
    if rate is None:
        return None
    return float(getattr(rate, "base", rate)) / 1e6
