"""``python -m benchmarks.redaction``: what redacting every relayed SSE event costs the stream relay.

Runs the relay's per-event work (split into events, read the data, watch usage, join) over a stream of
one-token chat chunks as a provider sends them, with and without the redaction check, for a key the
size of OpenAI's project keys. Prints microseconds per event for both and the difference.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections.abc import AsyncIterator

import orjson

from gateway.protocols import CHAT
from gateway.redact import Redactor
from gateway.sse import UsageWatcher, event_batches, event_data

EVENTS = 20_000
KEY = "sk-proj-" + "".join(random.Random(7).choices(string.ascii_letters + string.digits + "_-", k=156))


def _chunks() -> list[bytes]:
    head = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    words = ["def", "add(a,", "b):\n", "    return", "a", "+", "b", "# naïve", '"sum"', "of", "50%", "more"]
    return [
        b"data: "
        + orjson.dumps({**head, "choices": [{"index": 0, "delta": {"content": words[i % len(words)] + " "}}]})
        + b"\n\n"
        for i in range(EVENTS)
    ] + [b"data: [DONE]\n\n"]


async def _relay(chunks: list[bytes], clean: Redactor | None) -> float:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    watcher = UsageWatcher(CHAT, False)
    started = time.perf_counter()
    async for batch in event_batches(source()):
        out = []
        for event in batch:
            if clean is not None:
                event = clean.data(event)
            data = event_data(event)
            if data is not None and not watcher.keep(data):
                continue
            out.append(event)
        b"\n\n".join(out)
    return time.perf_counter() - started


def main() -> None:
    chunks, clean = _chunks(), Redactor([KEY])
    runs: dict[str, list[float]] = {"plain": [], "redacted": []}
    for _ in range(5):  # interleaved, best of five
        runs["plain"].append(asyncio.run(_relay(chunks, None)))
        runs["redacted"].append(asyncio.run(_relay(chunks, clean)))
    plain, redacted = (min(v) / EVENTS * 1e6 for v in runs.values())
    extra = redacted - plain
    print(f"relay per event: {plain:.2f} us plain, {redacted:.2f} us with redaction (+{extra:.2f} us)")


if __name__ == "__main__":
    main()
