"""The routing stage: the hot path, aliases per endpoint, metrics, cost saved, and the decision log."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.errors import NotFound
from gateway.policy import Policy
from gateway.policy.core import ProviderConfig
from gateway.protocols import EMBEDDINGS
from gateway.providers import build_provider
from gateway.router import Router, RoutingLog
from gateway.store import MemoryStore, StoreError
from gateway.upstream import ModelCatalog
from tests.routing_helpers import CUSTOM, context, custom_policy


def router(policy: Policy, store: Any = None, prices: dict[str, float] | None = None) -> Router:
    providers = {name: build_provider(name, ProviderConfig()) for name in policy.providers}
    log = RoutingLog(store or MemoryStore(), policy.routing.log_stream, policy.routing.log_maxlen)

    def price_of(model: str, prompt: int, completion: int) -> float | None:
        per_token = (prices or {}).get(model)
        return None if per_token is None else per_token * (prompt + completion)

    return Router(policy.routing, ModelCatalog(policy, providers), log, price_of)


def counter(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_plain_models_are_not_routed_or_logged() -> None:
    stage = router(custom_policy(CUSTOM))
    route = stage.route(*context(requested_model="mid", prompt_estimate=100_000))
    assert (route.target.name, route.reason) == ("mid", "requested")
    await stage.log.drain()
    assert await stage.log.read(10) == []


async def test_alias_is_routed_counted_priced_and_logged() -> None:
    stage = router(custom_policy(CUSTOM), prices={"big": 1e-5, "mid": 2e-6})
    before = counter("llm_routing_decisions_total", requested="auto", chosen="mid", rule="default")
    saved_before = counter("llm_routing_cost_saved_usd_total")
    ctx = context(
        prompt_estimate=1000, task_type="qa", priority="P2", agent="agent-7", body={"max_tokens": 500}
    )
    route = stage.route(*ctx)
    assert (route.target.name, route.model, route.reason) == ("mid", "mid", "default")
    assert (
        counter("llm_routing_decisions_total", requested="auto", chosen="mid", rule="default") == before + 1
    )
    saved = counter("llm_routing_cost_saved_usd_total") - saved_before
    assert saved == pytest.approx((1e-5 - 2e-6) * 1500)  # against the largest candidate, 'big'
    await stage.log.drain()
    [entry] = await stage.log.read(10)
    assert entry["kind"] == "decision" and entry["request_id"] == "req-1" and entry["agent"] == "agent-7"
    assert (entry["requested_model"], entry["chosen_model"], entry["rule"]) == ("auto", "mid", "default")
    assert (entry["task_type"], entry["priority"], entry["budget_left"]) == ("qa", "P2", None)
    assert entry["prompt_tokens_estimate"] == 1000 and entry["max_output_tokens"] == 500
    assert entry["saved_usd"] == pytest.approx(0.012) and str(entry["time"]).endswith("+00:00")


async def test_unknown_price_saves_nothing_and_upgrades_never_count_negative() -> None:
    stage = router(custom_policy(CUSTOM), prices={"big": 1e-6, "mid": 1e-5})
    before = counter("llm_routing_cost_saved_usd_total")
    stage.route(*context(prompt_estimate=100))  # mid costs more than the baseline here
    stage.route(*context(prompt_estimate=100, requested_model="cheap"))  # 'mini' has no price
    assert counter("llm_routing_cost_saved_usd_total") == before
    await stage.log.drain()
    entries = await stage.log.read(10)
    assert [e["saved_usd"] for e in entries] == [None, 0.0]


async def test_rewritten_concrete_model_priced_against_what_was_asked() -> None:
    stage = router(
        custom_policy({**CUSTOM, "rewrite_concrete_models": True}), prices={"big": 3e-6, "mini": 1e-6}
    )
    before = counter("llm_routing_cost_saved_usd_total")
    route = stage.route(*context(requested_model="big", lines_estimate=10, prompt_estimate=100))
    assert route.target.name == "mini" and route.reason == "rule:tiny-change"
    assert counter("llm_routing_cost_saved_usd_total") - before == pytest.approx(2e-6 * (100 + 1024))
    other = context(requested_model="nope", prompt_estimate=100)
    with pytest.raises(NotFound):
        stage.route(*other)  # no wildcard: an unknown name is still a 404, not silently routed


async def test_alias_on_embeddings_is_a_404_naming_the_model() -> None:
    stage = router(custom_policy(CUSTOM))
    with pytest.raises(NotFound) as info:  # as OpenAI answers for a model it does not have
        stage.route(*context(protocol=EMBEDDINGS))
    assert info.value.param == "model" and info.value.code == "model_not_found" and info.value.status == 404
    rewriting = router(custom_policy({**CUSTOM, "rewrite_concrete_models": True}))
    ctx = context(protocol=EMBEDDINGS, requested_model="embed", lines_estimate=900)
    assert rewriting.route(*ctx).target.name == "embed", "embeddings are never rewritten"


async def test_fallback_is_recorded_only_for_routed_requests() -> None:
    policy = custom_policy(CUSTOM)
    stage = router(policy)
    ctx, standing = context(lines_estimate=900)
    route = stage.route(ctx, standing)
    stage.answered(ctx, route, route.target)  # the chosen model answered: nothing more to log
    stage.answered(ctx, route, stage.catalog.resolve("mid"))
    plain, _ = context(requested_model="big")
    stage.answered(plain, stage.route(plain, standing), stage.catalog.resolve("mid"))
    await stage.log.drain()
    fallback, decision = await stage.log.read(10)
    assert decision["chosen_model"] == "big"
    assert fallback["kind"] == "fallback" and fallback["rule"] == "fallback"
    assert (fallback["from_model"], fallback["chosen_model"]) == ("big", "mid")


class FailingStore(MemoryStore):
    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay

    async def append_log(self, stream: str, fields: dict[str, str], maxlen: int) -> None:
        await asyncio.sleep(self.delay)
        raise StoreError("redis: ConnectionError: down")


async def test_log_failures_are_counted_never_raised_never_awaited() -> None:
    stage = router(custom_policy(CUSTOM), store=FailingStore(delay=0.05))
    before = counter("gateway_store_errors_total", operation="routing_log")
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(3):
        stage.route(*context())
    assert loop.time() - started < 0.04, "the request path must not wait for the store"
    await stage.log.drain()
    assert counter("gateway_store_errors_total", operation="routing_log") == before + 3


async def test_pending_writes_are_bounded() -> None:
    store = FailingStore(delay=1.0)
    log = RoutingLog(store, "model_routing_log", 100, max_pending=2)
    before = counter("gateway_store_errors_total", operation="routing_log")
    for _ in range(5):
        log.record({"kind": "decision"})
    assert counter("gateway_store_errors_total", operation="routing_log") == before + 3
    await log.drain(timeout_s=0.01)
    for task in list(log._pending):
        task.cancel()


async def test_memory_log_is_capped_at_log_maxlen() -> None:
    stage = router(custom_policy({**CUSTOM, "log_maxlen": 10}))
    for i in range(25):
        stage.route(*context(request_id=f"r{i}"))
    await stage.log.drain()
    entries = await stage.log.read(100)
    assert [e["request_id"] for e in entries] == [f"r{i}" for i in range(24, 14, -1)]
