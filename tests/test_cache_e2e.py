"""The LLMCache through the openai SDK against a real Redis: hits, streams, Cache-Control, TTL, scopes,
singleflight (in one gateway and across two), failing open, and the admin API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.conftest import ADMIN_KEY, GATEWAY_KEY, base_policy
from tests.fakes.redis_server import RedisServer
from tests.fakes.upstream import FakeUpstream
from tests.test_gateway_ops import metric

MESSAGES = [{"role": "user", "content": "cache me"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def cached_policy(fake: FakeUpstream, redis_url: str, **cache: Any) -> dict[str, Any]:
    policy = base_policy(fake.url, cache={"enabled": True, **cache}, store={"url": redis_url})  # type: ignore[attr-defined]
    policy["auth"]["keys"].append({"key": "gw-other-team", "agent": "agent-9", "team": "frontend"})
    policy["auth"]["keys"].append({"key": "gw-same-team", "agent": "agent-2", "team": "backend"})
    return policy


@pytest.fixture
def cached(fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str) -> str:
    return start_gateway(cached_policy(fake_upstream, redis_url))


def sdk(url: str, key: str = GATEWAY_KEY, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, default_headers=headers or None)


def chat(url: str, key: str = GATEWAY_KEY, messages: list[dict[str, str]] = MESSAGES, **headers: str) -> Any:
    with sdk(url, key, **headers) as client:
        return client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)


def test_miss_then_hit(cached: str, fake_upstream: FakeUpstream) -> None:
    before = httpx.get(f"{cached}/metrics").text
    first, second = chat(cached), chat(cached)
    assert first.headers["X-Cache"] == "MISS" and second.headers["X-Cache"] == "HIT"
    assert int(second.headers["X-Cache-Age"]) >= 0
    assert json.loads(second.http_response.content) == json.loads(first.http_response.content)
    assert fake_upstream.count("/v1/chat/completions") == 1
    after = httpx.get(f"{cached}/metrics").text
    for name, delta in (("llm_cache_hits_total", 1), ("llm_cache_misses_total", 1)):
        assert metric(after, name) - metric(before, name) == delta
    saved = first.parse().usage.total_tokens
    assert (
        metric(after, "llm_cache_tokens_saved_total") - metric(before, "llm_cache_tokens_saved_total")
        == saved
    )
    rate = metric(after, "llm_cache_hit_rate")
    hits, misses = metric(after, "llm_cache_hits_total"), metric(after, "llm_cache_misses_total")
    assert rate == pytest.approx(hits / (hits + misses))


def test_stream_miss_serves_plain_hit_and_reverse(cached: str, fake_upstream: FakeUpstream) -> None:
    with sdk(cached) as client:
        streamed = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, stream=True
        )
        list(streamed)
        plain = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS
        )
    assert plain.headers["X-Cache"] == "HIT"
    call = plain.parse().choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"echo": "cache me"}
    assert fake_upstream.count("/v1/chat/completions") == 1


def test_stream_hit_replays_faithfully(cached: str, fake_upstream: FakeUpstream) -> None:
    long_text = [{"role": "user", "content": "a longer prompt " * 12}]
    with sdk(cached) as client:
        original = client.chat.completions.create(model="gpt-4o-mini", messages=long_text)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=long_text, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert fake_upstream.count("/v1/chat/completions") == 1
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 3, "a hit is replayed in pieces, not as one giant chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == original.choices[0].message.content
    )
    assert chunks[-1].usage == original.usage and chunks[-1].choices == []
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_cache_control(cached: str, fake_upstream: FakeUpstream) -> None:
    assert chat(cached, **{"Cache-Control": "no-store"}).headers["X-Cache"] == "BYPASS"
    assert chat(cached).headers["X-Cache"] == "MISS", "no-store must not have stored anything"
    assert chat(cached, **{"Cache-Control": "no-cache"}).headers["X-Cache"] == "BYPASS"
    assert fake_upstream.count() == 3, "no-cache skips the lookup"
    assert chat(cached).headers["X-Cache"] == "HIT"
    time.sleep(1.1)
    assert chat(cached, **{"Cache-Control": "max-age=1"}).headers["X-Cache"] == "MISS", (
        "entry older than max-age"
    )
    assert chat(cached, **{"Cache-Control": "max-age=60"}).headers["X-Cache"] == "HIT"


def test_ttl_expiry(fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str) -> None:
    url = start_gateway(cached_policy(fake_upstream, redis_url, ttl_s=0.5))
    assert chat(url).headers["X-Cache"] == "MISS"
    assert chat(url).headers["X-Cache"] == "HIT"
    time.sleep(0.7)
    assert chat(url).headers["X-Cache"] == "MISS"


def test_team_scope_isolation(cached: str, fake_upstream: FakeUpstream) -> None:
    assert chat(cached).headers["X-Cache"] == "MISS"
    assert chat(cached, key="gw-same-team").headers["X-Cache"] == "HIT", "same team shares"
    assert chat(cached, key="gw-other-team").headers["X-Cache"] == "MISS", "another team never sees it"
    assert fake_upstream.count() == 2


def test_agent_scope(fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str) -> None:
    url = start_gateway(cached_policy(fake_upstream, redis_url, scope="agent"))
    assert chat(url).headers["X-Cache"] == "MISS"
    assert chat(url, key="gw-same-team").headers["X-Cache"] == "MISS"
    assert chat(url).headers["X-Cache"] == "HIT"


def test_only_deterministic(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str
) -> None:
    url = start_gateway(cached_policy(fake_upstream, redis_url, only_deterministic=True))
    with sdk(url) as client:
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        assert raw.headers["X-Cache"] == "BYPASS"
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES, temperature=0
            )
        assert raw.headers["X-Cache"] == "HIT"


def test_errors_and_truncated_streams_are_not_stored(cached: str, fake_upstream: FakeUpstream) -> None:
    fake_upstream.fail_next(times=3, status=500)
    with pytest.raises(openai.InternalServerError):
        chat(cached)
    assert chat(cached).headers["X-Cache"] == "MISS"
    fake_upstream.break_stream_next(times=1, after_chunks=2)
    other = [{"role": "user", "content": "stream me"}]
    with sdk(cached) as client, pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="gpt-4o-mini", messages=other, stream=True))
    assert chat(cached, messages=other).headers["X-Cache"] == "MISS"


def test_embeddings_are_cached(cached: str, fake_upstream: FakeUpstream) -> None:
    with sdk(cached) as client:
        first = client.embeddings.create(model="text-embedding-3-small", input=["x", "y"])
        second = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["x", "y"])
    assert second.headers["X-Cache"] == "HIT"
    assert second.parse().data[1].embedding == first.data[1].embedding
    assert fake_upstream.count("/v1/embeddings") == 1


async def burst(urls: list[str], n: int, messages: list[dict[str, str]], **headers: str) -> list[Any]:
    clients = [
        openai.AsyncOpenAI(base_url=u + "/v1", api_key=GATEWAY_KEY, max_retries=0, default_headers=headers)
        for u in urls
    ]
    calls = [
        clients[i % len(clients)].chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages
        )
        for i in range(n)
    ]
    try:
        return list(await asyncio.gather(*calls, return_exceptions=True))
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_singleflight_one_call_for_50_each_counted_once(
    store: str, fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str
) -> None:
    policy = cached_policy(fake_upstream, redis_url)
    if store == "memory":
        del policy["store"]
    url = start_gateway(policy)
    fake_upstream.latency_s = 0.3
    before = httpx.get(f"{url}/metrics").text
    results = asyncio.run(burst([url], 50, MESSAGES))
    after = httpx.get(f"{url}/metrics").text
    assert fake_upstream.count("/v1/chat/completions") == 1
    assert len({r.http_response.content for r in results}) == 1
    headers = [r.headers["X-Cache"] for r in results]
    assert headers.count("HIT") == 49 and headers.count("MISS") == 1
    hits = metric(after, "llm_cache_hits_total") - metric(before, "llm_cache_hits_total")
    misses = metric(after, "llm_cache_misses_total") - metric(before, "llm_cache_misses_total")
    assert (hits, misses) == (49, 1), "one count per request, the same as its X-Cache"
    total_hits, total_misses = metric(after, "llm_cache_hits_total"), metric(after, "llm_cache_misses_total")
    assert metric(after, "llm_cache_hit_rate") == pytest.approx(total_hits / (total_hits + total_misses))


def test_huge_max_age_is_answered_and_stored(cached: str, fake_upstream: FakeUpstream) -> None:
    fake_upstream.latency_s = 0.3
    huge = {"Cache-Control": "max-age=" + "9" * 400}
    results = asyncio.run(burst([cached], 10, MESSAGES, **huge))
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.headers["X-Cache"] for r in results) == ["HIT"] * 9 + ["MISS"]
    assert chat(cached, **huge).headers["X-Cache"] == "HIT"
    assert fake_upstream.count("/v1/chat/completions") == 1


def test_no_cache_does_not_wait_for_an_identical_request(cached: str, fake_upstream: FakeUpstream) -> None:
    fake_upstream.latency_s = 0.5

    async def both() -> tuple[Any, Any]:
        async with openai.AsyncOpenAI(base_url=cached + "/v1", api_key=GATEWAY_KEY, max_retries=0) as client:
            create = client.chat.completions.with_raw_response.create
            leader = asyncio.create_task(create(model="gpt-4o-mini", messages=MESSAGES))
            # the leader is at the provider (which counts in its own thread)
            while fake_upstream.count("/v1/chat/completions") == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            fresh = await create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"Cache-Control": "no-cache"}
            )
            return await leader, fresh

    leader, fresh = asyncio.run(both())
    assert leader.headers["X-Cache"] == "MISS" and fresh.headers["X-Cache"] == "BYPASS"
    assert fake_upstream.count("/v1/chat/completions") == 2, "no-cache calls the provider itself"


def test_singleflight_across_two_gateways(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str
) -> None:
    urls = [start_gateway(cached_policy(fake_upstream, redis_url)) for _ in range(2)]
    fake_upstream.latency_s = 0.4
    results = asyncio.run(burst(urls, 50, MESSAGES))
    assert all(not isinstance(r, Exception) for r in results)
    assert fake_upstream.count("/v1/chat/completions") == 1


def test_leader_failure_lets_a_waiter_take_over(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str], redis_url: str
) -> None:
    policy = cached_policy(fake_upstream, redis_url)
    policy["providers"]["openai"]["retry"] = {"attempts": 1}
    url = start_gateway(policy)
    fake_upstream.latency_s = 0.3
    fake_upstream.fail_next(times=1, status=500)
    results = asyncio.run(burst([url], 10, MESSAGES))
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], openai.InternalServerError)
    assert fake_upstream.count("/v1/chat/completions") == 2


def test_redis_outage_fails_open(fake_upstream: FakeUpstream, start_gateway: Callable[..., str]) -> None:
    with RedisServer() as server:
        policy = cached_policy(fake_upstream, server.url)
        policy["store"]["socket_timeout_s"] = 0.3
        url = start_gateway(policy)
        assert chat(url).headers["X-Cache"] == "MISS"
        assert chat(url).headers["X-Cache"] == "HIT"
        server.stop()
        for _ in range(3):
            raw = chat(url)
            assert raw.headers["X-Cache"] == "BYPASS" and raw.parse().choices
        errors = metric(httpx.get(f"{url}/metrics").text, "gateway_store_errors_total")
        assert errors >= 3


def test_admin_clear(cached: str, fake_upstream: FakeUpstream) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    chat(cached)
    chat(cached, key="gw-other-team")
    assert httpx.delete(f"{cached}/admin/cache").status_code == 401
    assert httpx.delete(f"{cached}/admin/cache?scope=bad scope", headers=admin).status_code == 400
    cleared = httpx.delete(f"{cached}/admin/cache?scope=team:frontend", headers=admin).json()
    assert cleared["deleted"] == 1
    assert chat(cached).headers["X-Cache"] == "HIT"
    assert chat(cached, key="gw-other-team").headers["X-Cache"] == "MISS"
    assert httpx.delete(f"{cached}/admin/cache", headers=admin).json()["deleted"] == 2
    assert chat(cached).headers["X-Cache"] == "MISS"


def test_admin_clear_one_key(cached: str) -> None:
    from gateway.cache.keys import cache_key

    chat(cached)
    chat(cached, messages=[{"role": "user", "content": "keep me"}])
    key = cache_key("chat.completions", "gpt-4o-mini", {"messages": MESSAGES}, "team:backend")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.delete(f"{cached}/admin/cache?key={key}", headers=admin).json()["deleted"] == 1
    assert chat(cached).headers["X-Cache"] == "MISS"
    assert chat(cached, messages=[{"role": "user", "content": "keep me"}]).headers["X-Cache"] == "HIT"


def test_a_corrupt_entry_is_a_miss_and_is_replaced(
    cached: str, fake_upstream: FakeUpstream, redis_url: str
) -> None:
    """Bytes under an entry's key that are not an entry (another writer, a partial restore) never fail
    the request: the lookup misses, the provider answers, and the entry is written anew."""
    first = chat(cached)
    store = redis.Redis.from_url(redis_url)
    (key,) = [k for k in store.keys("*") if b"cache:" in k and b"lock" not in k]
    store.set(key, b"not an entry")
    second, third = chat(cached), chat(cached)
    assert (first.headers["X-Cache"], second.headers["X-Cache"], third.headers["X-Cache"]) == (
        "MISS",
        "MISS",
        "HIT",
    )
    assert fake_upstream.count("/v1/chat/completions") == 2
    store.close()
