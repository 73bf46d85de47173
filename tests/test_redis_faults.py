"""Riding through store faults under load: a single Redis restarted, the Sentinel master killed (its
replica is promoted), a cluster master killed (its replica takes over). The gateway keeps running
throughout; once the fault is over, plus one second, a burst of 120 requests sees no cache BYPASS and no
budget 503, every token the provider billed is counted, and no reservation stays held."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.conftest import GATEWAY_KEY, base_policy
from tests.fakes.redis_server import RedisServer
from tests.fakes.redis_topologies import RedisClusterGroup, SentinelGroup, wait_until
from tests.fakes.upstream import FakeUpstream
from tests.test_budget_e2e import budgets_report, reported_usage, sprint

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
BUDGET_KEY = "llmgw:budget:{sprint:s1}:0:acct"


def body(n: int) -> dict[str, Any]:
    """Every other request repeats one of four prompts (cache hits), the rest are new (misses)."""
    content = f"again {n % 8}" if n % 2 else f"fresh {uuid.uuid4().hex}"
    messages = [{"role": "user", "content": content}]
    return {"model": "gpt-4o-mini", "messages": messages, "max_tokens": 5, "temperature": 0}


@contextmanager
def load(url: str, threads: int = 3) -> Iterator[list[tuple[int, str]]]:
    """Requests sent back to back from a few threads until the block ends; (status, X-Cache) each."""
    samples: list[tuple[int, str]] = []
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=20) as http:
            n = 0
            while not stop.is_set():
                try:
                    response = http.post(f"{url}/v1/chat/completions", json=body(n), headers=AUTH)
                except httpx.HTTPError as exc:  # a hang (20 s) or a dropped connection
                    samples.append((0, type(exc).__name__))
                else:
                    samples.append((response.status_code, response.headers.get("X-Cache", "")))
                n += 1

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        wait_until("the load did not start", lambda: len(samples) >= 10)
        yield samples
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)


async def _burst(url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        return await asyncio.gather(
            *(http.post(f"{url}/v1/chat/completions", json=body(n), headers=AUTH) for n in range(count))
        )


def ride_through(url: str, fake: FakeUpstream, fault: Callable[[], object]) -> Counter[str]:
    """Run ``fault`` mid-load (it returns once the store serves again), wait one second, then check the
    burst and the ledger; returns what the load saw meanwhile (for the failure message)."""
    with load(url) as samples:
        fault()
        time.sleep(1.0)
    during = Counter(f"{status} {cache}" for status, cache in samples)
    assert all(status for status, _ in samples), f"every request is answered, none hangs: {during}"
    responses = asyncio.run(_burst(url, 120))
    after = Counter(f"{r.status_code} {r.headers.get('X-Cache', '')}" for r in responses)
    assert all(r.status_code == 200 for r in responses), f"after the fault: {after}; during: {during}"
    assert not any(r.headers.get("X-Cache") == "BYPASS" for r in responses), f"{after}; during: {during}"

    def settled() -> bool:
        return budgets_report(url)["sprint"]["reserved"] == 0

    wait_until("reservations stayed held", settled, timeout=30)
    assert budgets_report(url)["sprint"]["used"] == reported_usage(fake), "every billed token is counted"
    return during


def gateway_policy(fake: FakeUpstream, store_url: str) -> dict[str, Any]:
    """A tight store timeout, as docs/kubernetes.md advises for failover: a command sent to a dead master
    fails in half a second and is retried on the new one. (With the 2 s default, a request that makes
    three store operations across a failover can take up to about 30 s, above the load's 20 s bound.)"""
    return base_policy(
        fake.url,  # type: ignore[attr-defined]
        store={"url": store_url, "socket_timeout_s": 0.5},
        cache={"enabled": True},
        budgets=sprint(10**9),
    )


def test_a_single_redis_restarted_mid_load(
    fake_upstream: FakeUpstream, start_gateway: Callable[..., str]
) -> None:
    # AOF with fsync always: a restart keeps the counters (the README's durability advice).
    durable = ["--appendonly", "yes", "--appendfsync", "always"]
    with RedisServer(extra=durable) as server:
        url = start_gateway(gateway_policy(fake_upstream, server.url))

        def restart() -> None:
            server.stop()
            time.sleep(1.0)
            server.start()

        ride_through(url, fake_upstream, restart)


def test_the_sentinel_master_killed_mid_load(
    fake_upstream: FakeUpstream,
    start_gateway: Callable[..., str],
    redis_sentinel: SentinelGroup,
    sentinel_url: str,
) -> None:
    url = start_gateway(gateway_policy(fake_upstream, sentinel_url))
    old = redis_sentinel.master()

    def failover() -> None:
        redis_sentinel.wait_failover(redis_sentinel.kill_master())

    ride_through(url, fake_upstream, failover)
    assert redis_sentinel.master() is not old, "a replica was promoted and the gateway followed it"


def test_a_cluster_master_killed_mid_load(
    fake_upstream: FakeUpstream,
    start_gateway: Callable[..., str],
    redis_cluster: RedisClusterGroup,
    cluster_url: str,
) -> None:
    url = start_gateway(gateway_policy(fake_upstream, cluster_url))
    old = redis_cluster.master_of(BUDGET_KEY)

    def failover() -> None:  # the sprint's slot: budgets must move with it
        redis_cluster.wait_failover(redis_cluster.kill_master_of(BUDGET_KEY), BUDGET_KEY)

    ride_through(url, fake_upstream, failover)
    assert redis_cluster.master_of(BUDGET_KEY) is not old
