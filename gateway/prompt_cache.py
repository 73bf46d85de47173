"""A stable ``prompt_cache_key`` per shared prefix, so the provider's own prompt cache stays warm.

OpenAI caches a prompt's leading tokens (1,024 or more, reused for a few minutes) and bills them at a
fraction of the input rate, but only on the machine that served them; ``prompt_cache_key`` routes
requests with the same key to the same machines. Agents of one team send the same long system prompt
again and again, so a key derived from who may share (the cache scope) and from that prefix turns their
repeats into cache reads. The key is a hash: it names no team, agent or prompt text.

The prefix is the leading system/developer messages (the Responses API's ``instructions``), which stay
the same across a conversation while its later turns change. A prefix under ``min_tokens`` gets no
key: the provider would not cache it anyway. A caller's own key is never replaced.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from gateway.policy.cache import CacheConfig
from gateway.protocols.chat import Chat
from gateway.tokens import estimate_text

SUPPORTED = frozenset({"openai"})
"""Provider types that take ``prompt_cache_key`` (Anthropic caches by ``cache_control`` breakpoints)."""
_LEADING = ("system", "developer")
CHAT, RESPONSES = Chat.name, "responses"
"""The protocols (by endpoint label) whose bodies take the key."""


def shared_prefix(endpoint: str, body: dict[str, Any]) -> Any:
    """The part of the prompt every request of a team's role repeats, or None."""
    if endpoint == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        leading = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in _LEADING:
                break
            leading.append(message)
        return leading or None
    if endpoint == RESPONSES:
        return body.get("instructions") or None
    return None


def _text_tokens(prefix: Any) -> int:
    if isinstance(prefix, str):
        return estimate_text(prefix)
    return sum(estimate_text(m["content"]) if isinstance(m.get("content"), str) else 0 for m in prefix)


def prompt_cache_key(endpoint: str, body: dict[str, Any], scope: str, min_tokens: int = 1024) -> str | None:
    """The key for this request's shared prefix within ``scope`` (None: nothing worth caching)."""
    prefix = shared_prefix(endpoint, body)
    if prefix is None or _text_tokens(prefix) < min_tokens:
        return None
    digest = hashlib.sha256(scope.encode() + b"\0" + orjson.dumps(prefix, option=orjson.OPT_SORT_KEYS))
    return "llmgw-" + digest.hexdigest()[:32]


def with_prompt_cache_key(
    config: CacheConfig, provider_type: str, endpoint: str, body: dict[str, Any], scope: str
) -> dict[str, Any]:
    """``body`` with a ``prompt_cache_key`` where the policy and the provider allow one (else ``body``
    itself, unchanged). The one call the pipeline makes before the body goes upstream."""
    if not config.prompt_cache_key or provider_type not in SUPPORTED or body.get("prompt_cache_key"):
        return body
    key = prompt_cache_key(endpoint, body, scope, config.prompt_cache_min_tokens)
    return body if key is None else {**body, "prompt_cache_key": key}
