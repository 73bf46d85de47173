"""The Responses API's stream: the final response assembled from it, and a stored response replayed as it.

A stream's last event (``response.completed``, ``.incomplete`` or ``.failed``) carries the whole response
with its usage, so assembling is keeping that one event. Replaying emits the sequence a provider sends:
``response.created``, ``response.in_progress``, then per output item ``output_item.added``, its parts and
deltas (text, refusal, reasoning summary, function-call arguments) and ``output_item.done``, then the final
event; every event numbered by ``sequence_number``, with the stored item ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from gateway.protocols.openai import pieces

if TYPE_CHECKING:
    from gateway.protocols.base import Body, Protocol

FINAL = ("response.completed", "response.incomplete", "response.failed")
"""The event types that end a stream, each with the whole response."""
_FINAL_BYTES = tuple(kind.encode() for kind in FINAL)
_FINAL_OF = {"completed": FINAL[0], "incomplete": FINAL[1], "failed": FINAL[2]}
Event = dict[str, Any]


def event(body: Event) -> bytes:
    """One SSE event as the Responses API frames it: its type on the ``event:`` line, then its data."""
    return b"event: " + str(body["type"]).encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


class ResponsesAssembler:
    """Keeps the final event's response; gives up on an error, or past ``max_bytes``."""

    def __init__(self, protocol: Protocol, max_bytes: int) -> None:
        self.protocol = protocol
        self.max_bytes = max_bytes
        self.final: Body | None = None
        self.broken = False

    def on_data(self, data: bytes) -> None:
        if self.broken or not any(kind in data for kind in (*_FINAL_BYTES, b'"error"')):
            return
        if len(data) > self.max_bytes:
            self.broken = True
            return
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.broken = True
            return
        kind = parsed.get("type") if isinstance(parsed, dict) else None
        if kind == "error":
            self.broken = True
        elif kind in FINAL and isinstance(parsed.get("response"), dict):
            self.final = parsed["response"]

    def answer(self) -> Body | None:
        if self.broken or self.final is None:
            return None
        return self.final if self.protocol.complete(self.final) else None


def replay_response(answer: Body, piece: int) -> list[bytes]:
    """A stored response as the provider would have streamed it, text cut in ``piece``-character parts."""
    return [event({**body, "sequence_number": n}) for n, body in enumerate(_events(answer, piece))]


def _events(answer: Body, piece: int) -> Iterator[Event]:
    start = {**answer, "status": "in_progress", "output": [], "usage": None}
    start.update(completed_at=None, incomplete_details=None, error=None)
    yield {"type": "response.created", "response": start}
    yield {"type": "response.in_progress", "response": start}
    for index, item in enumerate(answer.get("output") or ()):
        if isinstance(item, dict):
            yield from _item(index, item, piece)
    kind = _FINAL_OF.get(str(answer.get("status")), FINAL[0])
    yield {"type": kind, "response": answer}


def _item(index: int, item: Event, piece: int) -> Iterator[Event]:
    yield {"type": "response.output_item.added", "output_index": index, "item": _started(item)}
    where = {"item_id": item.get("id"), "output_index": index}
    kind = item.get("type")
    if kind == "message":
        for position, part in enumerate(item.get("content") or ()):
            yield from _part(where, position, part, piece)
    elif kind == "function_call":
        arguments = str(item.get("arguments") or "")
        for text in pieces(arguments, piece):
            yield {"type": "response.function_call_arguments.delta", **where, "delta": text}
        yield {"type": "response.function_call_arguments.done", **where, "arguments": arguments}
    elif kind == "reasoning":
        for position, part in enumerate(item.get("summary") or ()):
            yield from _summary(where, position, part, piece)
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def _started(item: Event) -> Event:
    """``item`` as ``output_item.added`` shows it: in progress, nothing generated yet."""
    kind = item.get("type")
    if kind == "message":
        return {**item, "status": "in_progress", "content": []}
    if kind == "function_call":
        return {**item, "status": "in_progress", "arguments": ""}
    if kind == "reasoning":
        return {k: v for k, v in item.items() if k != "encrypted_content"} | {"summary": []}
    return item


def _part(where: Event, position: int, part: Any, piece: int) -> Iterator[Event]:
    at = {**where, "content_index": position}
    if not isinstance(part, dict):
        return
    field, name = ("refusal", "refusal") if part.get("type") == "refusal" else ("text", "output_text")
    text = str(part.get(field) or "")
    yield {"type": "response.content_part.added", **at, "part": {**part, field: ""}}
    extra: Event = {"logprobs": []} if name == "output_text" else {}
    for chunk in pieces(text, piece):
        yield {"type": f"response.{name}.delta", **at, "delta": chunk, **extra}
    yield {"type": f"response.{name}.done", **at, field: text, **extra}
    yield {"type": "response.content_part.done", **at, "part": part}


def _summary(where: Event, position: int, part: Any, piece: int) -> Iterator[Event]:
    at = {**where, "summary_index": position}
    text = str(part.get("text") or "") if isinstance(part, dict) else ""
    yield {
        "type": "response.reasoning_summary_part.added",
        **at,
        "part": {"type": "summary_text", "text": ""},
    }
    for chunk in pieces(text, piece):
        yield {"type": "response.reasoning_summary_text.delta", **at, "delta": chunk}
    yield {"type": "response.reasoning_summary_text.done", **at, "text": text}
    yield {
        "type": "response.reasoning_summary_part.done",
        **at,
        "part": {"type": "summary_text", "text": text},
    }
