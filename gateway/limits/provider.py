"""What providers say of their own limits: ``x-ratelimit-remaining-*`` (OpenAI) and
``anthropic-ratelimit-*-remaining`` headers lower admission for that provider before it answers 429.

Per process: every replica reads the headers of its own answers, which report the provider's shared
count, and counts its own requests down from the last figure until the provider's reset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway.policy.limits import ProviderHeadersConfig

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds_of(value: str, now: float) -> float | None:
    """A reset as OpenAI (``6m0s``, ``20ms``, ``1.5``) or Anthropic (RFC 3339 time) sends it."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _PART.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return sum(float(n) * _UNIT[u] for n, u in parts)
    try:
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - now)
    except ValueError:
        return None


@dataclass(slots=True)
class _Left:
    remaining: int
    until: float


class ProviderWatch:
    def __init__(self, config: ProviderHeadersConfig) -> None:
        self.config = config
        self._left: dict[tuple[str, str], _Left] = {}

    def observe(self, provider: str, headers: Mapping[str, str], now: float) -> None:
        """Note a provider answer's remaining figures (lower-case header names)."""
        if not self.config.enabled:
            return
        for resource in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{resource}") or headers.get(
                f"anthropic-ratelimit-{resource}-remaining"
            )
            reset = headers.get(f"x-ratelimit-reset-{resource}") or headers.get(
                f"anthropic-ratelimit-{resource}-reset"
            )
            if remaining is None or not remaining.strip().isdigit():
                continue
            wait = seconds_of(reset, now) if reset else None
            self._left[(provider, resource)] = _Left(
                int(remaining), now + (wait if wait is not None else 1.0)
            )

    def wait(self, provider: str, tokens: int, now: float) -> float | None:
        """Seconds to hold a request to ``provider`` back, or None to send it (then counted down)."""
        if not self.config.enabled:
            return None
        needs = {
            "requests": (1, self.config.min_remaining_requests),
            "tokens": (tokens, self.config.min_remaining_tokens),
        }
        found = [(resource, self._left.get((provider, resource))) for resource in needs]
        live = [(r, left) for r, left in found if left is not None and left.until > now]
        for resource, left in live:
            amount, floor = needs[resource]
            if left.remaining - (amount if resource == "tokens" else 0) < floor:
                return left.until - now
        for resource, left in live:
            left.remaining -= needs[resource][0]
        return None
