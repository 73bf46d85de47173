"""Both store implementations keep the same contract; the Redis one is checked against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.policy.core import StoreConfig
from gateway.store import MemoryStore, RedisStore, Store, StoreError, connect_redis, open_store
from tests.fakes.redis_server import RedisServer


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
