"""One contract for the ticket primitive, run against memory and a real Redis: all or nothing, exact sliding
windows, settling the difference, leases, gates, and no over-admission under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.tickets import Bucket, MemoryTickets, TicketStore
from gateway.tickets.redis import RedisTickets


@pytest.fixture(params=["memory", "redis"])
async def tickets(request: pytest.FixtureRequest) -> AsyncIterator[TicketStore]:
    if request.param == "memory":
        yield MemoryTickets()
        return
    url = request.getfixturevalue("redis_url")
    client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(url, max_connections=32))
    yield RedisTickets(client, "test:")
    await client.aclose()


def rpm(amount: int = 1, capacity: int = 3, key: str = "rpm:agent:a") -> Bucket:
    return Bucket(key, capacity, 60.0, amount)


def tid() -> str:
    return uuid.uuid4().hex


async def test_admits_exactly_the_capacity_per_window(tickets: TicketStore) -> None:
    grants = [await tickets.consume(tid(), [rpm()], now=100.0 + i) for i in range(4)]
    assert [g.ok for g in grants] == [True, True, True, False]
    assert [g.levels[0].remaining for g in grants[:3]] == [2, 1, 0]
    refused = grants[3]
    assert refused.refused == 0
    assert refused.retry_after_s == pytest.approx(57.0)  # the first ticket (t=100) leaves at t=160
    assert (await tickets.consume(tid(), [rpm()], now=159.9)).ok is False
    assert (await tickets.consume(tid(), [rpm()], now=160.0)).ok is True  # sliding: one slot came back


async def test_reset_is_when_the_newest_ticket_leaves(tickets: TicketStore) -> None:
    await tickets.consume(tid(), [rpm()], now=10.0)
    grant = await tickets.consume(tid(), [rpm()], now=25.0)
    assert grant.levels[0].reset_s == pytest.approx(60.0)
    assert grant.levels[0].capacity == 3


async def test_all_or_nothing_across_buckets(tickets: TicketStore) -> None:
    small = Bucket("tpm:team:t", 100, 60.0, 80)
    assert (await tickets.consume(tid(), [rpm(), small], now=1.0)).ok
    refused = await tickets.consume(tid(), [rpm(), small], now=2.0)
    assert not refused.ok and refused.refused == 1
    # the refused request took nothing from the first bucket either
    again = await tickets.consume(tid(), [rpm()], now=3.0)
    assert again.levels[0].remaining == 1


async def test_larger_than_capacity_never_fits(tickets: TicketStore) -> None:
    grant = await tickets.consume(tid(), [Bucket("tpm:key:k", 100, 60.0, 101)], now=1.0)
    assert not grant.ok and grant.retry_after_s == -1


async def test_settle_returns_the_difference_and_charges_more(tickets: TicketStore) -> None:
    first = tid()
    assert (await tickets.consume(first, [Bucket("tpm:a", 100, 60.0, 90)], now=1.0)).ok
    await tickets.settle(first, [Bucket("tpm:a", 100, 60.0, 30)], now=2.0)
    grant = await tickets.consume(tid(), [Bucket("tpm:a", 100, 60.0, 70)], now=3.0)
    assert grant.ok and grant.levels[0].remaining == 0
    second = tid()
    assert (await tickets.consume(second, [Bucket("tpm:b", 100, 60.0, 10)], now=1.0)).ok
    await tickets.settle(second, [Bucket("tpm:b", 100, 60.0, 150)], now=2.0)  # real usage above estimate
    assert not (await tickets.consume(tid(), [Bucket("tpm:b", 100, 60.0, 1)], now=3.0)).ok
    assert (await tickets.consume(tid(), [Bucket("tpm:b", 100, 60.0, 1)], now=61.0)).ok


async def test_lease_returned_by_settling_zero(tickets: TicketStore) -> None:
    slot = Bucket("inflight:agent:a", 1, 300.0, 1)
    held = tid()
    assert (await tickets.consume(held, [slot], now=1.0)).ok
    assert not (await tickets.consume(tid(), [slot], now=2.0)).ok
    await tickets.settle(held, [Bucket(slot.key, 1, 300.0, 0)], now=3.0)
    probe = await tickets.consume(tid(), [Bucket(slot.key, 1, 300.0, 0)], now=3.5)
    assert probe.levels[0].reset_s == 0  # nothing held any more
    assert (await tickets.consume(tid(), [slot], now=4.0)).ok


async def test_settling_an_expired_ticket_charges_nothing(tickets: TicketStore) -> None:
    old = tid()
    await tickets.consume(old, [rpm(capacity=1)], now=1.0)
    await tickets.settle(old, [rpm(amount=5, capacity=1)], now=100.0)
    assert (await tickets.consume(tid(), [rpm(capacity=1)], now=100.0)).ok


async def test_gate_refuses_until_cleared(tickets: TicketStore) -> None:
    assert await tickets.raise_flag("brake:a", "looping")
    assert not await tickets.raise_flag("brake:a", "again")
    grant = await tickets.consume(tid(), [rpm()], now=1.0, gate="brake:a")
    assert not grant.ok and grant.gate == "looping"
    assert (await tickets.consume(tid(), [rpm()], now=1.0, gate="brake:b")).ok
    assert await tickets.flags("brake:") == {"brake:a": "looping"}
    assert await tickets.clear_flag("brake:a")
    assert not await tickets.clear_flag("brake:a")
    assert (await tickets.consume(tid(), [rpm()], now=1.0, gate="brake:a")).ok


async def test_concurrent_consumers_never_over_admit(tickets: TicketStore) -> None:
    buckets = [rpm(capacity=50), Bucket("rpm:team:t", 70, 60.0, 1)]
    grants = await asyncio.gather(*(tickets.consume(tid(), buckets, now=5.0) for _ in range(300)))
    assert sum(g.ok for g in grants) == 50
