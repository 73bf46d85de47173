"""Server-sent-event streams of the fake upstream, written chunk by chunk like the real API.

Chunks are written one ``resp.write`` at a time (optionally spaced by a delay) so a proxy under test can
be caught buffering, and a stream can be cut mid-way without ``[DONE]`` to exercise failure handling.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from aiohttp import web

from .upstream_bodies import FINGERPRINT, ChatAnswer, CompletionAnswer, new_id

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_WORDS = re.compile(r"\s*\S+\s*|\s+")
DONE = b"data: [DONE]\n\n"


def split_words(text: str) -> list[str]:
    """Pieces of ``text`` that concatenate back to it: one per word, whitespace attached."""
    return _WORDS.findall(text) or [text]


def _split_fixed(text: str, size: int = 6) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def chat_chunks(answer: ChatAnswer, include_usage: bool) -> Iterator[dict[str, Any]]:
    """``chat.completion.chunk`` events: role, content or tool-call pieces, finish, then usage if asked."""
    head: dict[str, Any] = {
        "id": answer.id,
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        head["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    first: dict[str, Any]
    pieces: list[dict[str, Any]]
    if answer.tool_name is not None:
        call = {
            "index": 0,
            "id": answer.tool_id,
            "type": "function",
            "function": {"name": answer.tool_name, "arguments": ""},
        }
        first = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
        pieces = [
            {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
            for part in _split_fixed(answer.tool_arguments)
        ]
    else:
        first = {"role": "assistant", "content": "", "refusal": None}
        pieces = [{"content": part} for part in split_words(answer.content or "")]
    for index in range(answer.n):
        yield chunk(index, first)
    for piece in pieces:
        for index in range(answer.n):
            yield chunk(index, piece)
    for index in range(answer.n):
        yield chunk(index, {}, answer.finish_reason)
    if include_usage:
        yield {**head, "choices": [], "usage": answer.usage}


def completion_chunks(answer: CompletionAnswer, include_usage: bool) -> Iterator[dict[str, Any]]:
    """Legacy ``text_completion`` stream events, one word per event, interleaved across choices."""
    head: dict[str, Any] = {
        "id": answer.id,
        "object": "text_completion",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": FINGERPRINT,
    }

    def chunk(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    split = [split_words(text) for text, _ in answer.choices]
    for position in range(max(map(len, split))):
        for index, pieces in enumerate(split):
            if position < len(pieces):
                yield chunk(index, pieces[position])
    for index, (_, finish) in enumerate(answer.choices):
        yield chunk(index, "", finish)
    if include_usage:
        yield {**head, "choices": [], "usage": answer.usage}


async def write_sse(
    request: web.Request,
    events: Iterable[dict[str, Any]],
    *,
    chunk_delay_s: float = 0.0,
    break_after: int | None = None,
    headers: dict[str, str] | None = None,
    linger_s: float = 0.0,
) -> web.StreamResponse:
    """Stream ``events`` then ``[DONE]``; with ``break_after`` cut the TCP connection after that many.
    ``linger_s`` holds the end of the body back after ``[DONE]``, as a distant provider's last bytes."""
    resp = web.StreamResponse(headers={**SSE_HEADERS, "x-request-id": new_id("req_"), **(headers or {})})
    await resp.prepare(request)
    for sent, event in enumerate(events):
        if sent == break_after:
            break
        if sent and chunk_delay_s > 0:
            await asyncio.sleep(chunk_delay_s)
        await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
    else:
        if break_after is None:
            await resp.write(DONE)
            if linger_s > 0:
                await asyncio.sleep(linger_s)
            await resp.write_eof()
            return resp
    # Closing (not aborting) flushes what was written, so the client gets a truncated chunked body.
    if request.transport is not None:
        request.transport.close()
    return resp
