"""Leader election on a real Redis: one holder, renewal, release, and failover within the TTL."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from gateway.autoscaler.leader import LeaderElector, LeaderLock
from tests.fakes.redis_server import RedisServer

KEY = "llmgw:autoscaler:leader"


async def test_the_lock_has_one_holder_and_only_it_renews_or_releases(redis_client: aioredis.Redis) -> None:
    first, second = LeaderLock(redis_client, KEY, 5.0), LeaderLock(redis_client, KEY, 5.0)
    assert first.token != second.token
    assert await first.try_acquire() == 0
    assert await first.try_acquire() == 0  # re-entrant for its holder
    assert 4.0 < await second.try_acquire() <= 5.0  # the others learn when to try again
    assert not await second.renew()
    assert not await second.release()
    assert await redis_client.get(KEY) == first.token.encode()
    assert await first.renew()
    assert await first.release()
    assert await second.try_acquire() == 0


async def test_electors_agree_on_one_leader_and_a_resign_hands_over(redis_client: aioredis.Redis) -> None:
    a = LeaderElector(LeaderLock(redis_client, KEY, 3.0), 3.0)
    b = LeaderElector(LeaderLock(redis_client, KEY, 3.0), 3.0)
    await a.tick()
    await b.tick()
    assert (a.is_leader, b.is_leader) == (True, False)
    assert a.elected.is_set() and not b.elected.is_set()
    assert REGISTRY.get_sample_value("autoscaler_is_leader") == 1  # the last change: a's election
    assert await a.confirm() and not await b.confirm()
    await a.resign()
    assert await redis_client.get(KEY) is None
    await b.tick()
    assert b.is_leader


async def test_a_dead_leader_is_replaced_within_the_ttl(redis_client: aioredis.Redis) -> None:
    ttl = 1.0
    leader = LeaderElector(LeaderLock(redis_client, KEY, ttl), ttl)
    standby = LeaderElector(LeaderLock(redis_client, KEY, ttl), ttl)
    leader_task = asyncio.create_task(leader.run())
    await asyncio.sleep(0.05)
    standby_task = asyncio.create_task(standby.run())
    await asyncio.sleep(ttl * 1.2)  # the leader renews past its first TTL
    assert leader.is_leader and not standby.is_leader
    leader_task.cancel()  # a crash: no release, the lock must expire
    died = time.monotonic()
    await asyncio.wait_for(standby.elected.wait(), timeout=ttl * 2)
    took_over = time.monotonic() - died
    standby_task.cancel()
    await asyncio.gather(leader_task, standby_task, return_exceptions=True)
    assert took_over <= ttl + 0.3


async def test_a_leader_that_loses_redis_steps_down_after_one_ttl(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    now = [0.0]
    elector = LeaderElector(LeaderLock(client, "outage:leader", 1.0), 1.0, clock=lambda: now[0])
    try:
        await elector.tick()
        assert elector.is_leader
        redis_server.stop()
        now[0] = 0.5
        await elector.tick()
        assert elector.is_leader  # its lock may still be valid: keep it for now
        now[0] = 1.0
        await elector.tick()
        assert not elector.is_leader
        assert not await elector.confirm()
        before = REGISTRY.get_sample_value("autoscaler_errors_total", {"kind": "redis"}) or 0
        await elector.tick()  # standing by because of the outage is counted, not silent
        assert REGISTRY.get_sample_value("autoscaler_errors_total", {"kind": "redis"}) == before + 1
    finally:
        redis_server.start()
        await client.aclose()
