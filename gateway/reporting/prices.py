"""The report's price list: per model, the rates the policy resolves to and where each comes from."""

from __future__ import annotations

from typing import Any

from gateway.policy import WILDCARD, Policy
from gateway.pricing import PriceBook
from gateway.reporting.kpis import Summary
from gateway.reporting.render import Table

NOTE = (
    "USD per million tokens, as this policy prices them now (models.NAME.price, else genai-prices). "
    "Recorded costs were priced by the gateway that served them."
)
UNPRICED = "none: set models.NAME.price"


def models_of(policy: Policy, summary: Summary) -> list[str]:
    """The policy's models, then the other models that answered in the period."""
    names = [name for name in policy.models if name != WILDCARD]
    answered = {model for _, model, _ in summary.routing} - set(names) - set(policy.routing.aliases) - {""}
    return names + sorted(answered)


def _mtok(value: float) -> str:
    return f"${value * 1e6:,.4g}"


def price_table(book: PriceBook, models: list[str]) -> Table:
    rows = []
    for name in models:
        price = book.price(name)
        if price is None:
            rows.append([name, "n/a", "n/a", "n/a", UNPRICED])
        else:
            rows.append(
                [name, _mtok(price.input), _mtok(price.cached_input), _mtok(price.output), price.source]
            )
    return Table("Prices", ["model", "input", "cached input", "output", "source"], rows, [NOTE])


def price_json(book: PriceBook, models: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in models:
        price = book.price(name)
        out[name] = (
            None
            if price is None
            else {
                "input_per_mtok": price.input * 1e6,
                "cached_input_per_mtok": price.cached_input * 1e6,
                "cache_write_per_mtok": price.cache_write * 1e6,
                "output_per_mtok": price.output * 1e6,
                "source": price.source,
            }
        )
    return out
