"""What tokens cost, to report savings in dollars (cache, routing, ledger).

Prices come from the policy (``models.NAME.price``) or else from litellm's model price map, read once at
start straight from its JSON file: litellm itself is never imported here (that costs ~2 s and 250 MB).
Unknown models have no price: savings are then counted in tokens only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import orjson

from gateway.policy import Policy

_PRICE_FILE = "model_prices_and_context_window_backup.json"


def _litellm_price_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / _PRICE_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class PriceBook:
    """USD per token, per model name (configured name or provider name)."""

    def __init__(self, per_token: dict[str, tuple[float, float]]) -> None:
        self._per_token = per_token

    @classmethod
    def from_policy(cls, policy: Policy, use_litellm_map: bool = True) -> PriceBook:
        known: dict[str, tuple[float, float]] = {}
        if use_litellm_map:
            for name, info in _litellm_price_map().items():
                if isinstance(info, dict) and "input_cost_per_token" in info:
                    known[name] = (
                        float(info["input_cost_per_token"]),
                        float(info.get("output_cost_per_token", 0)),
                    )
        prices: dict[str, tuple[float, float]] = {}
        for name, model in policy.models.items():
            if model.price is not None:
                prices[name] = (model.price.input_per_mtok / 1e6, model.price.output_per_mtok / 1e6)
            elif (model.upstream_model or name) in known:
                prices[name] = known[model.upstream_model or name]
        return cls({**known, **prices})

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for that usage of ``model``, or None when its price is unknown."""
        price = self._per_token.get(model)
        if price is None:
            return None
        return prompt_tokens * price[0] + completion_tokens * price[1]
