"""The Anthropic Messages API, relayed as bytes: no translation and no litellm on this path.

The same pooled byte relay as the OpenAI provider; what differs is the layout: the key travels in
``x-api-key``, paths sit under ``{base_url}/v1/``, and the protocol headers a client sends
(``anthropic-version``, ``anthropic-beta``, ...) go through with the query string (``?beta=true``), while
its credentials and client telemetry (``x-stainless-*``, session ids) stay at the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.providers.base import ProviderRequest
from gateway.providers.openai import OpenAIProvider

_FORWARDED = frozenset({"content-type", "accept"})
"""Client headers sent on besides ``anthropic-*`` ones (never ``authorization`` or ``x-api-key``)."""
_RELAYED = ("retry-after", "request-id", "x-should-retry")
_RELAYED_PREFIX = "anthropic-ratelimit-"
"""The provider headers a client sees besides ``content-type``; cookies, organisation ids and the
like stay here."""


class AnthropicProvider(OpenAIProvider):
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
