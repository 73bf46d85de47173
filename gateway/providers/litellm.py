"""Providers that are not OpenAI-compatible (Anthropic, Gemini, Bedrock, Ollama, ...) through litellm.

litellm costs about 2 s and 250 MB to import, so this module is imported only when the policy declares
such a provider, and litellm itself only in ``start``. Answers are converted to OpenAI's wire format so
every later stage sees the same bytes it would get from an OpenAI-compatible upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.providers.base import Provider, ProviderRequest, UpstreamReply

_ROUTES = {"chat/completions": "acompletion", "completions": "atext_completion", "embeddings": "aembedding"}


class LiteLLMProvider(Provider):
    _litellm: Any = None

    async def start(self) -> None:
        import litellm

        litellm.drop_params = True
        litellm.telemetry = False
        self._litellm = litellm

    async def send(self, request: ProviderRequest) -> UpstreamReply:
        call = _ROUTES.get(request.path)
        if call is None or request.method != "POST":
            return _error(404, f"provider {self.name} (litellm) does not serve /v1/{request.path}")
        params = orjson.loads(request.body)
        params["model"] = self.config.litellm_prefix + params["model"]
        if self.config.api_key:
            params["api_key"] = self.config.api_key
        if self.config.base_url:
            params["api_base"] = self.config.base_url
        params["timeout"] = self.config.timeout_s
        params["num_retries"] = 0  # retries and fallbacks belong to the gateway
        try:
            result = await getattr(self._litellm, call)(**params)
        except Exception as exc:  # litellm maps provider errors to exceptions carrying a status code
            status = int(getattr(exc, "status_code", 502) or 502)
            return _error(status, f"provider {self.name}: {type(exc).__name__}")
        if request.stream and request.path != "embeddings":
            return UpstreamReply(200, {"content-type": "text/event-stream"}, chunks=_sse(result))
        return UpstreamReply(200, {"content-type": "application/json"}, body=_json(result))


async def _sse(chunks: Any) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield b"data: " + _json(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"


def _json(obj: Any) -> bytes:
    if hasattr(obj, "model_dump"):
        return orjson.dumps(obj.model_dump(exclude_none=True, warnings=False))
    return orjson.dumps(obj)


def _error(status: int, message: str) -> UpstreamReply:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    payload = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return UpstreamReply(status, {"content-type": "application/json"}, body=orjson.dumps(payload))
