"""OpenAI chat completions (``/v1/chat/completions``): messages in, a message (or a stream of deltas) out."""

from __future__ import annotations

from typing import Any

from gateway.protocols.base import Body
from gateway.protocols.openai import ChoicesAssembler, OpenAIProtocol, pieces, replay_choices
from gateway.tokens import PER_IMAGE, PER_MESSAGE, content_text, estimate_text
from gateway.validation import check_messages, integer, integer_field, optional

_UNBATCHABLE = ("tools", "functions", "tool_choice", "function_call", "logprobs", "audio", "modalities")


class Chat(OpenAIProtocol):
    name = "chat.completions"
    route = "/v1/chat/completions"
    upstream_path = "chat/completions"

    def validate(self, body: Body) -> None:
        super().validate(body)
        check_messages(body)
        integer_field(body, "max_tokens")  # no minimum in the spec: the provider judges
        integer_field(body, "max_completion_tokens")
        integer_field(body, "n", minimum=1)
        optional(body, "stream_options", dict, "an object")

    def estimate(self, body: Body) -> int:
        """Every message with OpenAI's per-message framing, images, tool calls, tools and schemas."""
        total = 3
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            text, images = content_text(message.get("content"))
            total += PER_MESSAGE + estimate_text(text) + images * PER_IMAGE
            if message.get("tool_calls"):
                total += estimate_text(str(message["tool_calls"]))
        for extra in ("tools", "functions", "response_format"):
            if body.get(extra):
                total += estimate_text(str(body[extra]))
        return total

    def prompt(self, body: Body) -> Any:
        return body.get("messages")

    def assembler(self, max_bytes: int) -> ChatAssembler:
        return ChatAssembler(self, max_bytes)

    def replay(self, answer: Body, include_usage: bool, piece: int) -> list[bytes]:
        return replay_choices(answer, "chat.completion.chunk", include_usage, piece, _events)

    def batch_task(self, stream: bool, body: Body) -> str | None:
        """A plain, non-streamed chat completion with one choice, no tools, text output, output limits
        that are positive ints (the batch asks for their sum) and a last message from the user may share
        a batch; its task is that message."""
        if stream or integer(body.get("n") or 1) != 1 or any(body.get(name) for name in _UNBATCHABLE):
            return None
        if not all(_plain_limit(body.get(name)) for name in ("max_tokens", "max_completion_tokens")):
            return None
        response_format = body.get("response_format")
        if response_format and not (
            isinstance(response_format, dict) and response_format.get("type") == "text"
        ):
            return None
        messages = body.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        if (
            not isinstance(last, dict)
            or last.get("role") != "user"
            or not isinstance(last.get("content"), str)
        ):
            return None
        return last["content"]  # type: ignore[no-any-return]


def _plain_limit(value: Any) -> bool:
    """No output limit, or one a batch can add up: a positive int (not ``2.0``, not 0 or below)."""
    return value is None or (type(value) is int and value > 0)


class ChatAssembler(ChoicesAssembler):
    kind = "chat.completion"

    def merge(self, slot: dict[str, Any], choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        slot["role"] = slot["role"] or delta.get("role")
        if delta.get("content"):
            self.collect(slot["text"], delta["content"])
        if delta.get("refusal"):
            self.collect(slot.setdefault("refusal", []), delta["refusal"])
        if isinstance(delta.get("annotations"), list):
            slot.setdefault("annotations", []).extend(delta["annotations"])
        for call in delta.get("tool_calls") or ():
            tool = slot["tools"].setdefault(int(call.get("index", 0)), {"arguments": []})
            for key in ("id", "type"):
                if call.get(key):
                    tool[key] = call[key]
            function = call.get("function") or {}
            if function.get("name"):
                tool["name"] = function["name"]
            self.collect(tool["arguments"], function.get("arguments") or "")

    def choice(self, index: int, slot: dict[str, Any]) -> dict[str, Any]:
        text = "".join(slot["text"])
        refusal = "".join(slot["refusal"]) if "refusal" in slot else None
        message: dict[str, Any] = {
            "role": slot["role"] or "assistant",
            "content": text or None,
            "refusal": refusal,  # required, as in the answer the provider would have sent
            "annotations": slot.get("annotations", []),
        }
        if slot["tools"]:
            message["tool_calls"] = [
                {
                    "id": tool.get("id"),
                    "type": tool.get("type", "function"),
                    "function": {"name": tool.get("name"), "arguments": "".join(tool["arguments"])},
                }
                for _, tool in sorted(slot["tools"].items())
            ]
        finish = slot.get("finish_reason")
        return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


def _events(choice: dict[str, Any], piece: int) -> list[tuple[dict[str, Any], str | None]]:
    message = choice.get("message") or {}
    out: list[tuple[dict[str, Any], str | None]] = [
        ({"delta": {"role": message.get("role", "assistant"), "content": ""}}, None)
    ]
    out += [({"delta": {"content": part}}, None) for part in pieces(message.get("content") or "", piece)]
    out += [({"delta": {"refusal": part}}, None) for part in pieces(message.get("refusal") or "", piece)]
    if message.get("annotations"):
        out.append(({"delta": {"annotations": message["annotations"]}}, None))
    for position, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        opening = {"index": position, "id": call.get("id"), "type": call.get("type", "function")}
        opening["function"] = {"name": function.get("name"), "arguments": ""}
        out.append(({"delta": {"tool_calls": [opening]}}, None))
        for part in pieces(function.get("arguments") or "", piece):
            out.append(
                ({"delta": {"tool_calls": [{"index": position, "function": {"arguments": part}}]}}, None)
            )
    out.append(({"delta": {}}, choice.get("finish_reason")))
    return out
