"""Both store implementations keep the same contract; the Redis one is checked against a real server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import orjson
import pytest

from gateway.cache import LLMCache
from gateway.context import Request
from gateway.policy.cache import CacheConfig
from gateway.policy.core import StoreConfig
from gateway.pricing import PriceBook
from gateway.protocols import CHAT
from gateway.store import MemoryStore, RedisStore, Store, StoreError, connect_redis, open_store
from tests.fakes.redis_server import RedisServer

T = TypeVar("T")
ANSWER = orjson.dumps(
    {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue({"redis": "redis_url"}.get(request.param, f"{request.param}_url"))
    redis_store = open_store(StoreConfig(url=url))
    assert isinstance(redis_store, RedisStore)
    yield redis_store
    await redis_store.close()


async def test_get_set_delete(store: Store) -> None:
    assert await store.get("k") is None
    assert await store.set("k", b"v")
    assert await store.get("k") == b"v"
    assert await store.delete("k", "missing") == 1
    assert await store.get("k") is None


async def test_only_if_absent_and_ttl(store: Store) -> None:
    assert await store.set("lock", b"a", ttl_s=0.2, only_if_absent=True)
    assert not await store.set("lock", b"b", ttl_s=0.2, only_if_absent=True)
    assert await store.get("lock") == b"a"
    await asyncio.sleep(0.3)
    assert await store.get("lock") is None
    assert await store.set("lock", b"b", only_if_absent=True)


async def test_a_lock_write_sent_again_still_holds_the_lock(store: Store) -> None:
    """A retried SET NX whose first attempt landed (its answer lost) must not lock its owner out."""
    assert await store.set("lock", b"token-1", ttl_s=5, only_if_absent=True)
    assert await store.set("lock", b"token-1", ttl_s=5, only_if_absent=True), "our own lock"
    assert not await store.set("lock", b"token-2", ttl_s=5, only_if_absent=True), "someone else's"
    assert await store.get("lock") == b"token-1"


async def test_delete_if_equal(store: Store) -> None:
    await store.set("lock", b"mine")
    assert not await store.delete_if_equal("lock", b"theirs")
    assert await store.get("lock") == b"mine"
    assert await store.delete_if_equal("lock", b"mine")
    assert await store.get("lock") is None


async def test_delete_matching_escapes_glob(store: Store) -> None:
    for key in ("p:a", "p:b", "p*x", "q:a", "p:c:k1", "p:d:k1"):
        await store.set(key, b"1")
    assert await store.delete_matching("p:", ":k1") == 2
    assert await store.get("p:a") == b"1"
    assert await store.delete_matching("p:") == 2
    assert await store.get("p*x") == b"1"
    assert await store.get("q:a") == b"1"


async def test_lookup_or_lock_locks_only_when_nothing_is_stored(store: Store) -> None:
    entry, lock = "c:s:{k1}", "cl:{k1}"  # one hash tag: one slot, one script on a cluster
    assert await store.lookup_or_lock(entry, lock, b"token-1", 5) == (None, True)
    assert await store.lookup_or_lock(entry, lock, b"token-1", 5) == (None, True), "sent again: still ours"
    assert await store.lookup_or_lock(entry, lock, b"token-2", 5) == (None, False), "someone else's"
    await store.store_and_unlock(entry, b"answer", 5, lock, b"token-1")
    assert await store.get(entry) == b"answer"
    assert await store.get(lock) is None, "the owner's lock is released with the write"
    assert await store.lookup_or_lock(entry, lock, b"token-2", 5) == (b"answer", False)
    assert await store.get(lock) is None, "a stored answer takes no lock"


async def test_store_and_unlock_keeps_a_lock_it_does_not_own_and_sets_the_ttl(store: Store) -> None:
    entry, lock = "c:s:{k2}", "cl:{k2}"
    assert await store.lookup_or_lock(entry, lock, b"theirs", 5) == (None, True)
    await store.store_and_unlock(entry, b"answer", 0.2, lock, b"mine")
    assert await store.get(lock) == b"theirs"
    await store.store_and_unlock(entry, None, None, lock, b"theirs")  # a failed leader: only unlock
    assert await store.get(lock) is None
    assert await store.get(entry) == b"answer"
    await asyncio.sleep(0.3)
    assert await store.get(entry) is None, "the entry expires after its TTL"


async def test_lookup_or_lock_on_keys_of_different_slots(store: Store) -> None:
    """Keys without a shared hash tag still work on a cluster (one command each instead of a script)."""
    assert await store.lookup_or_lock("entry-a", "lock-b", b"t", 5) == (None, True)
    await store.store_and_unlock("entry-a", b"v", 5, "lock-b", b"t")
    assert (await store.get("entry-a"), await store.get("lock-b")) == (b"v", None)


@pytest.mark.parametrize("topology", ["redis", "cluster"])
async def test_a_cache_miss_costs_one_round_trip_before_and_one_after(
    topology: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lookup and singleflight lock in one script, store and unlock in another."""
    url = request.getfixturevalue("redis_url" if topology == "redis" else "cluster_url")
    store = open_store(StoreConfig(url=url))
    assert isinstance(store, RedisStore)
    trips: list[str] = []
    timed = store.timed

    def counted(operation: str, call: Awaitable[T]) -> Awaitable[T]:
        trips.append(operation)
        return timed(operation, call)

    monkeypatch.setattr(store, "timed", counted)
    cache = LLMCache(CacheConfig(), store, "rt:", PriceBook({}))
    body = {"model": "m", "messages": [{"role": "user", "content": os.urandom(8).hex()}]}
    plan = cache.plan(Request("r", CHAT, "agent", "team", body=body), "m")
    assert plan is not None
    try:
        outcome = await cache.fetch(plan, "m")
        assert outcome.status == "MISS" and outcome.lease is not None
        assert trips == ["lookup_or_lock"]
        await cache.settle(plan, outcome.lease, 200, ANSWER)
        assert trips == ["lookup_or_lock", "store_and_unlock"]
        again = await cache.fetch(plan, "m")
        assert again.status == "HIT" and again.entry is not None and again.entry.body == ANSWER
    finally:
        await store.close()


async def test_capped_log_newest_first(store: Store) -> None:
    for i in range(5):
        await store.append_log("model_routing_log", {"n": str(i)}, maxlen=1000)
    rows = await store.read_log("model_routing_log", 3)
    assert [r["n"] for r in rows] == ["4", "3", "2"]
    assert all(r["id"] for r in rows)


async def test_memory_store_is_bounded() -> None:
    store = MemoryStore(max_items=3)
    for i in range(5):
        await store.set(f"k{i}", b"x")
    assert await store.get("k0") is None and await store.get("k4") == b"x"
    sized = MemoryStore(max_bytes=4096)
    for i in range(10):
        await sized.set(f"big{i}", b"x" * 1000)
    assert await sized.get("big0") is None and await sized.get("big9") == b"x" * 1000
    assert sized._bytes <= 4096
    await sized.delete("big9")
    await sized.set("big9", b"y")
    assert sized._bytes == sum(len(k) + len(v[0]) + sized._OVERHEAD for k, v in sized._data.items())
    for i in range(5):
        await store.append_log("s", {"n": str(i)}, maxlen=2)
    assert [r["n"] for r in await store.read_log("s", 10)] == ["4", "3"]


async def test_redis_outage_raises_store_error_and_ping_is_false() -> None:
    with RedisServer() as server:
        store = RedisStore(connect_redis(StoreConfig(url=server.url, socket_timeout_s=0.5)))
        await store.set("k", b"v")
        server.stop()
        with pytest.raises(StoreError):
            await store.get("k")
        assert not await store.ping()
        await store.close()


async def test_password_url() -> None:
    with RedisServer(password="s3cret") as server:
        store = open_store(StoreConfig(url=server.url))
        assert await store.set("k", b"v")
        assert await store.ping()
        await store.close()
        wrong = open_store(StoreConfig(url=server.url.replace("s3cret", "nope")))
        assert not await wrong.ping()
        await wrong.close()
