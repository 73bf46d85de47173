"""Providers that are not OpenAI-compatible (Anthropic, Gemini, Bedrock, Ollama, ...) through litellm.

litellm costs about 2 s and 250 MB to import, so this module is imported only when the policy declares
such a provider, and litellm itself only in ``start``. Answers are converted to OpenAI's wire format so
every later stage sees the same bytes it would get from an OpenAI-compatible upstream.

litellm must work without internet egress: its model price map is read from the copy it ships, and token
counting uses the tiktoken encodings it bundles instead of downloading them (or a HuggingFace tokenizer)
on the first call, which would fail every Anthropic call on a machine that cannot reach the internet.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from importlib import resources
from typing import Any

import orjson

from gateway.providers.base import Provider, ProviderRequest, UpstreamReply

_MESSAGE_CHARS = 500
_ROUTES = {"chat/completions": "acompletion", "completions": "atext_completion", "embeddings": "aembedding"}


class LiteLLMProvider(Provider):
    _litellm: Any = None

    async def start(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # read at import: no fetch of it
        import litellm

        # Before the first token count (an operator's own setting wins).
        tokenizers = resources.files(litellm) / "litellm_core_utils" / "tokenizers"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tokenizers))

        litellm.drop_params = True
        litellm.telemetry = False
        litellm.disable_hf_tokenizer_download = True  # count with the bundled tiktoken encodings
        self._litellm = litellm

    async def close(self) -> None:
        """Stop litellm's background logging task, which would otherwise outlive this event loop."""
        if self._litellm is not None:
            from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

            await GLOBAL_LOGGING_WORKER.stop()

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
            return self._failure(exc)
        if request.stream and request.path != "embeddings":
            return UpstreamReply(200, {"content-type": "text/event-stream"}, chunks=_sse(result))
        return UpstreamReply(200, {"content-type": "application/json"}, body=_json(result))

    def _failure(self, exc: Exception) -> UpstreamReply:
        """The provider's status and ``Retry-After``, and a message naming the cause without the key."""
        status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) and 400 <= status <= 599 else 502
        cause = str(exc)
        for secret in self.secrets:
            cause = cause.replace(secret, "[redacted]")
        cause = (cause.strip().splitlines() or [""])[0][:_MESSAGE_CHARS]  # not litellm's traceback
        reply = _error(status, f"provider {self.name}: {type(exc).__name__}: {cause}")
        retry_after = _header(exc, "retry-after")
        if retry_after is not None:
            reply.headers["retry-after"] = retry_after
        return reply


def _header(exc: Exception, name: str) -> str | None:
    """A header of the provider's error reply: litellm keeps them on the exception or its response."""
    response = getattr(exc, "response", None)
    for headers in (getattr(exc, "litellm_response_headers", None), getattr(response, "headers", None)):
        if isinstance(headers, Mapping):
            value = next((str(v) for k, v in headers.items() if str(k).lower() == name), None)
            if value is not None:
                return value
    return None


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
