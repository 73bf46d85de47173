"""SSE framing: however the provider's bytes are split, the relay sees the same events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from gateway.protocols import CHAT
from gateway.sse import UsageWatcher, event_batches, event_data

EVENTS = [b'data: {"a": 1}', b": keep-alive comment", b'data: {"b": "x\\ny"}', b"data: [DONE]"]
STREAM = b"\n\n".join(EVENTS) + b"\n\n"


async def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield data[start:cut]
        start = cut
    yield data[start:]


def collect(data: bytes, cuts: list[int]) -> list[list[bytes]]:
    async def run() -> list[list[bytes]]:
        return [batch async for batch in event_batches(_chunks(data, cuts))]

    return asyncio.run(run())


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    batches = collect(STREAM, cuts)
    assert [event for batch in batches for event in batch] == EVENTS


@given(st.lists(st.integers(0, len(STREAM) * 2), max_size=12))
def test_crlf_framing(cuts: list[int]) -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    assert [e for batch in collect(crlf, cuts) for e in batch] == EVENTS


def test_events_read_together_are_handed_over_together() -> None:
    assert collect(STREAM, []) == [EVENTS]
    assert collect(b"data: 1\n\ndata: 2", []) == [[b"data: 1"], [b"data: 2"]], "a trailing event still counts"


def test_event_data() -> None:
    assert event_data(b"data: [DONE]") == b"[DONE]"
    assert event_data(b"data:x") == b"x"
    assert event_data(b"data: a\ndata: b") == b"a\nb"
    assert event_data(b": comment") is None


def test_usage_chunk_is_dropped_only_when_not_asked() -> None:
    usage = b'{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}'
    hidden, shown = UsageWatcher(CHAT, client_wants_usage=False), UsageWatcher(CHAT, client_wants_usage=True)
    assert not hidden.keep(usage) and shown.keep(usage)
    assert hidden.usage is not None and hidden.usage.total == 7
    assert hidden.keep(b'{"choices": [{"delta": {}}], "usage": null}')


def test_usage_watcher_memory_does_not_grow_with_the_stream() -> None:
    import tracemalloc

    import orjson

    from gateway.tokens import estimate_text

    piece = "word " * 200  # 1,000 characters a chunk
    data = orjson.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]})
    watcher = UsageWatcher(CHAT, client_wants_usage=False)
    tracemalloc.start()
    try:
        for _ in range(20_000):  # 20 MB streamed, the provider never reports usage
            assert watcher.keep(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"the watcher kept {peak} bytes of a 20 MB stream"
    counted = watcher.usage_or_count(5)
    assert counted is not None and counted.prompt_tokens == 5
    assert counted.completion_tokens == estimate_text(piece * 20_000), "the text is still counted"
