"""Schema of the ``cache`` policy section (the LLMCache of the seed, section 3)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.policy.core import Section


class CacheConfig(Section):
    enabled: bool = True
    scope: Literal["global", "team", "agent"] = "team"
    """Who may share an answer: everyone, one team, or one agent. Never wider than this."""
    ttl_s: float = Field(7200.0, gt=0)
    only_deterministic: bool = False
    """Cache only requests with temperature 0 or a seed (off by default, as peers do)."""
    max_entry_bytes: int = Field(1024 * 1024, ge=1024)
    endpoints: list[Literal["chat.completions", "completions", "embeddings"]] = [
        "chat.completions",
        "completions",
        "embeddings",
    ]
    lock_ttl_s: float = Field(30.0, gt=0)
    """How long a leader may hold the cross-replica singleflight lock before another takes over."""
    wait_timeout_s: float = Field(60.0, gt=0)
    """How long identical requests wait for the leader's answer before calling the provider themselves."""
    poll_interval_s: float = Field(0.05, gt=0)
    replay_chunk_chars: int = Field(24, ge=1)
    """Size of the content pieces when a cached answer is replayed as a stream."""
