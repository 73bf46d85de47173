"""Micro-batching: the prompt's strict parsing, exact usage shares, and the gateway end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from gateway.batcher.prompt import build_batch_message, parse_answers
from gateway.batcher.split import apportion
from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.batch_model import batch_responder, tasks_in
from tests.fakes.upstream import FakeUpstream
from tests.test_gateway_ops import metric

SYSTEM = {"role": "system", "content": "You are a careful refactoring assistant. " * 20}


def test_parse_is_strict() -> None:
    expected = ["t1", "t2", "t3"]
    assert parse_answers('{"t1": "a", "t2": "b", "t3": "c"}', expected) == {"t1": "a", "t2": "b", "t3": "c"}
    assert parse_answers('```json\n{"t1": "a"}\n```', expected) == {"t1": "a"}
    assert parse_answers('{"answers": {"t2": "b"}}', expected) == {"t2": "b"}
    assert parse_answers('{"t1": "a", "t1": "again", "t2": "b"}', expected) == {"t2": "b"}, (
        "duplicates dropped"
    )
    assert parse_answers('{"t1": 5, "t2": "", "t9": "x"}', expected) == {}
    assert parse_answers("not json", expected) == {}
    assert parse_answers('["t1"]', expected) == {}


def test_batch_message_lists_every_task() -> None:
    message = build_batch_message([("t2", "rename x"), ("t1", "inline y")])
    assert tasks_in(message["content"]) == {"t2": "rename x", "t1": "inline y"}


@pytest.mark.parametrize(
    ("total", "weights"), [(10, [1, 1, 1]), (7, [0.2, 5, 3.1]), (0, [1, 2]), (5, [0, 0])]
)
def test_apportion_sums_exactly(total: int, weights: list[float]) -> None:
    shares = apportion(total, weights)
    assert sum(shares) == total and all(s >= 0 for s in shares)


def batch_policy(fake: FakeUpstream, **batching: Any) -> dict[str, Any]:
    # Mechanics, not the latency bound: a bound no test batch reaches (see test_batch_latency.py).
    batching = {"window_ms": 300, "max_added_ms": 60000, **batching}
    return base_policy(fake.url, batching=batching)  # type: ignore[attr-defined]


async def send(url: str, task: str, delay: float = 0.0, max_tokens: int | None = None, **headers: str) -> Any:
    await asyncio.sleep(delay)
    async with openai.AsyncOpenAI(
        base_url=url + "/v1",
        api_key=GATEWAY_KEY,
        max_retries=0,
        default_headers={"X-Task-Type": "refactor", "X-Lines-Estimate": "20", **headers},
    ) as client:
        extra = {} if max_tokens is None else {"max_tokens": max_tokens}
        return await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[SYSTEM, {"role": "user", "content": task}], **extra
        )


async def many(url: str, tasks: list[str], spacing: float = 0.0, max_tokens: int | None = None) -> list[Any]:
    return list(await asyncio.gather(*(send(url, t, i * spacing, max_tokens) for i, t in enumerate(tasks))))


def test_five_tasks_one_call_each_their_own_answer(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    fake_upstream.responder = batch_responder()
    url = start_gateway(batch_policy(fake_upstream))
    before = httpx.get(f"{url}/metrics").text
    tasks = [f"rename variable v{i} in module m{i}" for i in range(5)]
    results = asyncio.run(many(url, tasks))
    assert fake_upstream.count("/v1/chat/completions") == 1
    sent = fake_upstream.last.json  # type: ignore[union-attr]
    assert sent["messages"][0] == SYSTEM and len(sent["messages"]) == 2, "shared context once, then the tasks"
    assert sent["response_format"] == {"type": "json_object"}
    batch_usage = fake_upstream.answer("/chat/completions", sent)["usage"]
    for task, raw in zip(tasks, results, strict=True):
        assert raw.parse().choices[0].message.content == "echo: " + task
        batch_id, size = raw.headers["X-Gateway-Batch"].split(";")
        assert size == "size=5" and batch_id
    shares = [r.parse().usage for r in results]
    assert sum(u.prompt_tokens for u in shares) == batch_usage["prompt_tokens"]
    assert sum(u.completion_tokens for u in shares) == batch_usage["completion_tokens"]
    after = httpx.get(f"{url}/metrics").text
    assert metric(after, "llm_batches_total") - metric(before, "llm_batches_total") == 1
    used = metric(after, "llm_batch_tokens_total") - metric(before, "llm_batch_tokens_total")
    name = "llm_batch_unbatched_tokens_estimate_total"
    alone = metric(after, name) - metric(before, name)
    assert 1 - used / alone > 0.5, "a long shared prompt sent once saves most tokens"


def test_malformed_reply_falls_back_per_task(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    fake_upstream.responder = batch_responder(lambda answers: "Sure! Here you go: " + str(answers))
    url = start_gateway(batch_policy(fake_upstream))
    tasks = [f"extract function f{i}" for i in range(3)]
    results = asyncio.run(many(url, tasks))
    assert [r.parse().choices[0].message.content for r in results] == ["echo: " + t for t in tasks]
    assert all("X-Gateway-Batch" not in r.headers for r in results)
    assert fake_upstream.count("/v1/chat/completions") == 1 + 3


def test_partial_reply_only_missing_tasks_retried(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    def drop_one(answers: dict[str, str]) -> str:
        answers.pop(sorted(answers)[0])
        return json.dumps(answers)

    fake_upstream.responder = batch_responder(drop_one)
    url = start_gateway(batch_policy(fake_upstream))
    tasks = [f"add a test for case {i}" for i in range(4)]
    results = asyncio.run(many(url, tasks))
    assert [r.parse().choices[0].message.content for r in results] == ["echo: " + t for t in tasks]
    assert sum("X-Gateway-Batch" in r.headers for r in results) == 3
    assert fake_upstream.count("/v1/chat/completions") == 2


def test_failed_batch_call_never_fails_its_requests(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    fake_upstream.responder = batch_responder()
    policy = batch_policy(fake_upstream)
    policy["providers"]["openai"]["retry"] = {"attempts": 1}
    url = start_gateway(policy)
    fake_upstream.fail_next(times=1, status=500)
    tasks = [f"fix lint warning {i}" for i in range(3)]
    results = asyncio.run(many(url, tasks))
    assert [r.parse().choices[0].message.content for r in results] == ["echo: " + t for t in tasks]


def test_non_batchable_request_never_waits(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    fake_upstream.responder = batch_responder()
    url = start_gateway(batch_policy(fake_upstream, window_ms=1500))

    async def scenario() -> None:
        batched = asyncio.create_task(send(url, "small refactor"))
        await asyncio.sleep(0.1)
        plain = await send(url, "a creative task", **{"X-Task-Type": "creative"})
        assert not batched.done(), "the batch window is still open"
        assert "X-Gateway-Batch" not in plain.headers
        await batched

    asyncio.run(scenario())
    first, _ = fake_upstream.requests
    assert first.json["messages"][-1]["content"] == "a creative task"


def test_window_holds_under_a_trickle(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> None:
    fake_upstream.responder = batch_responder()
    url = start_gateway(batch_policy(fake_upstream, window_ms=400))
    tasks = [f"trickle task {i}" for i in range(3)]
    results = asyncio.run(many(url, tasks, spacing=0.08))
    assert fake_upstream.count("/v1/chat/completions") == 1
    assert all(r.headers["X-Gateway-Batch"].endswith("size=3") for r in results)


def test_batched_answers_are_cached_individually(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str
) -> None:
    fake_upstream.responder = batch_responder()
    policy = batch_policy(fake_upstream)
    policy["cache"] = {"enabled": True}
    policy["store"] = {"url": redis_url}
    url = start_gateway(policy)
    tasks = [f"rename helper h{i}" for i in range(2)]
    asyncio.run(many(url, tasks))
    again = asyncio.run(send(url, tasks[1], **{"X-Batchable": "false", "X-Task-Type": "qa"}))
    assert again.headers["X-Cache"] == "HIT"
    assert again.parse().choices[0].message.content == "echo: " + tasks[1]
    assert fake_upstream.count("/v1/chat/completions") == 1
