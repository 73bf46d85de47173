"""The Anthropic Messages API, relayed as bytes: no translation and no litellm on this path.

The same pooled byte relay as the OpenAI provider; what differs is the layout: the key travels in
``x-api-key``, paths sit under ``{base_url}/v1/``, and the protocol headers a client sends
(``anthropic-version``, ``anthropic-beta``, ...) go through with the query string (``?beta=true``), while
its credentials and client telemetry (``x-stainless-*``, session ids) stay at the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from gateway.providers.base import ProviderRequest, UpstreamReply
from gateway.providers.openai import OpenAIProvider

_FORWARDED = frozenset({"content-type", "accept"})
"""Client headers sent on besides ``anthropic-*`` ones (never ``authorization`` or ``x-api-key``)."""
_RELAYED = ("retry-after", "request-id", "x-should-retry")
_RELAYED_PREFIX = "anthropic-ratelimit-"
"""The provider headers a client sees besides ``content-type``; cookies, organisation ids and the
like stay here."""


_BREAKPOINT = {"type": "ephemeral"}


def with_breakpoints(raw: bytes) -> bytes:
    """A Messages body with prompt-cache breakpoints on its last tool and its system prompt, unless
    the client placed any itself (then it knows best) or there is neither."""
    if b"cache_control" in raw:
        return raw
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # the provider says what is wrong with it
    if not isinstance(body, dict):
        return raw
    changed = False
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[-1], dict):
        body["tools"] = [*tools[:-1], {**tools[-1], "cache_control": _BREAKPOINT}]
        changed = True
    system: Any = body.get("system")
    if isinstance(system, str) and system:
        body["system"] = [{"type": "text", "text": system, "cache_control": _BREAKPOINT}]
        changed = True
    elif isinstance(system, list) and system and isinstance(system[-1], dict):
        body["system"] = [*system[:-1], {**system[-1], "cache_control": _BREAKPOINT}]
        changed = True
    return orjson.dumps(body) if changed else raw


class AnthropicProvider(OpenAIProvider):
    async def send(self, request: ProviderRequest) -> UpstreamReply:
        if self.config.inject_cache_control and request.path == "messages":
            request = replace(request, body=with_breakpoints(request.body))
        return await super().send(request)

    def _auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self.config.api_key} if self.config.api_key else {}

    def _target(self, request: ProviderRequest) -> tuple[str, dict[str, str]]:
        url = f"{self._base}/v1/{request.path}" + (f"?{request.query}" if request.query else "")
        given = {k.lower(): v for k, v in (request.headers or {}).items()}
        headers = {
            name: value
            for name, value in given.items()
            if name in _FORWARDED or (name.startswith("anthropic-") and not name.startswith(_RELAYED_PREFIX))
        }
        headers.setdefault("content-type", "application/json")
        headers.setdefault("anthropic-version", self.config.anthropic_version)
        return url, headers

    def _relayed(self, headers: Mapping[str, str]) -> dict[str, str]:
        kept = {
            name.lower(): value for name, value in headers.items() if name.lower().startswith(_RELAYED_PREFIX)
        }
        kept.update({h: headers[h] for h in _RELAYED if h in headers})
        kept["content-type"] = headers.get("Content-Type", "application/json")
        return kept
