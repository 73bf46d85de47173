"""``/v1/responses`` through every stage, driven by the official ``openai`` SDK against the fake provider's
faithful Responses API: budgets, routing, the cache, metrics and the ledger, as for chat completions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response
from pydantic import BaseModel

from gateway import metrics
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.upstream import FakeUpstream
from tests.ledger_helpers import SYSTEM, batch_responder, running, stream_records
from tests.test_fake_responses import EVENTS, WEATHER, weather_agent

MODEL = "gpt-4o-mini"
AGENT_MODEL = "gpt-4.1-mini"
PRICED = {
    MODEL: {"provider": "openai", "tier": "small", "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
    "gpt-4.1": {"provider": "openai", "tier": "large", "price": {"input_per_mtok": 2, "output_per_mtok": 8}},
}


def sprint(total: int) -> dict[str, Any]:
    return {"sprints": [{"id": "s1", "total_tokens": total, "agents": ["agent-1"]}]}


@pytest.fixture
def gateway_for(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> Callable[..., str]:
    def start(**sections: Any) -> str:
        return start_gateway(base_policy(fake_upstream.url, **sections))  # type: ignore[attr-defined]

    return start


def sdk(url: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0, default_headers=headers)


def used(agent: str, model: str) -> float:
    return metrics.TOKENS_USED.labels(agent, model)._value.get()  # type: ignore[no-any-return]


def settled(read: Callable[[], float], expected: float) -> float:
    """``read()`` once it shows ``expected``: a stream's last event reaches the client just before the
    gateway records it (metrics, budget commit), so give that a moment."""
    deadline = time.monotonic() + 5
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def budget_used(url: str) -> int:
    report = httpx.get(f"{url}/admin/budgets", headers={"Authorization": "Bearer gw-admin-key"})
    return report.json()["data"][0]["sprint"]["used"]  # type: ignore[no-any-return]


def posted(fake: FakeUpstream) -> list[dict[str, Any]]:
    return [r.json for r in fake.requests if r.path == "/v1/responses"]


def test_plain_answer_is_charged_counted_and_recorded(fake_upstream: FakeUpstream, redis_url: str) -> None:
    policy = base_policy(
        fake_upstream.url,  # type: ignore[attr-defined]
        store={"url": redis_url},
        ledger={"enabled": True},
        models=PRICED,
        budgets=sprint(100_000),
    )
    before = used("agent-1", MODEL)
    with running(policy) as url, sdk(url, **{"X-Request-Id": "plain"}) as client:
        raw = client.responses.with_raw_response.create(
            model=MODEL, instructions="Be brief.", input="hello there", max_output_tokens=64
        )
        out = raw.parse()
        Response.model_validate(raw.http_response.json())
        assert out.output_text == "echo: hello there" and out.id.startswith("resp_")
        assert raw.headers["X-Gateway-Model"] == MODEL and raw.headers["X-Cache"] == "BYPASS"
        usage = out.usage
        assert usage is not None
        assert budget_used(url) == usage.total_tokens
        assert int(raw.headers["X-Budget-Remaining-Tokens"]) == 100_000 - 3 - 64 - client_estimate()
    assert used("agent-1", MODEL) - before == usage.total_tokens
    record = next(r for r in stream_records(redis_url) if r["request_id"] == "plain")
    assert record["endpoint"] == "responses" and record["model"] == MODEL and record["max_tokens"] == 64
    assert record["prompt_tokens"] == usage.input_tokens
    assert record["completion_tokens"] == usage.output_tokens
    assert record["cost_usd"] == pytest.approx((usage.input_tokens + 2 * usage.output_tokens) / 1e6)


def client_estimate() -> int:
    """What the gateway reserves for the prompt of the plain test (instructions and one input item)."""
    from gateway.protocols import RESPONSES

    return RESPONSES.estimate({"instructions": "Be brief.", "input": "hello there"}) - 3


def test_stream_relays_the_typed_events_and_is_charged(
    gateway_for: Callable[..., str], fake_upstream: FakeUpstream
) -> None:
    url = gateway_for(budgets=sprint(100_000))
    before = used("agent-1", MODEL)
    with sdk(url) as client:
        events = list(client.responses.create(model=MODEL, input="one two three", stream=True))
    for item in events:
        EVENTS.validate_python(item.to_dict(mode="json"))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: one two three"
    final = events[-1].response
    assert final.usage is not None
    total = final.usage.total_tokens
    assert settled(lambda: used("agent-1", MODEL) - before, total) == total
    assert settled(lambda: budget_used(url), total) == total
    assert "stream_options" not in posted(fake_upstream)[0], "the Responses API always reports usage"


def test_a_failure_mid_stream_is_one_error_event(
    gateway_for: Callable[..., str], fake_upstream: FakeUpstream
) -> None:
    url = gateway_for()
    fake_upstream.break_stream_next(after_chunks=3, path="/responses")
    with sdk(url) as client:
        events = list(client.responses.create(model=MODEL, input="cut short", stream=True))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added", "error"]
    assert events[-1].code == "bad_gateway" and "before it was complete" in events[-1].message


def test_tools_structured_output_and_previous_response_id(gateway_for: Callable[..., str]) -> None:
    url = gateway_for()
    with sdk(url) as client:
        first = client.responses.create(model=MODEL, input="weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
        call = first.output[0]
        assert call.type == "function_call" and json.loads(call.arguments) == {
            "city": "echo: weather in Paris?"
        }
        output = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
        second = client.responses.create(
            model=MODEL,
            input=output,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            previous_response_id=first.id,
        )
        assert second.output_text == "echo: sunny" and second.previous_response_id == first.id

        class City(BaseModel):
            name: str
            population: int

        parsed = client.responses.parse(model=MODEL, input="a city", text_format=City)
        assert parsed.output_parsed == City(name="echo: a city", population=1)


def test_bad_requests_get_a_clear_answer(
    gateway_for: Callable[..., str], fake_upstream: FakeUpstream
) -> None:
    url = gateway_for()
    auth = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    cases = [
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": 7}, "input"),
        ({"model": MODEL, "input": ["x"]}, "input[0]"),
        ({"input": "x"}, "model"),
        ({"model": MODEL, "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": MODEL, "input": "x", "background": True}, "background"),
    ]
    for body, param in cases:
        bad = httpx.post(f"{url}/v1/responses", json=body, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, body
    assert not posted(fake_upstream), "none reached the provider"


def test_stored_responses_pass_through_with_identity(
    gateway_for: Callable[..., str], fake_upstream: FakeUpstream
) -> None:
    url = gateway_for()
    with sdk(url) as client:
        out = client.responses.create(
            model=MODEL, input=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        )
        again = client.responses.retrieve(out.id)
        assert again.id == out.id and again.output_text == out.output_text
        items = client.responses.input_items.list(out.id, order="asc")
        assert [i.content[0].text for i in items.data] == ["a", "b"]  # type: ignore[union-attr]
        with pytest.raises(openai.BadRequestError):
            client.responses.cancel(out.id)  # the provider's answer: only background responses cancel
        client.responses.delete(out.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(out.id)
    for method, path in [
        ("GET", out.id),
        ("DELETE", out.id),
        ("POST", f"{out.id}/cancel"),
        ("GET", f"{out.id}/input_items"),
    ]:
        refused = httpx.request(method, f"{url}/v1/responses/{path}")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
    assert all(
        r.headers["authorization"] == f"Bearer {fake_upstream.expected_key}" for r in fake_upstream.requests
    )


def test_agents_sdk_runs_a_function_tool_through_the_gateway(
    gateway_for: Callable[..., str], fake_upstream: FakeUpstream
) -> None:
    agents = pytest.importorskip("agents")
    models = {AGENT_MODEL: {"provider": "openai", "tier": "medium"}}
    url = gateway_for(cache={"enabled": True}, budgets=sprint(100_000), models=models)
    agent, calls = weather_agent(agents, url + "/v1", GATEWAY_KEY)
    before = used("agent-1", AGENT_MODEL)
    result = agents.Runner.run_sync(agent, "Weather in Paris?")
    assert calls == ["echo: Weather in Paris?"]
    assert result.final_output == "echo: sunny in echo: Weather in Paris?"
    sent = posted(fake_upstream)
    assert len(sent) == 2 and sent[1]["input"][-1]["type"] == "function_call_output"
    billed = sum(r.usage.total_tokens for r in result.raw_responses)
    assert used("agent-1", AGENT_MODEL) - before == billed == budget_used(url)
    again = agents.Runner.run_sync(agent, "Weather in Paris?")
    assert again.final_output == result.final_output and len(posted(fake_upstream)) == 2, "both turns cached"


def test_micro_batching_does_not_apply(gateway_for: Callable[..., str], fake_upstream: FakeUpstream) -> None:
    fake_upstream.responder = batch_responder()
    url = gateway_for(batching={"enabled": True, "window_ms": 300, "max_added_ms": 60000})  # mechanics
    headers = {"X-Batchable": "true", "X-Task-Type": "refactor", "X-Lines-Estimate": "10"}

    async def together() -> list[Any]:
        async with openai.AsyncOpenAI(
            base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0, default_headers=headers
        ) as client:
            chats = [
                client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[SYSTEM, {"role": "user", "content": f"chat task {i}"}]
                )
                for i in range(2)
            ]
            responses = [
                client.responses.with_raw_response.create(
                    model=MODEL, instructions=SYSTEM["content"], input=f"task {i}"
                )
                for i in range(2)
            ]
            return await asyncio.gather(*chats, *responses)

    *chats, one, two = asyncio.run(together())
    assert all(raw.headers.get("X-Gateway-Batch") for raw in chats), "the same headers batch chat completions"
    assert "X-Gateway-Batch" not in one.headers and "X-Gateway-Batch" not in two.headers
    assert sorted(body["input"] for body in posted(fake_upstream)) == ["task 0", "task 1"]
