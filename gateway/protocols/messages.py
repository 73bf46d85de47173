"""The Anthropic Messages API (``/v1/messages``, ``/v1/messages/count_tokens``), relayed as bytes.

What Claude Code and the ``anthropic`` SDK speak. The body goes to a ``type: anthropic`` provider as
sent (tools, ``thinking``, ``cache_control``...), with the client's ``anthropic-*`` headers and query
string. Usage counts every token the provider processed: Anthropic's ``input_tokens`` leaves out the
prompt-cache reads and writes, so the prompt is ``input + cache_creation + cache_read``. Errors are
Anthropic's ``{"type": "error", "error": {"type", "message"}}`` so the SDK raises the right class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import GatewayError, InvalidRequest
from gateway.protocols.base import Body, Protocol, Usage
from gateway.protocols.message_stream import MessageAssembler, replay_message
from gateway.redact import everywhere
from gateway.tokens import estimate_text
from gateway.validation import check_messages, check_model, field_error, integer_field, optional

PROVIDER_TYPE = "anthropic"
IGNORED = frozenset({"stream", "metadata", "model"})
"""Fields that identify the caller or shape delivery, not the answer (``metadata.user_id`` holds
Claude Code's session id): a second session asking the same is a cache hit."""
KEYED_HEADERS = ("anthropic-version", "anthropic-beta")
"""Client headers that change what the model does, so they are part of the cache key."""
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for a status (the SDK picks its exception class from the status)."""
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_usage(usage: Any) -> Usage | None:
    """Anthropic's ``usage``: prompt tokens are fresh input plus cache writes plus cache reads."""
    if not isinstance(usage, dict):
        return None
    fresh, output = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
    write, read = usage.get("cache_creation_input_tokens") or 0, usage.get("cache_read_input_tokens") or 0
    return Usage(int(fresh) + int(write) + int(read), int(output), int(read), int(write))


class AnthropicProtocol(Protocol):
    """What both Messages routes share: Anthropic's errors, headers and a ``type: anthropic`` provider."""

    provider_type = PROVIDER_TYPE
    keeps_query = True

    def upstream_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The client's protocol headers the provider gets (``anthropic-version``, ``anthropic-beta``...);
        the provider itself drops anything else."""
        kept = {k.lower(): v for k, v in headers.items() if k.lower().startswith("anthropic-")}
        kept["content-type"] = "application/json"
        return kept

    def cache_fields(self, body: Body, headers: Mapping[str, str] | None) -> Body:
        fields = self.answer_fields(body)
        for name in KEYED_HEADERS:
            if headers and name in headers:
                fields[f"header:{name}"] = headers[name]
        return fields

    def answer_fields(self, body: Body) -> Body:
        return {k: v for k, v in body.items() if k not in IGNORED}

    def validate(self, body: Body) -> None:
        check_model(body)
        check_messages(body)
        optional(body, "tools", list, "an array")

    def estimate(self, body: Body) -> int:
        """The system prompt, the messages and the tools, as the JSON text they are."""
        parts = (body.get(name) for name in ("system", "messages", "tools"))
        return 3 + sum(
            estimate_text(p if isinstance(p, str) else orjson.dumps(p).decode()) for p in parts if p
        )

    def prompt(self, body: Body) -> Any:
        return {"system": body.get("system"), "messages": body.get("messages")}

    def error_body(self, error: GatewayError) -> Body:
        return {"type": "error", "error": {"type": error_type(error.status), "message": error.message}}

    def stream_error(self, error: GatewayError) -> bytes:
        return b"event: error\ndata: " + everywhere().data(orjson.dumps(self.error_body(error))) + b"\n\n"


class Messages(AnthropicProtocol):
    name = "messages"
    route = "/v1/messages"
    upstream_path = "messages"
    routable = True

    def validate(self, body: Body) -> None:
        super().validate(body)
        if "max_tokens" not in body:
            raise field_error("max_tokens", "is required", missing=True)
        integer_field(body, "max_tokens", minimum=1)
        optional(body, "stream", bool, "a boolean")

    def usage(self, answer: Any) -> Usage | None:
        if not isinstance(answer, dict):
            return None
        if answer.get("type") == "message_start":
            answer = answer.get("message")
            if not isinstance(answer, dict):
                return None
        return anthropic_usage(answer.get("usage"))

    def merge_usage(self, previous: Usage | None, new: Usage) -> Usage:
        """``message_delta`` may report only ``output_tokens``: keep ``message_start``'s input side."""
        if previous is None or new.prompt_tokens:
            return new
        return Usage(
            previous.prompt_tokens,
            new.completion_tokens,
            previous.cached_input_tokens,
            previous.cache_write_tokens,
        )

    def answer_text(self, answer: Any) -> str:
        if not isinstance(answer, dict):
            return ""
        delta = answer.get("delta")
        if isinstance(delta, dict):
            return "".join(delta.get(k) or "" for k in ("text", "thinking", "partial_json"))
        texts: list[str] = []
        for block in answer.get("content") or ():
            if isinstance(block, dict):
                texts.append(block.get("text") or block.get("thinking") or "")
                if block.get("type") == "tool_use":
                    texts.append(orjson.dumps(block.get("input")).decode())
        return "".join(texts)

    def is_answer(self, answer: Any) -> bool:
        return isinstance(answer, dict) and answer.get("type") == "message"

    def complete(self, answer: Any) -> bool:
        return self.is_answer(answer) and bool(answer.get("stop_reason"))

    def stream_end(self, data: bytes) -> bool:
        """``message_stop``, or the provider's own ``error`` event: the client has been told. Read from
        the event's start (its ``type`` comes first), so the many delta events are not parsed twice."""
        head = data[:40].replace(b" ", b"")
        return head.startswith((b'{"type":"message_stop"', b'{"type":"error"'))

    def assembler(self, max_bytes: int) -> MessageAssembler:
        return MessageAssembler(self, max_bytes)

    def replay(self, answer: Body, include_usage: bool, piece: int) -> list[bytes]:
        return replay_message(answer, piece)


class CountTokens(AnthropicProtocol):
    """``/v1/messages/count_tokens``: identified, routed to the provider, never cached or charged."""

    name = "messages.count_tokens"
    route = "/v1/messages/count_tokens"
    upstream_path = "messages/count_tokens"
    streams = False
    generates = False

    def estimate(self, body: Body) -> int:
        return 0  # nothing is generated and the provider bills nothing: nothing to reserve

    def usage(self, answer: Any) -> Usage | None:
        return Usage() if isinstance(answer, dict) and "input_tokens" in answer else None

    def answer_text(self, answer: Any) -> str:
        return ""

    def is_answer(self, answer: Any) -> bool:
        return isinstance(answer, dict) and "input_tokens" in answer

    def complete(self, answer: Any) -> bool:
        return self.is_answer(answer)

    def stream_end(self, data: bytes) -> bool:
        return True

    def assembler(self, max_bytes: int) -> MessageAssembler:
        raise InvalidRequest("count_tokens does not stream.")

    def replay(self, answer: Body, include_usage: bool, piece: int) -> list[bytes]:
        raise InvalidRequest("count_tokens does not stream.")


__all__ = ["CountTokens", "Messages", "anthropic_usage", "error_type"]
