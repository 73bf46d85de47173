"""The ``x-ratelimit-*`` headers OpenAI sends, from the tightest bucket of each resource, and the 429.

OpenAI's SDKs wait ``Retry-After`` (or ``retry-after-ms``) before retrying a 429, so a refused agent
retries when a slot is free instead of hammering the gateway.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from gateway.errors import RateLimited
from gateway.tickets import Level

RESOURCES = ("requests", "tokens")


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def tightest(levels: Iterable[Level]) -> Level | None:
    """The bucket with the fewest remaining (the one that refuses first); ties: the later reset."""
    return min(levels, key=lambda level: (level.remaining, -level.reset_s), default=None)


def rate_headers(by_resource: dict[str, list[Level]]) -> dict[str, str]:
    """``x-ratelimit-limit-*``, ``-remaining-*`` and ``-reset-*`` for each resource that has a limit."""
    headers: dict[str, str] = {}
    for resource in RESOURCES:
        level = tightest(by_resource.get(resource, ()))
        if level is None:
            continue
        headers[f"x-ratelimit-limit-{resource}"] = str(level.capacity)
        headers[f"x-ratelimit-remaining-{resource}"] = str(level.remaining)
        headers[f"x-ratelimit-reset-{resource}"] = duration(level.reset_s)
    return headers


def retry_headers(seconds: float) -> dict[str, str]:
    return {
        "Retry-After": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, round(seconds * 1000))),
    }


def refusal(
    message: str, seconds: float, headers: dict[str, str], code: str = "rate_limit_exceeded"
) -> RateLimited:
    """A 429 the SDK retries after ``seconds``; ``seconds`` < 0: the request can never fit (no retry)."""
    extra = {**headers, **(retry_headers(seconds) if seconds >= 0 else {"x-should-retry": "false"})}
    return RateLimited(message, code=code, headers=extra)
