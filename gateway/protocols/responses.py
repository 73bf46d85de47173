"""OpenAI's Responses API (``/v1/responses``): instructions and input items in, output items out.

What changes an answer is every field but those that only describe the call or its caller: streaming,
metadata, end-user ids, the provider's prompt-cache routing key, client metadata and the ids of input
items (the Codex CLI makes all of these fresh per session). ``store`` stays in the key: an answer made
with ``store: false`` cannot be continued by its id, so it is only served to callers who do not store
either. ``previous_response_id`` stays in: a stored response never changes, so an answer that continues
it is keyed by it. A request in a ``conversation`` is not cached: the conversation grows with every
answer. ``background: true`` is refused: its usage is known only long after the request, and the
gateway never lets tokens go unmetered.

Streams are the typed event sequence (``event:`` + ``data:``), without ``[DONE]``: the last event is
``response.completed`` (or ``.incomplete``, ``.failed``), which carries the whole response with usage.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError, InvalidRequest
from gateway.protocols.base import Body, Protocol, Usage
from gateway.protocols.responses_events import FINAL, ResponsesAssembler, event, replay_response
from gateway.redact import everywhere
from gateway.tokens import PER_MESSAGE, content_text, estimate_text
from gateway.validation import check_model, field_error, integer_field, optional

IGNORED = frozenset(
    {
        "stream",
        "stream_options",
        "metadata",
        "user",
        "prompt_cache_key",
        "prompt_cache_retention",
        "client_metadata",
        "safety_identifier",
        "service_tier",
    }
)
"""Fields that never change what the model answers: how it is delivered, who asks, provider routing."""
_ITEM_IDS = frozenset({"message", "function_call", "function_call_output", "reasoning"})
"""Input item types whose ``id`` only names the item (fresh per session in Codex), never its content."""
_ENDS = tuple(kind.encode() for kind in FINAL)


class Responses(Protocol):
    name = "responses"
    route = "/v1/responses"
    upstream_path = "responses"
    routable = True

    def validate(self, body: Body) -> None:
        check_model(body)
        optional(body, "stream", bool, "a boolean")
        optional(body, "instructions", str, "a string")
        optional(body, "tools", list, "an array")
        integer_field(body, "max_output_tokens", minimum=1)
        data = body.get("input")
        if data is None and body.get("previous_response_id") is None:
            raise field_error("input", "", missing=True)
        if data is not None and not isinstance(data, (str, list)):
            raise field_error("input", "must be a string or an array of input items")
        for i, item in enumerate(data if isinstance(data, list) else ()):
            if not isinstance(item, dict):
                raise field_error(f"input[{i}]", "must be an input item object")
        if body.get("background"):
            raise InvalidRequest(
                "Background responses are not served by this gateway: their usage is known only long "
                "after the request, so they could not be charged to a budget. Send the request without "
                "'background'.",
                param="background",
                code="background_not_supported",
            )

    def estimate(self, body: Body) -> int:
        """The instructions, every input item's text (tool calls and their outputs too), tools and the
        output format, with OpenAI's per-item framing."""
        total = 3 + (estimate_text(body["instructions"]) if isinstance(body.get("instructions"), str) else 0)
        data = body.get("input")
        for item in [{"content": data}] if isinstance(data, str) else data or ():
            if isinstance(item, dict):
                total += PER_MESSAGE + estimate_text(item_text(item))
        if body.get("tools"):
            total += estimate_text(str(body["tools"]))
        text = body.get("text")
        if isinstance(text, dict) and text.get("format"):
            total += estimate_text(str(text["format"]))
        return total

    def prompt(self, body: Body) -> Any:
        return {"instructions": body.get("instructions"), "input": body.get("input")}

    def answer_fields(self, body: Body) -> Body:
        fields = {k: v for k, v in body.items() if k not in IGNORED and k != "model"}
        fields["store"] = body.get("store", True) is not False  # absent means stored
        data = body.get("input")
        if isinstance(data, list):
            fields["input"] = [_without_id(item) for item in data]
        return fields

    def cacheable(self, body: Body) -> bool:
        """Not with ``conversation``: the provider appends every answer to it, so the same request means
        another context each time, and a hit would leave the conversation without its turn."""
        return body.get("conversation") is None and not body.get("background")

    def usage(self, answer: Any) -> Usage | None:
        """A response's ``usage``; for a stream, the final event's response carries it."""
        if not isinstance(answer, dict):
            return None
        if answer.get("type") in FINAL and isinstance(answer.get("response"), dict):
            answer = answer["response"]
        return responses_usage(answer.get("usage"))

    def answer_text(self, answer: Any) -> str:
        if not isinstance(answer, dict):
            return ""
        if isinstance(answer.get("delta"), str):  # output text, refusal and tool argument deltas
            return answer["delta"]  # type: ignore[no-any-return]
        output = answer.get("output")
        return (
            "".join(item_text(item) for item in output if isinstance(item, dict))
            if isinstance(output, list)
            else ""
        )

    def is_answer(self, answer: Any) -> bool:
        return isinstance(answer, dict) and answer.get("object") == "response"

    def counted(self, prompt_tokens: int, answer: Any) -> Usage | None:
        """Only a finished response is counted: one still being made has used nothing yet."""
        if not self.is_answer(answer) or answer.get("status") not in ("completed", "incomplete", "failed"):
            return None
        return super().counted(prompt_tokens, answer)

    def complete(self, answer: Any) -> bool:
        """A finished response (completed, or cut at ``max_output_tokens``) with output; never one made
        in the background."""
        return (
            self.is_answer(answer)
            and answer.get("status") in ("completed", "incomplete")
            and not answer.get("background")
            and bool(answer.get("output"))
        )

    def stream_end(self, data: bytes) -> bool:
        """The final response event (a cheap look first: only it and an odd delta hold its name)."""
        if not any(kind in data for kind in _ENDS):
            return False
        try:
            kind = orjson.loads(data).get("type")
        except (orjson.JSONDecodeError, AttributeError):
            return False
        return kind in FINAL

    def drop(self, event: Any, wants_usage: bool) -> bool:
        """The provider's ``error`` event: the gateway reports the failure in its own error event, so
        the client sees exactly one."""
        return isinstance(event, dict) and event.get("type") == "error"

    def assembler(self, max_bytes: int) -> ResponsesAssembler:
        return ResponsesAssembler(self, max_bytes)

    def replay(self, answer: Body, include_usage: bool, piece: int) -> list[bytes]:
        return replay_response(answer, piece)

    def stream_error(self, error: GatewayError) -> bytes:
        """The Responses API's own ``error`` event (secrets removed)."""
        failure = {"type": "error", "code": error.code, "message": error.message, "param": error.param}
        return everywhere().data(event(failure))


def responses_usage(usage: Any) -> Usage | None:
    """The Responses API's ``usage``: input and output tokens with their cached and reasoning details."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}
    output_details = usage.get("output_tokens_details")
    output_details = output_details if isinstance(output_details, dict) else {}
    return Usage(
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        int(details.get("cached_tokens") or 0),
        int(details.get("cache_write_tokens") or 0),
        int(output_details.get("reasoning_tokens") or 0),
    )


def item_text(item: dict[str, Any]) -> str:
    """The text an input or output item holds: message content, a tool's output, a call's name and
    arguments, a reasoning summary."""
    text, _ = content_text(item.get("content"))
    output = item.get("output")
    if isinstance(output, str):
        text += output
    elif isinstance(output, list):
        text += content_text(output)[0]
    for name in ("name", "arguments"):
        if isinstance(item.get(name), str):
            text += item[name]
    summary = item.get("summary")
    if isinstance(summary, list):
        text += content_text(summary)[0]
    return text


def _without_id(item: Any) -> Any:
    """An input item less its own id; a reasoning item keeps ``encrypted_content`` (the model reads it)."""
    if isinstance(item, dict) and item.get("type", "message") in _ITEM_IDS and "id" in item:
        return {k: v for k, v in item.items() if k != "id"}
    return item
