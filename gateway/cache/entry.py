"""What a cache entry holds, and the two ways it is produced and served.

An entry is always a complete non-streamed answer (the provider's JSON). A streamed miss is assembled
into that shape as it is relayed; a streamed hit is replayed from it as proper SSE chunks. So an entry
stored from a stream serves plain requests and the reverse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.sse import DONE

_CHUNK_OBJECT = {"chat.completions": "chat.completion.chunk", "completions": "text_completion"}


@dataclass(frozen=True, slots=True)
class CacheEntry:
    created: float
    body: bytes

    def encode(self) -> bytes:
        return orjson.dumps({"created": self.created}) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CacheEntry | None:
        """The stored entry, or None for bytes that are not one (then treated as absent and replaced)."""
        header, _, body = raw.partition(b"\n")
        try:
            return cls(float(orjson.loads(header)["created"]), body)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.created)


def complete(endpoint: str, answer: Any) -> bool:
    """Only finished answers are stored: every choice has a finish reason, embeddings have data."""
    if not isinstance(answer, dict) or "error" in answer:
        return False
    if endpoint == "embeddings":
        return bool(answer.get("data"))
    choices = answer.get("choices")
    return bool(choices) and all(isinstance(c, dict) and c.get("finish_reason") for c in choices)


class StreamAssembler:
    """Rebuilds the non-streamed answer from a relayed stream's chunks (a tap on the SSE relay).

    It gives up (``broken``) on a malformed or failed stream, and past ``max_bytes`` of collected text:
    such an answer could not be stored anyway, so a long stream is not held in memory for nothing."""

    def __init__(self, endpoint: str, max_bytes: int) -> None:
        self.endpoint = endpoint
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
            self.head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            self._merge(choice)
        if self._collected > self.max_bytes:
            self.broken = True
            self.choices.clear()

    def _merge(self, choice: dict[str, Any]) -> None:
        slot = self.choices.setdefault(int(choice.get("index", 0)), {"text": [], "tools": {}, "role": None})
        if choice.get("finish_reason"):
            slot["finish_reason"] = choice["finish_reason"]
        if self.endpoint == "completions":
            self._collect(slot["text"], choice.get("text") or "")
            return
        delta = choice.get("delta") or {}
        slot["role"] = slot["role"] or delta.get("role")
        if delta.get("content"):
            self._collect(slot["text"], delta["content"])
        if delta.get("refusal"):
            self._collect(slot.setdefault("refusal", []), delta["refusal"])
        for call in delta.get("tool_calls") or ():
            tool = slot["tools"].setdefault(int(call.get("index", 0)), {"arguments": []})
            for key in ("id", "type"):
                if call.get(key):
                    tool[key] = call[key]
            function = call.get("function") or {}
            if function.get("name"):
                tool["name"] = function["name"]
            self._collect(tool["arguments"], function.get("arguments") or "")

    def _collect(self, parts: list[str], text: str) -> None:
        parts.append(text)
        self._collected += len(text)

    def answer(self) -> dict[str, Any] | None:
        """The assembled answer, or None when the stream did not finish properly."""
        if not self.done or self.broken or not self.choices:
            return None
        choices = [self._choice(i, slot) for i, slot in sorted(self.choices.items())]
        kind = "text_completion" if self.endpoint == "completions" else "chat.completion"
        answer = {**self.head, "object": kind, "choices": choices}
        if self.usage:
            answer["usage"] = self.usage
        return answer if complete(self.endpoint, answer) else None

    def _choice(self, index: int, slot: dict[str, Any]) -> dict[str, Any]:
        text = "".join(slot["text"])
        finish = slot.get("finish_reason")
        if self.endpoint == "completions":
            return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        message: dict[str, Any] = {"role": slot["role"] or "assistant", "content": text or None}
        if "refusal" in slot:
            message["refusal"] = "".join(slot["refusal"])
        if slot["tools"]:
            message["tool_calls"] = [
                {
                    "id": tool.get("id"),
                    "type": tool.get("type", "function"),
                    "function": {"name": tool.get("name"), "arguments": "".join(tool["arguments"])},
                }
                for _, tool in sorted(slot["tools"].items())
            ]
        return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


def replay(endpoint: str, answer: dict[str, Any], include_usage: bool, piece: int) -> list[bytes]:
    """A stored answer as the SSE events a provider would have sent, ending with ``[DONE]``."""
    base = {k: answer[k] for k in ("id", "created", "model", "system_fingerprint") if k in answer}
    base["object"] = _CHUNK_OBJECT[endpoint]
    extra = {"usage": None} if include_usage else {}
    chunks: list[dict[str, Any]] = []

    def emit(index: int, body: dict[str, Any], finish: str | None = None) -> None:
        choice = {"index": index, **body, "logprobs": None, "finish_reason": finish}
        chunks.append({**base, "choices": [choice], **extra})

    for choice in answer.get("choices") or ():
        index = choice.get("index", 0)
        if endpoint == "completions":
            for part in _pieces(choice.get("text") or "", piece):
                emit(index, {"text": part})
            emit(index, {"text": ""}, choice.get("finish_reason"))
            continue
        message = choice.get("message") or {}
        emit(index, {"delta": {"role": message.get("role", "assistant"), "content": ""}})
        for part in _pieces(message.get("content") or "", piece):
            emit(index, {"delta": {"content": part}})
        for position, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            opening = {"index": position, "id": call.get("id"), "type": call.get("type", "function")}
            opening["function"] = {"name": function.get("name"), "arguments": ""}
            emit(index, {"delta": {"tool_calls": [opening]}})
            for part in _pieces(function.get("arguments") or "", piece):
                emit(index, {"delta": {"tool_calls": [{"index": position, "function": {"arguments": part}}]}})
        emit(index, {"delta": {}}, choice.get("finish_reason"))
    if include_usage and answer.get("usage"):
        chunks.append({**base, "choices": [], "usage": answer["usage"]})
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]
