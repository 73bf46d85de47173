"""The fake Anthropic API against the official ``anthropic`` SDK: if the SDK accepts its answers (plain,
streamed, tools, thinking, token counting, prompt caching) and raises the right exception for each error,
the fake is a faithful stand-in for the real API in the gateway's tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes.anthropic_bodies import CACHE_MIN_TOKENS
from tests.fakes.upstream_anthropic import AnthropicUpstream, serve_anthropic

KEY = "sk-ant-test-0123456789"
MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "hello claude"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def fake() -> Iterator[tuple[AnthropicUpstream, str]]:
    with serve_anthropic(KEY) as served:
        yield served


@pytest.fixture
def client(fake: tuple[AnthropicUpstream, str]) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=fake[1], max_retries=0) as sdk:
        yield sdk


def test_a_plain_answer_has_text_and_usage(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "echo: hello claude"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.model == MODEL
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 5
    assert message.usage.cache_creation_input_tokens == 0 and message.usage.cache_read_input_tokens == 0


def test_a_stream_sends_the_real_event_sequence(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        events = [event.type for event in stream]
        message = stream.get_final_message()
    assert message.content[0].text == "echo: hello claude"  # type: ignore[union-attr]
    assert message.usage.output_tokens == 5 and message.stop_reason == "end_turn"
    # the SDK drops pings; it adds a "text" event per text delta
    raw = [e for e in events if e != "text"]
    assert raw[:2] == ["message_start", "content_block_start"] and raw[-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert set(raw[2:-3]) == {"content_block_delta"}


def test_the_stream_is_event_and_data_lines_with_a_ping(fake: tuple[AnthropicUpstream, str]) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = {"model": MODEL, "max_tokens": 50, "messages": HELLO, "stream": True}
    reply = httpx.post(fake[1] + "/v1/messages?beta=true", json=body, headers=headers)
    assert reply.headers["content-type"].startswith("text/event-stream") and reply.headers["request-id"]
    frames = reply.text.split("\n\n")
    assert frames[0].startswith("event: message_start\ndata: {")
    assert [f.split("\n")[0] for f in frames[1:3]] == ["event: content_block_start", "event: ping"]
    assert frames[-2].startswith("event: message_stop") and frames[-1] == ""


def test_a_tool_is_called_then_its_result_answered(client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "use get_weather for Paris"}]
    with client.messages.stream(model=MODEL, max_tokens=100, messages=ask, tools=[WEATHER]) as stream:
        call = stream.get_final_message()
    assert call.stop_reason == "tool_use"
    use = call.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "fake"}
    turns: list[Any] = [
        *ask,
        {"role": "assistant", "content": [use.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    answer = client.messages.create(model=MODEL, max_tokens=100, messages=turns, tools=[WEATHER])
    assert answer.stop_reason == "end_turn" and answer.content[0].text == "echo: sunny"  # type: ignore[union-attr]


def test_a_tool_use_without_its_result_is_rejected(client: anthropic.Anthropic) -> None:
    turns: list[Any] = [
        *HELLO,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}}]},
        {"role": "user", "content": "go on"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="toolu_1"):
        client.messages.create(model=MODEL, max_tokens=100, messages=turns)


def test_thinking_comes_first_with_a_signature_that_must_be_replayed_intact(
    client: anthropic.Anthropic,
) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 2048}
    with client.messages.stream(model=MODEL, max_tokens=4096, messages=HELLO, thinking=thinking) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    thought = message.content[0]
    assert thought.type == "thinking" and thought.thinking and thought.signature
    turns: list[Any] = [
        *HELLO,
        {"role": "assistant", "content": [thought.model_dump()]},
        {"role": "user", "content": "more"},
    ]
    client.messages.create(model=MODEL, max_tokens=4096, messages=turns, thinking=thinking)
    turns[1]["content"][0]["signature"] = "forged"
    with pytest.raises(anthropic.BadRequestError, match="signature"):
        client.messages.create(model=MODEL, max_tokens=4096, messages=turns, thinking=thinking)
    with pytest.raises(anthropic.BadRequestError, match="budget_tokens"):
        client.messages.create(model=MODEL, max_tokens=1000, messages=HELLO, thinking=thinking)


def test_count_tokens_counts_what_a_message_bills(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model=MODEL, messages=HELLO, tools=[WEATHER])
    message = client.messages.create(model=MODEL, max_tokens=10, messages=HELLO, tools=[WEATHER])
    assert counted.input_tokens == message.usage.input_tokens > 0


def test_a_cached_prefix_is_written_once_then_read(client: anthropic.Anthropic) -> None:
    system: Any = [
        {"type": "text", "text": "rules " * CACHE_MIN_TOKENS, "cache_control": {"type": "ephemeral"}}
    ]
    first = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HELLO).usage
    again = client.messages.create(model=MODEL, max_tokens=10, system=system, messages=HELLO).usage
    other = client.messages.create(
        model="claude-haiku-4-5", max_tokens=10, system=system, messages=HELLO
    ).usage
    assert first.cache_creation_input_tokens and first.cache_creation_input_tokens >= CACHE_MIN_TOKENS
    assert first.cache_read_input_tokens == 0
    assert (
        first.cache_creation
        and first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    )
    assert again.cache_read_input_tokens == first.cache_creation_input_tokens
    assert again.cache_creation_input_tokens == 0 and again.input_tokens == first.input_tokens
    assert other.cache_creation_input_tokens == first.cache_creation_input_tokens  # a cache is per model
    small: Any = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        usage = client.messages.create(model=MODEL, max_tokens=10, system=small, messages=HELLO).usage
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0  # under the minimum


def test_errors_raise_the_sdks_exception_classes(
    fake: tuple[AnthropicUpstream, str], client: anthropic.Anthropic
) -> None:
    upstream, url = fake
    wrong = anthropic.Anthropic(api_key="sk-ant-wrong", base_url=url, max_retries=0)
    with wrong, pytest.raises(anthropic.AuthenticationError) as auth:
        wrong.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert auth.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": auth.value.request_id,
    }
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        client.post("/v1/messages", body={"model": MODEL, "messages": HELLO}, cast_to=httpx.Response)
    upstream.fail_next(429, retry_after=7)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert limited.value.response.headers["retry-after"] == "7"
    upstream.fail_next(500)
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert failed.value.status_code == 500 and failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    upstream.fail_next(529)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert (
        overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"
    )  # type: ignore[index]


def test_the_version_header_is_required(fake: tuple[AnthropicUpstream, str]) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": HELLO}
    reply = httpx.post(fake[1] + "/v1/messages", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert reply.status_code == 400 and reply.headers["request-id"].startswith("req_")
    assert reply.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }


def test_a_stream_broken_midway_raises_overloaded(
    fake: tuple[AnthropicUpstream, str], client: anthropic.Anthropic
) -> None:
    fake[0].break_stream_next(after_events=4)
    seen: list[str] = []
    stream = client.messages.stream(model=MODEL, max_tokens=10, messages=HELLO)
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"), stream as events:
        seen.extend(event.type for event in events)
    assert "message_start" in seen and "message_stop" not in seen


def test_a_slow_answer_times_the_client_out(fake: tuple[AnthropicUpstream, str]) -> None:
    fake[0].hang_next(5)
    impatient = anthropic.Anthropic(api_key=KEY, base_url=fake[1], max_retries=0, timeout=0.3)
    with impatient, pytest.raises(anthropic.APITimeoutError):
        impatient.messages.create(model=MODEL, max_tokens=10, messages=HELLO)


def test_the_host_root_answers_a_connectivity_check(fake: tuple[AnthropicUpstream, str]) -> None:
    assert httpx.head(fake[1] + "/").status_code == 404
    reply = httpx.get(fake[1] + "/")
    assert reply.json()["error"]["type"] == "not_found_error" and reply.headers["request-id"]
