"""Reading a streamed batch reply: content deltas to the splitter, answers out as they complete.

The batcher asks the provider to stream the batch (with ``include_usage``) so that each member's answer
can leave the moment its JSON string is complete (:class:`~gateway.batcher.stream_split.StreamSplitter`)
instead of after the whole reply. What the stream ends with (the whole content, the usage, the reply's
``id``/``model``/``created``) is returned for the strict parse and the exact usage shares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.batcher.stream_split import StreamSplitter
from gateway.context import Usage
from gateway.protocols import Protocol
from gateway.providers import UpstreamReply
from gateway.sse import event_batches, event_data

DONE = b"[DONE]"


@dataclass(slots=True)
class StreamedReply:
    content: str = ""
    usage: Usage | None = None
    head: dict[str, Any] = field(default_factory=dict)
    """``id``, ``model``, ``created``, ``system_fingerprint`` of the reply's chunks."""
    complete: bool = False
    """``[DONE]`` arrived: the content is whole."""


async def read_stream(
    reply: UpstreamReply,
    protocol: Protocol,
    splitter: StreamSplitter,
    on_answer: Callable[[str, str, dict[str, Any]], None],
) -> StreamedReply:
    """Feed the stream's content to ``splitter``; ``on_answer(task id, answer, head)`` per answer."""
    out = StreamedReply()
    parts: list[str] = []
    assert reply.chunks is not None
    try:
        async for events in event_batches(reply.chunks):
            for event in events:
                data = event_data(event)
                if data is None:
                    continue
                if data == DONE:
                    out.complete = True
                    continue
                _take(data, protocol, out, parts, splitter, on_answer)
    finally:
        await reply.close()
    out.content = "".join(parts)
    return out


def _take(
    data: bytes,
    protocol: Protocol,
    out: StreamedReply,
    parts: list[str],
    splitter: StreamSplitter,
    on_answer: Callable[[str, str, dict[str, Any]], None],
) -> None:
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(chunk, dict):
        return
    if not out.head:
        out.head = {k: chunk.get(k) for k in ("id", "model", "created", "system_fingerprint")}
    if (usage := protocol.usage(chunk)) is not None:
        out.usage = usage
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(text, str) and text:
            parts.append(text)
            for task, answer in splitter.feed(text):
                on_answer(task, answer, out.head)
