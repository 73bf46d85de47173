"""Relaying a provider's SSE stream to the client event by event, as the events arrive.

Events are split on blank lines so the gateway can watch them (usage, and later the cache's assembly)
and drop the usage chunk it asked for on the client's behalf; nothing is buffered beyond one event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import orjson

from gateway.context import Usage
from gateway.tokens import SCAN_LIMIT, answer_text, estimate_text

DONE = b"[DONE]"


class StreamTap(Protocol):
    """Something that watches a relayed stream (e.g. the cache assembling an entry)."""

    def on_data(self, data: bytes) -> None: ...


async def event_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The complete SSE events (without their blank line) of each read, from arbitrarily split bytes.

    Events that arrived together are handed over together, so the relay writes them in one call."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\r\n" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        *complete, buffer = buffer.split(b"\n\n")
        batch = [event for event in complete if event]
        if batch:
            yield batch
    if buffer.strip():
        yield [buffer.rstrip(b"\n")]


def event_data(event: bytes) -> bytes | None:
    """The ``data:`` payload of an event (multi-line data joined), or None for comments and the like."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].lstrip(b" ")
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


class UsageWatcher:
    """Reads ``usage`` from the stream and says which events to drop (the usage chunk the client
    did not ask for: the gateway always asks the provider for it, to account tokens)."""

    def __init__(self, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.usage: Usage | None = None
        self.finished = False
        self._start: list[str] = []
        """The start of what was generated (all the estimator reads) and the length of the whole,
        counted only if the provider never reports usage: memory does not grow with the stream."""
        self._start_chars = 0
        self._chars = 0
        self._streamed = False

    def keep(self, data: bytes) -> bool:
        if data == DONE:
            self.finished = True
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        usage = chunk.get("usage") if isinstance(chunk, dict) else None
        if isinstance(usage, dict):
            self.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
            self._start.clear()
            if not chunk.get("choices") and not self.client_wants_usage:
                return False
        elif self.usage is None:
            self._note(answer_text(chunk))
        return True

    def _note(self, text: str) -> None:
        self._streamed = True
        self._chars += len(text)
        room = SCAN_LIMIT - self._start_chars
        if room > 0 and text:
            self._start.append(text[:room])
            self._start_chars += min(room, len(text))

    def usage_or_count(self, prompt_estimate: int) -> Usage | None:
        """The provider's usage; else the prompt estimate plus the streamed text, counted; None if
        nothing was streamed."""
        if self.usage is not None or not self._streamed:
            return self.usage
        return Usage(prompt_estimate, estimate_text("".join(self._start), self._chars))
