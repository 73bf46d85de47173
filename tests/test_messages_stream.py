"""Streamed Messages through the gateway: relayed event by event with thinking, signatures and tool
input intact, usage taken from ``message_start`` and ``message_delta``, a broken provider stream ending in
``event: error``, and a streamed cache hit replaying the same event sequence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson

from tests.conftest import GATEWAY_KEY
from tests.fakes.upstream_anthropic import AnthropicUpstream
from tests.messages_helpers import fake_anthropic, messages_gateway, sdk

__all__ = ["fake_anthropic", "messages_gateway"]

TOOLS = [
    {
        "name": "read_file",
        "description": "Read a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    }
]
HEADERS = {"x-api-key": GATEWAY_KEY, "anthropic-version": "2023-06-01"}


def _events(url: str, body: dict[str, Any]) -> tuple[httpx.Response, list[tuple[str, dict[str, Any]]]]:
    """The raw SSE events of a streamed request, as (event name, data)."""
    with httpx.stream("POST", f"{url}/v1/messages", headers=HEADERS, json={**body, "stream": True}) as reply:
        text = b"".join(reply.iter_bytes()).decode()
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], orjson.loads(lines["data"])))
    return reply, events


def test_a_stream_with_thinking_and_a_tool_call_reaches_the_sdk_intact(
    messages_gateway: Callable[..., str],
) -> None:
    url = messages_gateway()
    with sdk(url).messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=TOOLS,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "use read_file on README.md"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and "message_stop" in kinds
    thinking, call = final.content
    assert thinking.type == "thinking" and thinking.signature and thinking.thinking
    assert call.type == "tool_use" and call.name == "read_file" and isinstance(call.input, dict)
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0


def test_the_event_sequence_is_relayed_in_order(messages_gateway: Callable[..., str]) -> None:
    url = messages_gateway()
    reply, events = _events(
        url, {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert reply.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == "echo: hi"


def test_a_broken_provider_stream_ends_in_an_error_event(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway()
    fake_anthropic.break_stream_next(after_events=3)
    _, events = _events(
        url, {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    )
    name, data = events[-1]
    assert name == "error" and data["type"] == "error" and data["error"]["type"] == "overloaded_error"
    assert "message_stop" not in [n for n, _ in events]


def test_a_streamed_cache_hit_replays_the_same_events(
    messages_gateway: Callable[..., str], fake_anthropic: AnthropicUpstream
) -> None:
    url = messages_gateway(cache={"enabled": True})
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": TOOLS,
        "messages": [{"role": "user", "content": "use read_file on notes.txt"}],
    }
    first, live = _events(url, body)
    second, replayed = _events(url, body)
    assert first.headers["X-Cache"] == "MISS" and second.headers["X-Cache"] == "HIT"
    assert len(fake_anthropic.messages()) == 1

    def blocks(events: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        out: dict[int, dict[str, Any]] = {}
        for name, data in events:
            if name == "content_block_start":
                out[data["index"]] = dict(data["content_block"])
            elif name == "content_block_delta":
                delta, block = data["delta"], out[data["index"]]
                for field in ("text", "thinking", "signature", "partial_json"):
                    if field in delta:
                        block[field] = block.get(field, "") + delta[field]
        return [out[i] for i in sorted(out)]

    assert next(n for n, _ in replayed if n != "ping") == "message_start"
    assert blocks(replayed) == blocks(live)
    thinking = blocks(replayed)[0]
    assert thinking["type"] == "thinking" and thinking["signature"]
    stop = next(d for n, d in replayed if n == "message_delta")
    assert stop["delta"]["stop_reason"] == "tool_use"
    same_version = {"anthropic-version": HEADERS["anthropic-version"]}
    with sdk(url).messages.stream(**body, extra_headers=same_version) as stream:  # type: ignore[arg-type]
        again = stream.get_final_message()
    assert [b.type for b in again.content] == ["thinking", "tool_use"]
    assert len(fake_anthropic.messages()) == 1
