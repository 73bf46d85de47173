"""Schema of the ``limits`` policy section: rate limits across replicas, provider headers, the brake."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.policy.core import Section

Scope = Literal["key", "agent", "team", "model", "provider"]


class LimitRule(Section):
    """One rate limit: requests and tokens per window (and requests in flight) for one scope."""

    scope: Scope
    """What is counted together: each gateway key, agent, team, requested model or its provider."""
    match: str = "*"
    """One name the rule applies to (for ``key``: the key's SHA-256 in hex), or ``*``: each name on its
    own counter."""
    rpm: int | None = Field(None, ge=1)
    """Requests admitted per window (per minute by default); unset: no request limit."""
    tpm: int | None = Field(None, ge=1)
    """Tokens admitted per window: each request reserves its prompt estimate plus its ``max_tokens``
    (or ``budgets.default_max_tokens``), and gives back what it did not use once the answer is in."""
    concurrency: int | None = Field(None, ge=1)
    """Requests in flight at once; unset: no limit."""
    window_s: float = Field(60.0, gt=0, le=86400)
    """The sliding window of ``rpm`` and ``tpm`` in seconds (60: per minute)."""

    @model_validator(mode="after")
    def _something_limited(self) -> LimitRule:
        if self.rpm is None and self.tpm is None and self.concurrency is None:
            raise ValueError("a limit rule needs at least one of rpm, tpm and concurrency")
        return self


class ProviderHeadersConfig(Section):
    """Admission lowered by the providers' own ``x-ratelimit-remaining-*`` answer headers."""

    enabled: bool = True
    """Read the headers and hold requests back when a provider says it is nearly out."""
    min_remaining_requests: int = Field(1, ge=0)
    """Requests to a provider wait (429 with ``Retry-After`` until its reset) while it reports fewer
    remaining requests than this."""
    min_remaining_tokens: int = Field(0, ge=0)
    """Tokens a provider must report left beyond a request's estimate before it is sent."""


class BrakeConfig(Section):
    """The runaway brake: pauses an agent that repeats a request or burns tokens far beyond its share."""

    enabled: bool = True
    """Turns the brake on or off."""
    repeat_limit: int = Field(20, ge=1)
    """An agent sending the same request (same content key) more than this many times in
    ``repeat_window_s``, while the cache does not answer it, is paused."""
    repeat_window_s: float = Field(60.0, gt=0)
    """The window of ``repeat_limit`` in seconds."""
    burn_multiple: float = Field(20.0, gt=0)
    """An agent in a budget sprint that uses more than this multiple of its sprint share per hour within
    one hour is paused (a share of 1M tokens over a 10-day sprint is ~4.2k per hour)."""
    burn_min_tokens: int = Field(100_000, ge=0)
    """Burns below this many tokens an hour never trip the brake, whatever the share."""


class LimitsConfig(Section):
    """Rate limits per key, agent, team, model and provider, counted in the shared store (every replica
    admits from one count), and the runaway brake."""

    rules: list[LimitRule] = []
    """The limits; a request takes a ticket from every rule that applies to it, all or none."""
    lease_s: float = Field(600.0, gt=0)
    """A ``concurrency`` slot held longer than this (a crashed gateway's) is given back."""
    on_store_error: Literal["allow", "deny"] = "allow"
    """When the store cannot be reached: let requests through unlimited, or refuse them with 503."""
    provider_headers: ProviderHeadersConfig = ProviderHeadersConfig()
    """Provider-reported limits."""
    brake: BrakeConfig = BrakeConfig()
    """The runaway brake."""
