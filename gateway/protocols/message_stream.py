"""Anthropic Messages streams: assembled into the message they describe (for the cache), and a stored
message replayed as the same event sequence (``message_start``, ``content_block_*``, ``message_delta``,
``message_stop``), thinking blocks and their signatures intact."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.protocols.base import Body, Protocol
from gateway.protocols.openai import pieces

_DELTA_FIELDS = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "input_json_delta": "partial_json",
}
"""Delta type → the field it carries (and the block field it extends; ``partial_json`` → ``input``)."""
_EMPTY: dict[str, dict[str, Any]] = {
    "text": {"text": ""},
    "thinking": {"thinking": "", "signature": ""},
    "tool_use": {"input": {}},
}
"""How a block of each streamed kind opens; other kinds (``redacted_thinking``...) arrive whole."""


class MessageAssembler:
    """Rebuilds the message from its events; gives up on an ``error`` event, a malformed event or
    past ``max_bytes`` of collected text (such an answer is never stored)."""

    def __init__(self, protocol: Protocol, max_bytes: int) -> None:
        self.protocol = protocol
        self.max_bytes = max_bytes
        self.message: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.parts: dict[int, dict[str, list[str]]] = {}
        self.done = False
        self.broken = False
        self._collected = 0

    def on_data(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.broken = True
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start" and isinstance(event.get("message"), dict):
            self.message = dict(event["message"])
        elif kind == "content_block_start" and isinstance(event.get("content_block"), dict):
            self.blocks[int(event.get("index", 0))] = dict(event["content_block"])
        elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            self._delta(int(event.get("index", 0)), event["delta"])
        elif kind == "message_delta" and self.message is not None:
            self.message.update(event.get("delta") or {})
            if isinstance(event.get("usage"), dict):
                self.message["usage"] = {**(self.message.get("usage") or {}), **event["usage"]}
        elif kind == "message_stop":
            self.done = True
        elif kind in ("error", None):
            self.broken = True
        if self._collected > self.max_bytes:
            self.broken = True
            self.parts.clear()

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        field = _DELTA_FIELDS.get(str(delta.get("type")))
        text = delta.get(field) if field else None
        if not isinstance(text, str):
            return
        self.parts.setdefault(index, {}).setdefault(field or "", []).append(text)
        self._collected += len(text)

    def answer(self) -> Body | None:
        if not self.done or self.broken or self.message is None:
            return None
        content = []
        for index, block in sorted(self.blocks.items()):
            block = dict(block)
            for field, texts in self.parts.get(index, {}).items():
                joined = "".join(texts)
                if field == "partial_json":
                    try:
                        block["input"] = orjson.loads(joined) if joined else {}
                    except orjson.JSONDecodeError:
                        return None
                else:
                    block[field] = block.get(field, "") + joined
            content.append(block)
        answer = {**self.message, "content": content}
        return answer if self.protocol.complete(answer) else None


def replay_message(answer: Body, piece: int) -> list[bytes]:
    """A stored message as the events the provider would have sent, text cut in ``piece``-sized parts."""
    usage = answer.get("usage") or {}
    start = {**answer, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 0}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(answer.get("content") or ()):
        kind = block.get("type")
        opening = {**block, **_EMPTY[kind]} if kind in _EMPTY else block
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        for delta in _deltas(block, piece) if kind in _EMPTY else ():
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    stop = {"stop_reason": answer.get("stop_reason"), "stop_sequence": answer.get("stop_sequence")}
    events.append({"type": "message_delta", "delta": stop, "usage": usage})
    events.append({"type": "message_stop"})
    return [f"event: {e['type']}\ndata: ".encode() + orjson.dumps(e) + b"\n\n" for e in events]


def _deltas(block: dict[str, Any], piece: int) -> list[dict[str, Any]]:
    kind = block.get("type")
    if kind == "tool_use":
        text = orjson.dumps(block.get("input") or {}).decode()
        return [{"type": "input_json_delta", "partial_json": p} for p in pieces(text, piece)]
    if kind == "thinking":
        out = [{"type": "thinking_delta", "thinking": p} for p in pieces(block.get("thinking") or "", piece)]
        return [*out, {"type": "signature_delta", "signature": block.get("signature") or ""}]
    return [{"type": "text_delta", "text": p} for p in pieces(block.get("text") or "", piece)]
