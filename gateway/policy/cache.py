"""Schema of the ``cache`` policy section: repeated requests answered from the store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.policy.core import Section


class CacheConfig(Section):
    """The response cache: identical requests answered from the store, identical concurrent ones sent to
    the provider once (singleflight)."""

    enabled: bool = True
    """Turns the cache on or off."""
    scope: Literal["global", "team", "agent"] = "team"
    """Who may share an answer: everyone, one team, or one agent. Never wider than this. With ``agent``,
    keys without an agent let clients name the agent only with ``trust_agent_header: true``."""
    ttl_s: float = Field(7200.0, gt=0)
    """Entry lifetime in seconds; ``Cache-Control: max-age=N`` may ask for less, never more."""
    only_deterministic: bool = False
    """Cache only requests with ``temperature: 0`` or a ``seed`` (the sampling parameter); off by default,
    as in other gateways."""
    max_entry_bytes: int = Field(1024 * 1024, ge=1024)
    """Larger answers are not stored (a longer stream is relayed, not collected)."""
    endpoints: list[Literal["chat.completions", "completions", "embeddings", "messages", "responses"]] = [
        "chat.completions",
        "completions",
        "embeddings",
        "messages",
        "responses",
    ]
    """The endpoints whose answers are cached (``responses``: see the README's Responses API section for
    what is cached with stored state)."""
    lock_ttl_s: float = Field(30.0, gt=0)
    """How long a leader may hold the cross-replica singleflight lock before another takes over."""
    wait_timeout_s: float = Field(60.0, gt=0)
    """How long identical requests wait for the leader's answer before calling the provider themselves."""
    poll_interval_s: float = Field(0.05, gt=0)
    """How often a waiter in another process looks for the leader's stored answer."""
    replay_chunk_chars: int = Field(24, ge=1)
    """Size of the content pieces when a cached answer is replayed as a stream."""
    prompt_cache_key: bool = True
    """Send the provider a stable ``prompt_cache_key`` (a hash of the cache scope and the leading
    system messages) so repeated long prefixes land on its warm prompt cache and are billed at the
    cached-input rate. Independent of ``enabled``; sent on chat completions (and their batches) when
    the model and every fallback are on providers that take the key (``openai``); a client's own key
    is kept."""
    prompt_cache_min_tokens: int = Field(1024, ge=0)
    """Prefixes shorter than this (estimated tokens) get no key: the provider caches from 1,024."""
