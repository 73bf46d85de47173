"""The fake provider's Responses API must be what the official clients expect, or gateway tests prove little.

Every answer and stream event is validated strictly against the ``openai`` SDK's own types (the SDK itself
builds its objects without validation, so a wrong shape would otherwise pass unnoticed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from tests.conftest import PROVIDER_KEY as KEY
from tests.fakes.upstream import FakeUpstream
from tests.fakes.upstream_responses_bodies import REASONING_TOKENS

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ITEMS: TypeAdapter[Any] = TypeAdapter(ResponseItem)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
LONG = "You are a careful assistant. " * 300  # about 2,100 tokens: long enough to be cached


@pytest.fixture
def client(fake_upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=KEY, base_url=fake_upstream.url + "/v1", max_retries=0) as c:  # type: ignore[attr-defined]
        yield c


def strict(obj: Any) -> Response:
    """``obj`` (an SDK response) validated against the SDK's type, field by field."""
    return Response.model_validate(obj.to_dict(mode="json"))


def create(client: openai.OpenAI, **kwargs: Any) -> Response:
    raw = client.responses.with_raw_response.create(**kwargs)
    Response.model_validate(raw.http_response.json())
    return raw.parse()


def test_plain_answer_has_ids_and_usage(client: openai.OpenAI) -> None:
    out = create(client, model="gpt-4.1-mini", input="hello there", instructions="Be brief.")
    assert out.id.startswith("resp_") and out.status == "completed" and out.object == "response"
    assert out.output_text == "echo: hello there"
    message = out.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.role == "assistant"
    usage = out.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens == 5  # "echo: hello there"
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0


def test_stream_is_the_typed_event_sequence(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-4.1-mini", input="one two three", stream=True))
    for event in events:
        EVENTS.validate_python(event.to_dict(mode="json"))
    kinds = [e.type for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-5:] == [
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "echo: one two three" and kinds.count("response.output_text.delta") == 4
    assert events[0].response.output == [] and events[0].response.usage is None
    final = events[-1].response
    assert final.output_text == deltas and final.usage is not None and final.usage.output_tokens == 5
    assert events[0].response.id == final.id


def test_stream_helper_accumulates(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4.1-mini", input="accumulate me", tools=[WEATHER]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    strict(final)
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = final.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "echo: accumulate me"}


def test_function_tool_then_its_output(client: openai.OpenAI) -> None:
    first = create(client, model="gpt-4.1-mini", input="weather in Paris?", tools=[WEATHER])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.id is not None and call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "echo: weather in Paris?"}
    follow = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    second = create(
        client, model="gpt-4.1-mini", input=follow, tools=[WEATHER], previous_response_id=first.id
    )
    assert second.output_text == "echo: sunny, 21 C" and second.previous_response_id == first.id
    none = create(client, model="gpt-4.1-mini", input="no tools now", tools=[WEATHER], tool_choice="none")
    assert none.output[0].type == "message"


class City(BaseModel):
    name: str
    population: int


class Answer(BaseModel):
    cities: list[City]
    sure: bool
    kind: str | None


def test_structured_output_parses(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(model="gpt-4.1-mini", input="list cities", text_format=Answer)
    strict(parsed)
    assert parsed.output_parsed == Answer(
        cities=[City(name="echo: list cities", population=1)], sure=True, kind="echo: list cities"
    )


def test_previous_response_id_continues_and_store_false_does_not(client: openai.OpenAI) -> None:
    first = create(client, model="gpt-4.1-mini", input="remember seven")
    second = create(client, model="gpt-4.1-mini", input="what number?", previous_response_id=first.id)
    assert second.output_text == "echo: what number?"
    assert first.usage and second.usage and second.usage.input_tokens > first.usage.input_tokens + 4
    with pytest.raises(openai.NotFoundError) as unknown:
        client.responses.create(model="gpt-4.1-mini", input="x", previous_response_id="resp_nope")
    assert unknown.value.code == "previous_response_not_found"
    assert unknown.value.param == "previous_response_id"
    ephemeral = create(client, model="gpt-4.1-mini", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(ephemeral.id)
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.create(model="gpt-4.1-mini", input="x", previous_response_id=ephemeral.id)
    assert gone.value.code == "previous_response_not_found"


def test_retrieve_input_items_cancel_delete(client: openai.OpenAI) -> None:
    out = create(
        client,
        model="gpt-4.1-mini",
        input=[{"role": "user", "content": "first"}, {"role": "user", "content": "second"}],
    )
    again = strict(client.responses.retrieve(out.id))
    assert again.id == out.id and again.output_text == out.output_text and again.usage == out.usage
    items = client.responses.input_items.list(out.id)
    for item in items.data:
        ITEMS.validate_python(item.to_dict(mode="json"))
    assert [i.content[0].text for i in items.data] == ["second", "first"]  # newest first
    assert all(i.id.startswith("msg_") for i in items.data)
    oldest = client.responses.input_items.list(out.id, order="asc", limit=1)
    assert [i.content[0].text for i in oldest.data] == ["first"] and oldest.has_more
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(out.id)  # only background responses can be cancelled
    client.responses.delete(out.id)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.retrieve(out.id)
    assert missing.value.body["message"] == f"Response with id '{out.id}' not found."  # type: ignore[index]


def test_background_advances_per_poll(client: openai.OpenAI) -> None:
    queued = create(client, model="gpt-4.1-mini", input="take your time", background=True)
    assert queued.status == "queued" and queued.background and queued.usage is None and queued.output == []
    running = strict(client.responses.retrieve(queued.id))
    assert running.status == "in_progress" and running.usage is None
    done = strict(client.responses.retrieve(queued.id))
    assert done.status == "completed" and done.output_text == "echo: take your time" and done.usage
    other = create(client, model="gpt-4.1-mini", input="stop", background=True)
    cancelled = strict(client.responses.cancel(other.id))
    assert cancelled.status == "cancelled" and client.responses.retrieve(other.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4.1-mini", input="x", background=True, store=False)


def test_reasoning_item_and_encrypted_content(client: openai.OpenAI) -> None:
    out = create(
        client,
        model="o3-mini",
        input="think",
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"},
        store=False,
    )
    reasoning, message = out.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_") and reasoning.encrypted_content
    assert message.type == "message" and out.output_text == "echo: think"
    assert out.usage and out.usage.output_tokens_details.reasoning_tokens == REASONING_TOKENS
    assert out.usage.output_tokens == REASONING_TOKENS + 3
    plain = create(client, model="o3-mini", input="think")
    assert plain.output[0].type == "reasoning" and plain.output[0].encrypted_content is None
    follow = create(client, model="o3-mini", input=[reasoning.to_dict(), {"role": "user", "content": "more"}])
    assert follow.output_text == "echo: more"


def test_prefix_caching_per_prompt_cache_key(client: openai.OpenAI) -> None:
    def usage(key: str, text: str = "question") -> Any:
        out = create(client, model="gpt-4.1-mini", instructions=LONG, input=text, prompt_cache_key=key)
        assert out.usage is not None
        return out.usage

    cold = usage("agent-1")
    assert cold.input_tokens > 2048 and cold.input_tokens_details.cached_tokens == 0
    warm = usage("agent-1", "another question")
    cached = warm.input_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and warm.input_tokens - 128 < cached <= warm.input_tokens
    assert usage("agent-2").input_tokens_details.cached_tokens == 0  # another key, another cache
    short = [create(client, model="gpt-4.1-mini", input="short", prompt_cache_key="k") for _ in range(2)]
    assert short[1].usage and short[1].usage.input_tokens_details.cached_tokens == 0  # under 1,024 tokens


def test_errors_auth_and_faults(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    fake = fake_upstream
    url = fake.url + "/v1"  # type: ignore[attr-defined]
    with (
        openai.OpenAI(api_key="sk-wrong-key-000000", base_url=url, max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.responses.create(model="gpt-4.1-mini", input="x")
    with pytest.raises(openai.BadRequestError) as missing:
        client.responses.create(model="gpt-4.1-mini")  # type: ignore[call-overload]
    assert missing.value.code == "missing_required_parameter"
    fake.fail_next(status=429, retry_after=1, path="/responses")
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4.1-mini", input="x")
    fake.break_stream_next(after_chunks=3, path="/responses")
    events = list(client.responses.create(model="gpt-4.1-mini", input="cut short", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "error",
    ]
    error = EVENTS.validate_python(events[-1].to_dict(mode="json"))
    assert error.code == "server_error" and error.sequence_number == 3


def weather_agent(agents: Any, base_url: str, key: str) -> tuple[Any, list[str]]:
    """An Agents SDK agent with one function tool, on the Responses API at ``base_url``; the cities the
    tool was called with."""
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    agents.set_tracing_disabled(True)
    agents.set_default_openai_client(
        openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0), use_for_tracing=False
    )
    agents.set_default_openai_api("responses")
    agent = agents.Agent(
        name="weather", instructions="Answer with the tool.", tools=[get_weather], model="gpt-4.1-mini"
    )
    return agent, calls


def test_agents_sdk_runs_a_function_tool(fake_upstream: FakeUpstream) -> None:
    agents = pytest.importorskip("agents")
    agent, calls = weather_agent(agents, fake_upstream.url + "/v1", KEY)  # type: ignore[attr-defined]
    result = agents.Runner.run_sync(agent, "Weather in Paris?")
    assert calls == ["echo: Weather in Paris?"]
    assert result.final_output == "echo: sunny in echo: Weather in Paris?"
    posted = [r for r in fake_upstream.requests if r.path == "/v1/responses"]
    assert len(posted) == 2 and posted[1].json["input"][-1]["type"] == "function_call_output"


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    words = "many words " * 20
    out = create(client, model="gpt-4.1-mini", input=words, max_output_tokens=16)
    assert (
        out.status == "incomplete"
        and out.incomplete_details
        and out.incomplete_details.reason == ("max_output_tokens")
    )
    assert out.usage and out.usage.output_tokens == 16 and out.output_text == ("echo: " + words)[:64]
    events = list(
        client.responses.create(model="gpt-4.1-mini", input=words, max_output_tokens=16, stream=True)
    )
    assert events[-1].type == "response.incomplete" and events[-1].response.output_text == out.output_text
    with pytest.raises(openai.BadRequestError) as low:
        client.responses.create(model="gpt-4.1-mini", input="x", max_output_tokens=8)
    assert low.value.param == "max_output_tokens"
