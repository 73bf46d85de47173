"""The cache, routing, fallbacks and stored state on ``/v1/responses``, through the ``openai`` SDK."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from gateway.protocols import RESPONSES
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.test_fake_responses import EVENTS, WEATHER
from tests.test_responses import MODEL, posted, sdk, used

ROUTING = {"aliases": ["auto"], "candidates": ["gpt-4o-mini", "gpt-4.1"], "default": {"tier": "large"}}
BASE: dict[str, Any] = {
    "model": MODEL,
    "instructions": "Be brief.",
    "input": [{"type": "message", "role": "user", "content": "cache me please", "id": "msg_1"}],
}


@pytest.fixture
def url(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> str:
    policy = base_policy(fake_upstream.url, cache={"enabled": True}, routing=ROUTING)  # type: ignore[attr-defined]
    return start_gateway(policy)


@pytest.fixture
def client(url: str) -> Any:
    with sdk(url) as c:
        yield c


def create(client: openai.OpenAI, **body: Any) -> tuple[Response, str]:
    raw = client.responses.with_raw_response.create(**body)
    return raw.parse(), raw.headers["X-Cache"]


def test_identical_requests_meet_in_the_cache_with_the_same_id(
    client: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    before = used("agent-1", MODEL)
    first, miss = create(client, **BASE)
    again, hit = create(client, **BASE)
    assert (miss, hit) == ("MISS", "HIT") and len(posted(fake_upstream)) == 1
    assert again.id == first.id and again.output_text == first.output_text and again.usage == first.usage
    assert first.usage is not None
    assert used("agent-1", MODEL) - before == first.usage.total_tokens, "a hit costs the provider nothing"


def test_what_only_identifies_the_caller_stays_out_of_the_key(
    client: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    create(client, **BASE)
    session = {
        "input": [{**BASE["input"][0], "id": "msg_fresh"}],
        "prompt_cache_key": "session-2",
        "metadata": {"run": "2"},
        "user": "someone",
        "safety_identifier": "u-2",
        "service_tier": "auto",
        "extra_body": {"client_metadata": {"session_id": "2"}},
        "extra_headers": {"session-id": "2", "x-codex-window-id": "2", "x-client-request-id": "2"},
    }
    _, status = create(client, **{**BASE, **session})
    assert status == "HIT" and len(posted(fake_upstream)) == 1
    changes: list[dict[str, Any]] = [
        {"instructions": "Be long."},
        {"input": "another prompt"},
        {"tools": [WEATHER], "tool_choice": "none"},
        {"text": {"format": {"type": "json_object"}}},
        {"reasoning": {"effort": "low"}},
        {"temperature": 0.2},
        {"include": ["reasoning.encrypted_content"]},
        {"store": False},
        {"max_output_tokens": 32},
        {"model": "gpt-4.1"},
    ]
    for change in changes:
        _, status = create(client, **{**BASE, **change})
        assert status == "MISS", change


def shape(kinds: list[str]) -> list[str]:
    """Event types with each run of deltas as one (a replay cuts text in its own pieces)."""
    return [k for i, k in enumerate(kinds) if not (k.endswith(".delta") and i and kinds[i - 1] == k)]


def test_a_streamed_hit_replays_a_faithful_event_sequence(client: openai.OpenAI) -> None:
    body = {**BASE, "input": "what is the weather in a long city name?", "tools": [WEATHER]}
    with client.responses.stream(**body) as stream:  # type: ignore[arg-type]
        live = [event.type for event in stream]
        original = stream.get_final_response()
    raw = client.responses.with_streaming_response.create(**body, stream=True)
    with raw as response:
        assert response.headers["X-Cache"] == "HIT"
        events = list(response.parse())
    for event in events:
        EVENTS.validate_python(event.to_dict(mode="json"))
    assert shape([e.type for e in events]) == shape(live), "the same events in order (deltas cut anew)"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    call = original.output[0]
    assert call.type == "function_call" and len(deltas) > 1 and "".join(deltas) == call.arguments
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.id == call.id and events[0].response.id == original.id
    final = events[-1]
    assert final.type == "response.completed" and final.response.usage == original.usage
    text = client.responses.create(**{**BASE, "input": "one two three four five six seven eight nine"})
    with client.responses.stream(**{**BASE, "input": "one two three four five six seven eight nine"}) as s:
        pieces = [e.delta for e in s if e.type == "response.output_text.delta"]
        replayed = s.get_final_response()
    assert len(pieces) > 1 and "".join(pieces) == text.output_text and replayed.id == text.id


def test_a_stream_is_stored_for_plain_callers(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    events = list(client.responses.create(**{**BASE, "input": "streamed first"}, stream=True))
    plain, status = create(client, **{**BASE, "input": "streamed first"})
    assert status == "HIT" and len(posted(fake_upstream)) == 1
    assert plain.id == events[-1].response.id and plain.output_text == "echo: streamed first"


def test_continuing_from_a_cached_stored_response(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    """``store: true``: the hit keeps the provider's id, which the provider still holds."""
    first, _ = create(client, **BASE)
    cached, status = create(client, **BASE)
    assert status == "HIT" and cached.id == first.id
    follow, status = create(client, model=MODEL, input="and then?", previous_response_id=cached.id)
    assert status == "MISS" and follow.output_text == "echo: and then?"
    assert follow.previous_response_id == first.id
    assert posted(fake_upstream)[-1]["previous_response_id"] == first.id
    again, status = create(client, model=MODEL, input="and then?", previous_response_id=cached.id)
    assert status == "HIT" and again.id == follow.id, "a follow-up is keyed by what it continues"


def test_continuing_without_store_resends_the_input(
    client: openai.OpenAI, fake_upstream: FakeUpstream
) -> None:
    """``store: false`` (as Codex sends it): the client resends its context; the answer never carries a
    promise the provider cannot keep, since only callers that do not store share it."""
    body = {**BASE, "store": False}
    first, _ = create(client, **body)
    cached, status = create(client, **body)
    assert status == "HIT" and cached.id == first.id
    context = [*BASE["input"], *(item.to_dict() for item in cached.output)]
    follow, status = create(
        client, model=MODEL, store=False, input=[*context, {"role": "user", "content": "more"}]
    )
    assert status == "MISS" and follow.output_text == "echo: more"
    _, status = create(client, **BASE)
    assert status == "MISS", "an answer made without store is not given to a caller that stores"
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.create(model=MODEL, input="x", previous_response_id=first.id)
    assert gone.value.code == "previous_response_not_found", "what the provider itself answers"


def test_auto_is_routed_and_fallbacks_apply(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    raw = client.responses.with_raw_response.create(model="auto", input="route me")
    assert raw.headers["X-Gateway-Model"] == "gpt-4.1" and posted(fake_upstream)[-1]["model"] == "gpt-4.1"
    fake_upstream.fail_model("gpt-4.1")
    fell = client.responses.with_raw_response.create(model="gpt-4.1", input="fall back")
    assert fell.headers["X-Gateway-Model"] == "gpt-4o-mini" and fell.parse().output_text == "echo: fall back"


def test_answer_fields_drop_item_ids_but_keep_encrypted_reasoning() -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAA1"}
    fields = RESPONSES.answer_fields({**BASE, "input": [reasoning], "stream": True, "prompt_cache_key": "k"})
    assert fields["input"] == [{"type": "reasoning", "summary": [], "encrypted_content": "gAAAAA1"}]
    assert "stream" not in fields and "prompt_cache_key" not in fields and fields["store"] is True
    other = {**reasoning, "encrypted_content": "gAAAAA2"}
    assert RESPONSES.answer_fields({**BASE, "input": [other]}) != fields


def test_session_headers_do_not_reach_the_provider(url: str, fake_upstream: FakeUpstream) -> None:
    with openai.OpenAI(
        base_url=url + "/v1",
        api_key=GATEWAY_KEY,
        max_retries=0,
        default_headers={"session-id": "s-1", "x-codex-turn-metadata": "t"},
    ) as client:
        client.responses.create(model=MODEL, input="headers")
    sent = fake_upstream.requests[-1].headers
    assert "session-id" not in sent and "x-codex-turn-metadata" not in sent
    assert sent["authorization"].endswith(fake_upstream.expected_key)  # type: ignore[attr-defined]


def test_a_conversation_is_never_cached(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    """The provider appends each answer to the conversation: the same request is another context."""
    body = {**BASE, "extra_body": {"conversation": "conv_1"}}
    statuses = [create(client, **body)[1] for _ in range(2)]
    assert statuses == ["BYPASS", "BYPASS"] and len(posted(fake_upstream)) == 2
    assert posted(fake_upstream)[0]["conversation"] == "conv_1"
    assert RESPONSES.cacheable(BASE) and not RESPONSES.cacheable({**BASE, "background": True})


def test_replay_covers_reasoning_summaries_and_refusals() -> None:
    """Item kinds the fake does not produce replay as the SDK's own event types, and assemble back."""
    stored: dict[str, Any] = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": MODEL,
        "output": [
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "thinking it over carefully"}],
                "encrypted_content": "gAAAAA",
            },
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "refusal", "refusal": "I cannot help with that request."}],
            },
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
            "output_tokens": 9,
            "output_tokens_details": {"reasoning_tokens": 4},
            "total_tokens": 14,
        },
    }
    events = RESPONSES.replay(stored, True, 8)
    parsed = [json.loads(e.split(b"\ndata: ", 1)[1]) for e in events]
    for event, raw in zip(parsed, events, strict=True):
        EVENTS.validate_python(event)
        assert raw.startswith(b"event: " + event["type"].encode() + b"\n")
    kinds = [e["type"] for e in parsed]
    assert kinds.count("response.reasoning_summary_text.delta") == 4
    assert kinds.count("response.refusal.delta") == 4
    assert "encrypted_content" not in parsed[2]["item"] and parsed[-1]["response"] == stored
    tap = RESPONSES.assembler(1 << 20)
    for event in events:
        tap.on_data(event.split(b"\ndata: ", 1)[1].rstrip(b"\n"))
    assert tap.answer() == stored
    usage = RESPONSES.usage(parsed[-1])
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 9)
    assert (usage.cached_input_tokens, usage.reasoning_tokens) == (2, 4)
