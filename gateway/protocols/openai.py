"""What OpenAI's generating APIs (chat completions, completions) share: ``choices``, ``usage`` in
``prompt_tokens``/``completion_tokens``, streams ending in ``data: [DONE]`` that report usage when asked
with ``stream_options.include_usage``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.protocols.base import Body, Protocol, Usage
from gateway.tokens import content_text
from gateway.validation import check_model, optional

DONE = b"[DONE]"
IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "store", "request_id", "service_tier"})
"""Fields that never change what the model answers (streaming, usage reporting, end-user ids, metadata)."""


def openai_usage(usage: Any) -> Usage | None:
    """OpenAI's ``usage`` object, with its prompt-cache and reasoning details."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens")) or 0
    completion = usage.get("completion_tokens", usage.get("output_tokens")) or 0
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else 0
    reasoning = completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else 0
    return Usage(int(prompt), int(completion), int(cached or 0), 0, int(reasoning or 0))


def answer_fields(body: Body) -> Body:
    """Every field but the model and those that never change what the model answers."""
    return {k: v for k, v in body.items() if k not in IGNORED and k != "model"}


class OpenAIProtocol(Protocol):
    """The shared part of chat completions and completions."""

    routable = True

    def validate(self, body: Body) -> None:
        check_model(body)
        optional(body, "stream", bool, "a boolean")

    def answer_fields(self, body: Body) -> Body:
        return answer_fields(body)

    def usage(self, answer: Any) -> Usage | None:
        return openai_usage(answer.get("usage")) if isinstance(answer, dict) else None

    def answer_text(self, answer: Any) -> str:
        texts: list[str] = []
        choices = answer.get("choices") if isinstance(answer, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            if isinstance(choice.get("text"), str):
                texts.append(choice["text"])
            for message in (choice.get("message"), choice.get("delta")):
                if not isinstance(message, dict):
                    continue
                texts.append(content_text(message.get("content"))[0])
                for call in message.get("tool_calls") or ():
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict):
                        parts = (function.get("name"), function.get("arguments"))
                        texts.extend(part for part in parts if isinstance(part, str))
        return "".join(texts)

    def is_answer(self, answer: Any) -> bool:
        return isinstance(answer, dict) and "choices" in answer

    def complete(self, answer: Any) -> bool:
        if not isinstance(answer, dict) or "error" in answer:
            return False
        choices = answer.get("choices") or []
        return bool(choices) and all(isinstance(c, dict) and c.get("finish_reason") for c in choices)

    def stream_request(self, body: Body) -> Body | None:
        if self.wants_usage(body):
            return None
        options = body.get("stream_options") or {}
        return {**body, "stream_options": {**options, "include_usage": True}}

    def wants_usage(self, body: Body) -> bool:
        options = body.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    def stream_end(self, data: bytes) -> bool:
        return data == DONE

    def drop(self, event: Any, wants_usage: bool) -> bool:
        """The usage-only chunk the gateway asked for when the client did not."""
        return not wants_usage and not event.get("choices") and isinstance(event.get("usage"), dict)


class ChoicesAssembler:
    """Rebuilds the non-streamed answer from a stream's chunks, choice by choice.

    It gives up (``broken``) on a malformed or failed stream, and past ``max_bytes`` of collected text:
    such an answer could not be stored anyway, so a long stream is not held in memory for nothing.
    Subclasses merge one streamed choice and build one finished choice."""

    kind = ""
    """The ``object`` of the assembled answer."""

    def __init__(self, protocol: Protocol, max_bytes: int) -> None:
        self.protocol = protocol
        self.max_bytes = max_bytes
        self.head: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.done = False
        self.broken = False
        self._collected = 0
        """Characters of text collected: never more than the stored answer's bytes."""

    def on_data(self, data: bytes) -> None:
        if data == DONE:
            self.done = True
            return
        if self.broken:
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.broken = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self.broken = True
            return
        if not self.head:
            self.head = {k: chunk[k] for k in HEAD if k in chunk}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            slot = self.choices.setdefault(
                int(choice.get("index", 0)), {"text": [], "tools": {}, "role": None}
            )
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
            self.merge(slot, choice)
        if self._collected > self.max_bytes:
            self.broken = True
            self.choices.clear()

    def merge(self, slot: dict[str, Any], choice: dict[str, Any]) -> None:
        raise NotImplementedError

    def choice(self, index: int, slot: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def collect(self, parts: list[str], text: str) -> None:
        parts.append(text)
        self._collected += len(text)

    def answer(self) -> dict[str, Any] | None:
        if not self.done or self.broken or not self.choices:
            return None
        choices = [self.choice(i, slot) for i, slot in sorted(self.choices.items())]
        answer = {**self.head, "object": self.kind, "choices": choices}
        if self.usage:
            answer["usage"] = self.usage
        return answer if self.protocol.complete(answer) else None


HEAD = ("id", "created", "model", "system_fingerprint")
ChoiceEvents = Callable[[dict[str, Any], int], list[tuple[dict[str, Any], str | None]]]
"""(a stored choice, piece size) → its stream parts: (choice body, finish reason)."""


def replay_choices(
    answer: Body, chunk_object: str, include_usage: bool, piece: int, events: ChoiceEvents
) -> list[bytes]:
    """A stored answer as the SSE chunks a provider would have sent, ending with ``[DONE]``."""
    base = {k: answer[k] for k in HEAD if k in answer}
    base["object"] = chunk_object
    extra = {"usage": None} if include_usage else {}
    chunks: list[dict[str, Any]] = []
    for choice in answer.get("choices") or ():
        index = choice.get("index", 0)
        for body, finish in events(choice, piece):
            part = {"index": index, **body, "logprobs": None, "finish_reason": finish}
            chunks.append({**base, "choices": [part], **extra})
    if include_usage and answer.get("usage"):
        chunks.append({**base, "choices": [], "usage": answer["usage"]})
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]
