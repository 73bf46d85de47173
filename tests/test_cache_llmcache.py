"""The LLMCache stage on its own (memory store): what ``Cache-Control`` does to the lookup and to
singleflight, and that a leader's failure of any kind wakes the requests waiting for it."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest

from gateway.cache import CacheEntry, Lease, LLMCache, Plan
from gateway.cache.llmcache import terms
from gateway.context import Request
from gateway.policy.cache import CacheConfig
from gateway.pricing import PriceBook
from gateway.protocols import CHAT
from gateway.store import MemoryStore

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = orjson.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


class FailingWrites(MemoryStore):
    """A store whose entry writes fail: with an error that is not a ``StoreError`` (an overflow, a bug),
    or by never returning (the write is then cancelled)."""

    def __init__(self, hang: bool) -> None:
        super().__init__()
        self.hang = hang

    async def set(
        self, key: str, value: bytes, ttl_s: float | None = None, only_if_absent: bool = False
    ) -> bool:
        if not only_if_absent:
            if self.hang:
                await asyncio.Event().wait()
            raise OverflowError("cannot convert float infinity to integer")
        return await super().set(key, value, ttl_s, only_if_absent)


def make_cache(store: MemoryStore | None = None) -> LLMCache:
    config = CacheConfig(wait_timeout_s=600)  # a waiter that is never woken would hang the test
    return LLMCache(config, store or MemoryStore(), "t:", PriceBook({}))


def request(cache: LLMCache, cache_control: str | None = None) -> tuple[str, Plan]:
    """A request's plan for model ``m`` (and that model, which ``fetch`` prices a hit against)."""
    plan = cache.plan(Request("r", CHAT, "agent", "team", cache_control=cache_control, body=BODY), "m")
    assert plan is not None
    return "m", plan


async def settle_soon(cache: LLMCache, plan: Plan, lease: Lease, answer: bytes) -> None:
    await asyncio.sleep(0.05)
    await cache.settle(plan, lease, 200, answer)


async def test_no_cache_does_not_join_an_identical_request_in_flight() -> None:
    cache = make_cache()
    leader_ctx, plan = request(cache)
    leading = await cache.fetch(plan, leader_ctx)
    lease = leading.lease
    assert isinstance(lease, Lease) and leading.status == "MISS"
    ctx, no_cache = request(cache, "no-cache")
    outcome, _ = await asyncio.gather(cache.fetch(no_cache, ctx), settle_soon(cache, plan, lease, ANSWER))
    assert isinstance(outcome.lease, Lease), "no-cache must call the provider, not take the answer in flight"
    assert outcome.status == "BYPASS" and outcome.entry is None
    await cache.settle(no_cache, outcome.lease, 200, ANSWER)
    ctx, plain = request(cache)
    assert isinstance((await cache.fetch(plain, ctx)).entry, CacheEntry), "no-cache still stores the answer"


@pytest.mark.parametrize(
    "control", ["max-age=" + "9" * 400, "max-age=" + "9" * 5000, "max-age=99999999999999"]
)
def test_max_age_is_bounded_by_the_policy_ttl(control: str) -> None:
    config = CacheConfig(ttl_s=120)
    assert terms(config, "chat.completions", control, True) == (120, True, 120)
    assert terms(config, "chat.completions", "max-age=30", True) == (30, True, 30)
    assert terms(config, "chat.completions", "max-age=0", True) == (120, False, 0)


@pytest.mark.parametrize("failure", ["error", "cancelled"])
async def test_every_failure_of_the_leader_wakes_its_waiters(failure: str) -> None:
    cache = make_cache(FailingWrites(hang=failure == "cancelled"))
    leader_ctx, plan = request(cache)
    lease = (await cache.fetch(plan, leader_ctx)).lease
    assert isinstance(lease, Lease)
    ctx, same = request(cache)
    waiter = asyncio.create_task(cache.fetch(same, ctx))
    await asyncio.sleep(0.05)
    assert not waiter.done(), "the identical request waits for the leader"
    settle = asyncio.create_task(cache.settle(plan, lease, 200, ANSWER))
    if failure == "cancelled":
        await asyncio.sleep(0.05)
        settle.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await settle  # a failed write does not fail the answered request (the cache fails open)
    assert lease.future.done(), "the waiters were woken"
    outcome = await waiter
    assert isinstance(outcome.entry, CacheEntry) and outcome.entry.body == ANSWER
    assert outcome.status == "HIT"
