"""Stream assembly and replay are inverse: what a provider streamed is stored whole and replayed as SSE."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.cache.entry import CacheEntry
from gateway.protocols import BY_NAME, CHAT, EMBEDDINGS
from gateway.sse import event_data

ANSWER: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello there, a fairly long answer to split in pieces.",
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": [1, 2]}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18},
}


def assemble(events: list[bytes], endpoint: str = "chat.completions") -> dict[str, Any] | None:
    tap = BY_NAME[endpoint].assembler(max_bytes=1024 * 1024)
    for event in events:
        data = event_data(event.rstrip(b"\n"))
        assert data is not None
        tap.on_data(data)
    return tap.answer()


def test_replay_then_assemble_round_trips() -> None:
    events = CHAT.replay(ANSWER, include_usage=True, piece=5)
    assert len(events) > 12 and events[-1] == b"data: [DONE]\n\n"
    assert assemble(events) == ANSWER


def test_usage_chunk_only_when_asked() -> None:
    without = CHAT.replay(ANSWER, include_usage=False, piece=5)
    assert not any(b'"usage":{' in e for e in without)
    rebuilt = assemble(without)
    assert rebuilt is not None and "usage" not in rebuilt


def test_completions_round_trip() -> None:
    answer = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": "some text here", "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
    }
    assert assemble(BY_NAME["completions"].replay(answer, True, 4), "completions") == answer


def test_unfinished_streams_are_not_answers() -> None:
    events = CHAT.replay(ANSWER, include_usage=True, piece=5)
    assert assemble(events[:-1]) is None, "no [DONE]"
    assert assemble(events[:3] + events[-1:]) is None, "no finish reason"
    assert assemble([b'data: {"error": {"message": "boom"}}\n\n', b"data: [DONE]\n\n"]) is None


def test_complete_and_entry_encoding() -> None:
    assert CHAT.complete(ANSWER)
    assert not CHAT.complete({"choices": [{"index": 0, "message": {}}]})
    assert not EMBEDDINGS.complete({"data": []})
    assert not CHAT.complete({"error": {"message": "x"}})
    entry = CacheEntry(123.5, orjson.dumps(ANSWER))
    assert CacheEntry.decode(entry.encode()) == entry


def _content_chunks(count: int, piece: str) -> list[bytes]:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": piece}}],
    }
    return [orjson.dumps(chunk)] * count


def test_assembler_gives_up_past_max_entry_bytes() -> None:
    tap = CHAT.assembler(max_bytes=4096)
    for data in _content_chunks(500, "0123456789"):  # 5,000 characters: the entry would be too large
        tap.on_data(data)
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    tap.on_data(orjson.dumps(finish))
    tap.on_data(b"[DONE]")
    assert tap.answer() is None, "an answer over max_entry_bytes is not stored"
    small = CHAT.assembler(max_bytes=4096)
    for data in [*_content_chunks(300, "0123456789"), orjson.dumps(finish), b"[DONE]"]:
        small.on_data(data)
    answer = small.answer()
    assert answer is not None and answer["choices"][0]["message"]["content"] == "0123456789" * 300


def test_assembler_memory_stays_bounded_on_a_long_stream() -> None:
    import tracemalloc

    chunks = _content_chunks(1, "x" * 1000)
    tap = CHAT.assembler(max_bytes=64 * 1024)
    tracemalloc.start()
    try:
        for _ in range(20_000):  # 20 MB of content
            tap.on_data(chunks[0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"the assembler kept {peak} bytes of a 20 MB stream"
