"""Relaying a provider's SSE stream to the client event by event, as the events arrive.

Events are split on blank lines so the gateway can watch them (usage, and later the cache's assembly)
and drop the usage chunk it asked for on the client's behalf; nothing is buffered beyond one event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from gateway.protocols import Protocol, Usage
from gateway.tokens import SCAN_LIMIT, estimate_text


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
    """Reads usage from a relayed stream, says which events to drop (those the gateway asked for on
    the client's behalf, e.g. OpenAI's usage chunk) and when the stream is finished; what usage and the
    last event look like is the protocol's to say."""

    def __init__(self, protocol: Protocol, client_wants_usage: bool) -> None:
        self.protocol = protocol
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
        if self.protocol.stream_end(data):
            self.finished = True
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(event, dict):
            return True
        usage = self.protocol.usage(event)
        if usage is not None:
            self.usage = self.protocol.merge_usage(self.usage, usage)
            self._start.clear()
        elif self.usage is None:
            self._note(self.protocol.answer_text(event))
        return not self.protocol.drop(event, self.client_wants_usage)

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
