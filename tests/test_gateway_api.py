"""The gateway as agents see it: the official openai SDK, sync and async, streaming and not."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import openai
import pytest

from tests.conftest import GATEWAY_KEY, PROVIDER_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.fakes.upstream_bodies import count_tokens

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello gateway"}]


def test_chat_non_stream(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    answer = raw.parse()
    assert answer.choices[0].message.content == "echo: hello gateway"
    assert answer.usage is not None and answer.usage.completion_tokens == count_tokens("echo: hello gateway")
    assert raw.headers["X-Gateway-Model"] == "gpt-4o-mini"
    assert raw.headers["X-Cache"] in ("MISS", "BYPASS")
    assert len(raw.headers["X-Request-Id"]) >= 16
    seen = fake_upstream.last
    assert (
        seen is not None
        and {k.lower(): v for k, v in seen.headers.items()}["authorization"] == f"Bearer {PROVIDER_KEY}"
    )
    assert GATEWAY_KEY not in json.dumps(seen.headers)


async def test_chat_stream_relays_chunks(aclient: openai.AsyncOpenAI, fake_upstream: FakeUpstream) -> None:
    stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello gateway"
    assert len(chunks) >= 4
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.usage is None for c in chunks), "usage chunk must be hidden when the client did not ask"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    sent = fake_upstream.last
    assert sent is not None and sent.json["stream_options"] == {"include_usage": True}


def test_chat_stream_usage_when_asked(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == count_tokens("echo: hello gateway")


def test_stream_tool_calls(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True)
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in stream
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(arguments) == {"echo": "hello gateway"}


def test_unknown_fields_survive_both_ways(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_body={"x_vendor_flag": {"deep": [1, 2]}}
    )
    sent = fake_upstream.last
    assert sent is not None and sent.json["x_vendor_flag"] == {"deep": [1, 2]}
    body = json.loads(raw.http_response.content)
    assert body == json.loads(raw.http_response.content)
    assert "system_fingerprint" in body, "fields the gateway does not know are relayed untouched"


def test_completions_and_embeddings(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-4o-mini", prompt="say hi")
    assert completion.choices[0].text
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(vectors.data) == 2 and all(isinstance(x, float) for x in vectors.data[0].embedding)


def test_models_are_the_policy_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert ids == {"gpt-4o-mini", "gpt-4.1", "text-embedding-3-small"}
    assert client.models.retrieve("gpt-4.1").id == "gpt-4.1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_model_the_wildcard_serves_is_retrieved(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    policy = base_policy(fake_upstream.url)  # type: ignore[attr-defined]
    policy["models"]["*"] = {"provider": "openai"}
    with openai.OpenAI(base_url=start_gateway(policy) + "/v1", api_key=GATEWAY_KEY, max_retries=0) as client:
        model = client.models.retrieve("any-model-the-provider-has")
        assert model.id == "any-model-the-provider-has" and model.object == "model"
        assert client.chat.completions.create(model=model.id, messages=[{"role": "user", "content": "hi"}])


def test_passthrough_responses_files_batches(client: openai.OpenAI, fake_upstream: FakeUpstream) -> None:
    assert client.responses.create(model="gpt-4o-mini", input="hi there").output_text
    uploaded = client.files.create(file=("batch.jsonl", io.BytesIO(b'{"custom_id": "1"}\n')), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert client.batches.retrieve(batch.id).id == batch.id
    assert fake_upstream.count("/v1/files") == 1 and fake_upstream.count("/v1/batches") == 1


def test_wildcard_model_routes_any_name(fake_upstream: FakeUpstream, start_gateway: object) -> None:
    from tests.conftest import base_policy

    policy = base_policy(fake_upstream.url)  # type: ignore[attr-defined]
    policy["models"]["*"] = {"provider": "openai"}
    url = start_gateway(policy)  # type: ignore[operator]
    with openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0) as sdk:
        answer = sdk.chat.completions.create(model="some-new-model", messages=MESSAGES)
    assert answer.model == "some-new-model"
